"""Render a transcript as the model reads it and find the exact tokens of each message under test."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from liedetect.errors import DataError
from liedetect.scoring.transcripts import Message, Problem, ScoringError, Transcript, TranscriptSet

FORMATS = ("auto", "chat", "plain", "text")
TOO_LONG = ("skip", "truncate", "error")
SYSTEM_PROMPTS = ("template", "none")
# The fallback template of a model without one: each message on its own line as "{role}: {content}" (the
# `plain` format, liedetect.datasets.render_chat), so roles are never lost.
FALLBACK_TEMPLATE = "one line per message, '{role}: {content}'"


class ChatFormatWarning(UserWarning):
    """A chat is rendered some other way than the model's own chat template."""


def resolve_format(model: Any, fmt: str = "auto") -> str:
    """The format `auto` means for `model`, decided once: its chat template; bare text for the organism (trained
    on bare text); else the fallback template ("role: content" lines) with a ChatFormatWarning."""
    if fmt not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt != "auto":
        return fmt
    tok = getattr(model, "tokenizer", model)
    if getattr(tok, "chat_template", None):
        return "chat"
    if str(getattr(model, "liedetect_id", "")).startswith("organism"):
        return "text"
    warnings.warn(f"{getattr(model, 'liedetect_id', None) or 'this model'} has no chat template; chats are rendered "
                  f"with liedetect's fallback template ({FALLBACK_TEMPLATE}) so roles are kept. Pass --format text for "
                  f"bare text or use a model with a chat template.", ChatFormatWarning, stacklevel=2)
    return "plain"


_DEFAULT_SYSTEM: dict = {}


