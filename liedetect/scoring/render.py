"""Render a transcript as the model reads it and find the exact tokens of each message under test."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from liedetect.errors import DataError
from liedetect.scoring.transcripts import Message, Problem, ScoringError, Transcript, TranscriptSet

FORMATS = ("auto", "chat", "plain", "text")
TOO_LONG = ("skip", "truncate", "error")


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


def _render(tokenizer: Any, messages: Sequence[Message], kind: str) -> str:
    dicts = [{"role": m.role, "content": m.content} for m in messages]
    if kind == "chat":
        return tokenizer.apply_chat_template(dicts, tokenize=False)
    if kind == "text":
        return " ".join(m.content for m in messages)
    from liedetect.datasets import render_chat

    return render_chat(None, dicts)


def render(tokenizer: Any, transcript: Transcript, fmt: str = "auto") -> Tuple[str, List[Tuple[int, int]], str]:
    """The transcript as text, the character span of each message's content in it, and the format used."""
    kind = _render_fmt(tokenizer, transcript, fmt)
    if kind == "raw":
        text = transcript.messages[0].content
        return text, [(0, len(text))], kind
    text = _render(tokenizer, transcript.messages, kind)
    spans: List[Tuple[int, int]] = []
    cursor = 0
    for i, msg in enumerate(transcript.messages):
        lower = cursor
        if i > 0:  # render-prefix technique: message i starts after the rendering of messages[:i]
            try:
                prefix = _render(tokenizer, transcript.messages[:i], kind)
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
        spans.append((at, at + len(needle)))
        cursor = at + len(needle)
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
                      fmt: str = "auto", max_length: Optional[int] = None, too_long: str = "skip") -> Encoding:
    """Render and tokenize one transcript; find the exact token range of each message whose role is scored."""
    text, spans, kind = render(tokenizer, transcript, fmt)
    ids, offsets = _token_ranges(tokenizer, text, spans, special=(kind != "chat"))
    n_msgs = len(transcript.messages)
    ranges: List[Optional[Tuple[int, int]]] = [None] * n_msgs
    for i, (msg, (s, e)) in enumerate(zip(transcript.messages, spans)):
        if msg.role not in roles:
            continue
        chosen = [k for k, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
        if chosen:
            ranges[i] = (chosen[0], chosen[-1] + 1)
    if not any(ranges):
        raise ScoringError(f"transcript {transcript.id!r} has no message with a scored role ({', '.join(roles)})")
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
               too_long: str, strict: bool) -> List[Encoding]:
    """Encode every transcript; those that cannot be scored become Problems (or errors with strict)."""
    if too_long not in TOO_LONG:
        raise DataError(f"Unknown --too-long policy {too_long!r}; use one of {', '.join(TOO_LONG)}.")
    encs = []
    for t in data.transcripts:
        try:
            encs.append(encode_transcript(tokenizer, t, roles, fmt, max_length, too_long))
        except ScoringError as exc:
            if strict or too_long == "error":
                raise ScoringError(f"{data.source or 'input'} line {t.line}: {exc}.") from None
            data.problems.append(Problem(t.line, str(exc)))
    data.problems.sort(key=lambda p: p.line)
    return encs