def has_default_system(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template inserts its own system prompt into a chat that brings none
    (SmolLM2, Qwen do: a user-only chat renders longer than the same chat with an empty system message)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template or not isinstance(template, str):
        return False
    if template not in _DEFAULT_SYSTEM:
        user = [{"role": "user", "content": "x"}]
        try:
            bare = tokenizer.apply_chat_template(user, tokenize=False)
            empty = tokenizer.apply_chat_template([{"role": "system", "content": ""}, *user], tokenize=False)
            _DEFAULT_SYSTEM[template] = len(bare) > len(empty)
        except Exception:  # noqa: BLE001 - a template that refuses a system role has no default one
            _DEFAULT_SYSTEM[template] = False
    return _DEFAULT_SYSTEM[template]


@dataclass
class Encoding:
    """A rendered, tokenized transcript and, per message, the token range [start, end) that is scored."""

    transcript: Transcript
    ids: List[int]
    ranges: List[Optional[Tuple[int, int]]]
    pieces: List[Optional[List[str]]]  # per scored message: its content split at token boundaries
    truncated: int = 0  # tokens dropped from the left
    cut: List[bool] = field(default_factory=list)  # per message: lost tokens to truncation

    @property
    def n_scored(self) -> int:
        """Number of tokens that get a score."""
        return sum(b - a for r in self.ranges if r for a, b in [r])


def _render_fmt(tokenizer: Any, transcript: Transcript, fmt: str) -> str:
    if transcript.raw:
        return "raw"
    if fmt not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "text":
        return "text"
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "chat" and not has_template:
        raise DataError("--format chat was asked but this tokenizer has no chat template; use --format plain or auto.")
    return "chat" if (fmt == "chat" or (fmt == "auto" and has_template)) else "plain"


def _render(tokenizer: Any, messages: Sequence[Message], kind: str, system_prompt: str = "template") -> str:
    dicts = [{"role": m.role, "content": m.content} for m in messages]
    if kind == "chat":
        if system_prompt == "none" and dicts[0]["role"] != "system" and has_default_system(tokenizer):
            dicts.insert(0, {"role": "system", "content": ""})  # keeps the template's default system prompt out
        return tokenizer.apply_chat_template(dicts, tokenize=False)
    if kind == "text":
        return " ".join(m.content for m in messages)
    from liedetect.datasets import render_chat

    return render_chat(None, dicts)


def render(tokenizer: Any, transcript: Transcript, fmt: str = "auto", system_prompt: str = "template"
           ) -> Tuple[str, List[Tuple[int, int]], str]:
    """The transcript as text, the character span of each message's content in it, and the format used.
    `system_prompt` "none" keeps a template's default system prompt out of chats that bring none."""
    if system_prompt not in SYSTEM_PROMPTS:
        raise DataError(f"Unknown system prompt policy {system_prompt!r}; use one of {', '.join(SYSTEM_PROMPTS)}.")
    kind = _render_fmt(tokenizer, transcript, fmt)
    if kind == "raw":
        text = transcript.messages[0].content
        return text, [(0, len(text))], kind
    text = _render(tokenizer, transcript.messages, kind, system_prompt)
    spans: List[Tuple[int, int]] = []
    cursor = 0
    for i, msg in enumerate(transcript.messages):
        lower = cursor
        if i > 0:  # render-prefix technique: message i starts after the rendering of messages[:i]
            try:
                prefix = _render(tokenizer, transcript.messages[:i], kind, system_prompt)
                lower = max(lower, len(os.path.commonprefix([prefix, text])))
            except Exception:  # noqa: BLE001 - some templates refuse partial chats; fall back to the cursor
                pass
        at = text.find(msg.content, lower)
        needle = msg.content
        if at < 0:
            needle = msg.content.strip()
            at = text.find(needle, lower)
        if at < 0:
            raise ScoringError(f"message {i} of transcript {transcript.id!r} does not appear verbatim in its "
                               f"{kind} rendering (the template rewrites it); use --format plain.")
        cursor = at + len(needle)
        if msg.detect_span is not None and needle == msg.content:  # only part of a merged message is read
            at, cut_end = at + msg.detect_span[0], at + msg.detect_span[1]
            spans.append((at, cut_end))
            continue
        spans.append((at, cursor))
    return text, spans, kind


def _token_ranges(tokenizer: Any, text: str, spans: Sequence[Tuple[int, int]], special: bool
                  ) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Token ids of `text` and their character offsets (prefix re-tokenization for slow tokenizers)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids = list(tokenizer(text, add_special_tokens=special)["input_ids"])
    offsets = []
    prev = 0
    for k in range(1, len(ids) + 1):  # slow path: character end of each token from its decoded prefix
        end = len(tokenizer.decode(ids[:k], skip_special_tokens=False))
        offsets.append((prev, end))
        prev = end
    return ids, offsets


def encode_transcript(tokenizer: Any, transcript: Transcript, roles: Sequence[str] = ("assistant",),
                      fmt: str = "auto", max_length: Optional[int] = None, too_long: str = "skip",
                      system_prompt: str = "template") -> Encoding:
    """Render and tokenize one transcript; find the exact token range of each message that is read (its
    detect flag when the transcript has one, else its role)."""
    text, spans, kind = render(tokenizer, transcript, fmt, system_prompt)
    ids, offsets = _token_ranges(tokenizer, text, spans, special=(kind != "chat"))
    n_msgs = len(transcript.messages)
    ranges: List[Optional[Tuple[int, int]]] = [None] * n_msgs
    for i, (msg, (s, e)) in enumerate(zip(transcript.messages, spans)):
        if not transcript.is_read(i, roles):
            continue
        chosen = [k for k, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
        if chosen:
            ranges[i] = (chosen[0], chosen[-1] + 1)
    if not any(ranges):
        raise ScoringError(f"transcript {transcript.id!r} has no message to read (detect=true, or else a scored role: "
                           f"{', '.join(roles)})")
    dropped = 0
    cut = [False] * n_msgs
    if max_length is not None and len(ids) > max_length:
        if too_long != "truncate":
            raise ScoringError(f"transcript {transcript.id!r} is {len(ids)} tokens long but the model reads at most "
                               f"{max_length}; shorten it or pass --too-long truncate (keeps the last {max_length} tokens)")
        dropped = len(ids) - max_length
        ids = ids[dropped:]
        for i, r in enumerate(ranges):
            if r is None:
                continue
            a, b = max(r[0] - dropped, 0), r[1] - dropped
            cut[i] = r[0] < dropped
            ranges[i] = (a, b) if b > a else None
        offsets = offsets[dropped:]
        if not any(ranges):
            raise ScoringError(f"transcript {transcript.id!r}: truncation to {max_length} tokens removed every scored message")
    pieces: List[Optional[List[str]]] = [None] * n_msgs
    for i, r in enumerate(ranges):
        if r is None:
            continue
        s, e = spans[i]
        bounds = [s if not cut[i] else min(max(offsets[r[0]][0], s), e)]
        for k in range(r[0] + 1, r[1]):
            bounds.append(min(max(offsets[k][0], bounds[-1]), e))
        bounds.append(e)
        pieces[i] = [text[bounds[j]:bounds[j + 1]] for j in range(len(bounds) - 1)]
    return Encoding(transcript=transcript, ids=ids, ranges=ranges, pieces=pieces, truncated=dropped, cut=cut)


def encode_all(tokenizer: Any, data: TranscriptSet, roles: Sequence[str], fmt: str, max_length: Optional[int],
               too_long: str, strict: bool, system_prompt: str = "template") -> List[Encoding]:
    """Encode every transcript; those that cannot be scored become Problems (or errors with strict)."""
    if too_long not in TOO_LONG:
        raise DataError(f"Unknown --too-long policy {too_long!r}; use one of {', '.join(TOO_LONG)}.")
    encs = []
    for t in data.transcripts:
        try:
            encs.append(encode_transcript(tokenizer, t, roles, fmt, max_length, too_long, system_prompt))
        except ScoringError as exc:
            if strict or too_long == "error":
                raise ScoringError(f"{data.source or 'input'} line {t.line}: {exc}.") from None
            data.problems.append(Problem(t.line, str(exc)))
    data.problems.sort(key=lambda p: p.line)
    return encs
