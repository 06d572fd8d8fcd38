"""Score chat transcripts for deception: read them, render them, pick the tokens of the messages under
test, apply a probe at its layer to every one of those tokens, stream the scores to JSONL, calibrate.

Sign convention: a probe's ``decision_function`` is > 0 where it reads an activation as *true*; the
deception score of a token is its negation, so **higher = more suspicious** everywhere in this module.

Input formats
- JSONL: one transcript per line, ``{"id"?, "label"?, "group"?, "messages": [{"role", "content", "label"?}]}``.
  ``label``: 1 / true / "honest" / "truthful" = honest, 0 / false / "lie" / "deceptive" = deceptive
  (the convention of the statement datasets: 1 = true). A message's own ``label`` overrides the
  transcript's. ``group`` is a free name for plots (defaults to the label's name). Missing ids become
  ``line-N``.
- CSV ``statement,label``: each row is a one-message transcript whose single ``assistant`` message is the
  statement, rendered verbatim (no chat template), id ``row-N``.

Rendering (``fmt``): ``auto`` = the tokenizer's chat template when it has one, else ``plain``, the format
of ``liedetect.datasets.render_chat``: ``"{role}: {content}\\n"`` per message; ``text`` = the contents
joined by single spaces with no role names (for models trained on bare text, like the organism).
The scored tokens of a message are those whose character offsets overlap the message's content in the
rendered text, so template markup (role headers, end-of-turn tokens) is never scored.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from liedetect.errors import CheckpointError, DataError, LiedetectError, ProbeMismatchError

ROLES = ("system", "user", "assistant", "tool")
AGGREGATES = ("mean", "max", "last")
FORMATS = ("auto", "chat", "plain", "text")
TOO_LONG = ("skip", "truncate", "error")
HONEST_NAMES = {"honest", "truthful", "true", "truth"}
LIE_NAMES = {"lie", "liar", "deceptive", "dishonest", "false"}


class ScoringError(LiedetectError):
    """A transcript that cannot be scored as asked (malformed, too long, unlocatable content)."""


# ---------------------------------------------------------------- input


@dataclass
class Message:
    """One chat message; `label` 1 = honest, 0 = deceptive, None = unknown (inherits the transcript's)."""

    role: str
    content: str
    label: Optional[int] = None


@dataclass
class Transcript:
    """A conversation to score, with where it came from."""

    id: str
    messages: List[Message]
    label: Optional[int] = None
    group: Optional[str] = None
    line: int = 0
    raw: bool = False  # rendered verbatim (CSV statements), no chat template

    def message_label(self, index: int) -> Optional[int]:
        """The label that applies to message `index` (its own, else the transcript's)."""
        own = self.messages[index].label
        return self.label if own is None else own


@dataclass
class Problem:
    """A line of input that was not scored, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class TranscriptSet:
    """Transcripts read from a file, plus the lines that were skipped."""

    transcripts: List[Transcript]
    problems: List[Problem] = field(default_factory=list)
    source: str = ""

    def summary(self) -> str:
        """One line: how many transcripts were read and how many lines were skipped."""
        text = f"{len(self.transcripts)} transcripts from {self.source or 'memory'}"
        return text + (f", {len(self.problems)} lines skipped" if self.problems else "")


def parse_label(value: Any) -> Optional[int]:
    """1 / true / 'honest' -> 1, 0 / false / 'lie' -> 0, None / '' -> None; anything else is a DataError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        if float(value) in (0.0, 1.0):
            return int(value)
        raise DataError(f"label {value!r} is neither 0 (deceptive) nor 1 (honest)")
    if isinstance(value, str):
        name = value.strip().lower()
        if name in HONEST_NAMES:
            return 1
        if name in LIE_NAMES:
            return 0
        try:
            return parse_label(float(name))
        except ValueError:
            pass
    raise DataError(f"label {value!r} is not one of 1/0, true/false, honest/deceptive")


def label_name(label: Optional[int]) -> str:
    """'honest', 'deceptive' or 'unlabelled'."""
    return {1: "honest", 0: "deceptive"}.get(label, "unlabelled")  # type: ignore[arg-type]


def transcript_from_obj(obj: Any, line: int, roles: Sequence[str] = ROLES) -> Transcript:
    """Validate one decoded JSON object as a transcript; DataError names what is wrong."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataError("missing or empty 'messages' list")
    messages = []
    for k, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise DataError(f"message {k} is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in roles:
            raise DataError(f"message {k} has unknown role {role!r} (known: {', '.join(roles)})")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"message {k} has empty or non-text content")
        messages.append(Message(role=role, content=content, label=parse_label(m.get("label"))))
    ident = obj.get("id")
    label = parse_label(obj.get("label"))
    group = obj.get("group")
    return Transcript(id=str(ident) if ident is not None else f"line-{line}", messages=messages, label=label,
                      group=str(group) if group is not None else None, line=line)


def _read_jsonl(path: Path, roles: Sequence[str], strict: bool) -> TranscriptSet:
    out = TranscriptSet([], [], str(path))
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"bad JSON ({exc.msg} at column {exc.colno})") from None
                out.transcripts.append(transcript_from_obj(obj, line_no, roles))
            except DataError as exc:
                _problem(out, Problem(line_no, str(exc)), strict, path)
    return out


def _read_csv(path: Path, strict: bool) -> TranscriptSet:
    out = TranscriptSet([], [], str(path))
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "statement" not in reader.fieldnames:
            raise DataError(f"{path} has no 'statement' column; a CSV input needs the header statement,label.")
        for row_no, row in enumerate(reader, start=1):
            line_no = reader.line_num
            try:
                text = row.get("statement") or ""
                if not text.strip():
                    raise DataError("empty statement")
                label = parse_label(row.get("label"))
                out.transcripts.append(Transcript(id=f"row-{row_no}", messages=[Message("assistant", text)],
                                                  label=label, line=line_no, raw=True))
            except DataError as exc:
                _problem(out, Problem(line_no, str(exc)), strict, path)
    return out


def _problem(out: TranscriptSet, problem: Problem, strict: bool, path: Any) -> None:
    if strict:
        raise ScoringError(f"{path} {problem}; fix that line or run without --strict to skip and count bad lines.")
    out.problems.append(problem)


def load_transcripts(path: Union[str, Path], roles: Sequence[str] = ROLES, strict: bool = False) -> TranscriptSet:
    """Read transcripts from JSONL (chat shape) or CSV (statement,label); bad lines are skipped and counted."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"No transcripts file at {path}; pass a .jsonl of chats or a .csv with statement,label.")
    data = _read_csv(path, strict) if path.suffix.lower() == ".csv" else _read_jsonl(path, roles, strict)
    seen: Dict[str, int] = {}
    unique = []
    for t in data.transcripts:
        if t.id in seen:
            _problem(data, Problem(t.line, f"duplicate id {t.id!r} (first on line {seen[t.id]})"), strict, path)
            continue
        seen[t.id] = t.line
        unique.append(t)
    data.transcripts = unique
    data.problems.sort(key=lambda p: p.line)
    return data


# ---------------------------------------------------------------- rendering and token selection


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


# ---------------------------------------------------------------- batching plan


def plan_batches(lengths: Sequence[int], batch_size: int = 16, max_batch_tokens: int = 16384,
                 chunk: int = 512) -> List[List[int]]:
    """Length-bucketed batches of indices: input order in chunks, sorted by length within each chunk.

    The plan depends only on the lengths, so a resumed run and a Ray run compute exactly the same
    batches (and therefore bit-identical scores) as an uninterrupted local run.
    """
    batches: List[List[int]] = []
    for c0 in range(0, len(lengths), chunk):
        order = sorted(range(c0, min(c0 + chunk, len(lengths))), key=lambda i: (lengths[i], i))
        batch: List[int] = []
        for i in order:
            width = max([lengths[j] for j in batch] + [lengths[i]])
            if batch and (len(batch) >= batch_size or width * (len(batch) + 1) > max_batch_tokens):
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    return batches


# ---------------------------------------------------------------- probe and scorer


def probe_site(probe: Any, layer: Optional[int] = None, hook: Optional[str] = None) -> Tuple[int, str]:
    """The layer and hook a probe reads (from its saved metadata unless given explicitly)."""
    meta = getattr(probe, "meta_", None) or {}
    layer = meta.get("layer") if layer is None else layer
    hook = meta.get("hook", "resid_post") if hook is None else hook
    if layer is None:
        raise ProbeMismatchError("This probe's metadata records no layer; pass layer= (or --layer) to say which layer it reads.")
    if isinstance(hook, str) and hook.startswith("blocks."):  # a full hook name: keep its short form
        hook = hook.rsplit("hook_", 1)[-1]
    return int(layer), str(hook)


def load_probe(path: Union[str, Path], model: Any = None) -> Any:
    """Load a saved probe, refusing one trained on another model (ProbeMismatchError names both)."""
    import probes

    probe = probes.load(path)
    if model is not None:
        from liedetect.models import model_id

        meta = getattr(probe, "meta_", None) or {}
        here = model_id(model)
        if meta.get("model_id") not in (None, here):
            raise ProbeMismatchError(f"Probe {path} was trained on model {meta['model_id']!r} but is being applied to "
                                     f"{here!r}; pass the --model it was trained on or train a probe for this one.")
    return probe


def scored_activations(model: Any, encs: Sequence[Encoding], layer: Union[int, Sequence[int]], hook: str = "resid_post",
                       pad_id: Optional[int] = None) -> Tuple[Any, List[int]]:
    """Activations [n_tokens, d] of exactly the scored tokens of a batch (a {layer: ...} dict when given
    several layers, from one forward), and how many tokens belong to each transcript."""
    from liedetect.activations import pad_batch, token_activations

    if pad_id is None:
        pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    layers = [layer] if isinstance(layer, int) else list(layer)
    ids, mask = pad_batch([e.ids for e in encs], pad_id, "right")
    hidden = token_activations(model, ids, mask, layers, hook)
    rows, cols, sizes = [], [], []
    for b, enc in enumerate(encs):
        n = 0
        for r in enc.ranges:
            if r is not None:
                rows.extend([b] * (r[1] - r[0]))
                cols.extend(range(r[0], r[1]))
                n += r[1] - r[0]
        sizes.append(n)
    device = hidden[layers[0]].device
    index = (torch.tensor(rows, device=device), torch.tensor(cols, device=device))
    picked = {l: hidden[l][index] for l in layers}
    return (picked[layer] if isinstance(layer, int) else picked), sizes


def training_activations(model: Any, transcripts: Sequence[Transcript], layers: Sequence[int], hook: str = "resid_post",
                         roles: Sequence[str] = ("assistant",), fmt: str = "auto", batch_size: int = 32
                         ) -> Tuple[Dict[int, torch.Tensor], np.ndarray, np.ndarray]:
    """Activations of the tokens scoring would read (for fitting a probe on the same positions):
    ({layer: [n_tokens, d]}, label per token (the message's), transcript index per token)."""
    tok = model.tokenizer
    encs = [encode_transcript(tok, t, roles, fmt, getattr(model.cfg, "n_ctx", None), "error") for t in transcripts]
    out: Dict[int, List[torch.Tensor]] = {layer: [] for layer in layers}
    labels: List[int] = []
    owner: List[int] = []
    for start in range(0, len(encs), batch_size):
        batch = encs[start:start + batch_size]
        picked, _ = scored_activations(model, batch, list(layers), hook)
        for layer in layers:
            out[layer].append(picked[layer].float().cpu())
        for k, enc in enumerate(batch):
            for i, r in enumerate(enc.ranges):
                if r is not None:
                    lab = enc.transcript.message_label(i)
                    labels.extend([-1 if lab is None else lab] * (r[1] - r[0]))
                    owner.extend([start + k] * (r[1] - r[0]))
    return {layer: torch.cat(v) for layer, v in out.items()}, np.array(labels), np.array(owner)


class Scorer:
    """Applies one probe at its layer to the scored tokens of batches of encoded transcripts."""

    def __init__(self, model: Any, probe: Any, layer: Optional[int] = None, hook: Optional[str] = None,
                 aggregate: str = "mean") -> None:
        from liedetect.models import check_hook

        if aggregate not in AGGREGATES:
            raise DataError(f"Unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}.")
        self.model, self.probe, self.aggregate = model, probe, aggregate
        self.layer, self.hook = probe_site(probe, layer, hook)
        if self.layer < 0:
            self.layer += model.cfg.n_layers
        check_hook(model, self.layer, self.hook)
        width = getattr(probe, "n_features_in_", None)
        if width is not None and int(width) != model.cfg.d_model:
            raise ProbeMismatchError(f"The probe reads {width}-wide activations but this model's residual stream is "
                                     f"{model.cfg.d_model} wide; use a probe trained on this model.")
        tok = model.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def token_scores(self, encs: Sequence[Encoding]) -> List[np.ndarray]:
        """Deception score of every scored token, one array per transcript (one forward for the batch)."""
        picked, sizes = scored_activations(self.model, encs, self.layer, self.hook, self.pad_id)
        with torch.inference_mode():
            scores = -self.probe.decision_function(picked.float().cpu())
        flat = np.asarray(torch.as_tensor(scores).detach().cpu().numpy(), dtype=np.float32)
        return list(np.split(flat, np.cumsum(sizes)[:-1]))

    def score(self, encs: Sequence[Encoding]) -> List[Dict[str, Any]]:
        """Score a batch and build one output record per transcript."""
        return [make_record(e, s, self.aggregate) for e, s in zip(encs, self.token_scores(encs))]


def _f(x: float) -> float:
    return float(round(float(x), 6))


def make_record(enc: Encoding, token_scores: np.ndarray, aggregate: str = "mean") -> Dict[str, Any]:
    """The JSON record of one scored transcript: per-token, per-message and per-transcript scores."""
    t = enc.transcript
    messages = []
    pos = 0
    for i, msg in enumerate(t.messages):
        entry: Dict[str, Any] = {"role": msg.role}
        label = t.message_label(i)
        r = enc.ranges[i]
        if r is None:
            entry.update({"scored": False, "content": msg.content})
        else:
            s = token_scores[pos:pos + r[1] - r[0]].astype(np.float64)
            pos += r[1] - r[0]
            entry.update({"scored": True, "label": label, "n_tokens": int(len(s)), "mean": _f(s.mean()),
                          "max": _f(s.max()), "last": _f(s[-1]), "tokens": enc.pieces[i],
                          "scores": [_f(v) for v in s]})
            if enc.cut[i]:
                entry["truncated"] = True
        messages.append(entry)
    scored = [m for m in messages if m["scored"]]
    all_scores = np.concatenate([np.asarray(m["scores"]) for m in scored])
    return {"id": t.id, "line": t.line, "label": t.label, "group": t.group or label_name(t.label),
            "score": max(m[aggregate] for m in scored), "aggregate": aggregate,
            "token_mean": _f(all_scores.mean()), "n_tokens": int(len(all_scores)),
            "truncated_tokens": enc.truncated, "messages": messages}


# ---------------------------------------------------------------- streaming output


class ScoreFile:
    """Append-only JSONL of records, flushed per line; on resume, drops a half-written last line."""

    def __init__(self, path: Union[str, Path], resume: bool = False, settings: Optional[Dict[str, Any]] = None) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.done: Dict[str, Dict[str, Any]] = {}
        self.dropped_partial = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._check_settings(settings)
            self._recover()
        else:
            self.path.write_bytes(b"")
        if settings is not None:
            self.meta_path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        self._fh = self.path.open("ab")

    def _check_settings(self, settings: Optional[Dict[str, Any]]) -> None:
        if settings is None or not self.meta_path.exists():
            return
        old = json.loads(self.meta_path.read_text())
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            raise CheckpointError(f"{self.path} was written with different settings ({', '.join(diff)}); rerun with "
                                  f"the same settings to resume, or without --resume to start over.")

    def _recover(self) -> None:
        data = self.path.read_bytes()
        keep = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            self.done[str(rec["id"])] = rec
            keep += len(line)
        if keep < len(data):
            self.dropped_partial = True
            with self.path.open("r+b") as fh:
                fh.truncate(keep)

    def write(self, record: Dict[str, Any]) -> None:
        """Append one record as a line and flush it to the operating system."""
        self._fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._fh.flush()
        self.done[str(record["id"])] = record

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def read_scores(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Records of a scores JSONL (complete lines only)."""
    out = []
    with Path(path).open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


# ---------------------------------------------------------------- calibration and metrics


def threshold_at_fpr(control: Sequence[float], fpr: float = 0.01) -> float:
    """The lowest threshold t with at most `fpr` of the control scores strictly above t."""
    s = np.sort(np.asarray(control, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise DataError("No control scores to calibrate on; the control set has no scored message.")
    if not 0 <= fpr < 1:
        raise DataError(f"--fpr must be in [0, 1), got {fpr}.")
    k = int(math.floor(fpr * len(s) + 1e-9))
    return float(s[min(k, len(s) - 1)])


def message_rows(records: Iterable[Dict[str, Any]], aggregate: str = "mean") -> List[Dict[str, Any]]:
    """One row per scored message: transcript id, message index, group, label, score."""
    rows = []
    for rec in records:
        for i, m in enumerate(rec["messages"]):
            if m.get("scored"):
                rows.append({"id": rec["id"], "message": i, "group": rec.get("group"), "label": m.get("label"),
                             "score": m[aggregate]})
    return rows


@dataclass
class Calibration:
    """A deception threshold: messages scoring above it are flagged."""

    threshold: float
    fpr: float
    source: str
    n_control: int

    def summary(self) -> str:
        """One line."""
        return f"threshold {self.threshold:.4f} at {self.fpr:.1%} FPR from {self.n_control} {self.source} messages"


@dataclass
class Metrics:
    """Message-level detection quality against labels, at a calibrated threshold."""

    n_honest: int
    n_deceptive: int
    auroc: Optional[float]
    recall: Optional[float]
    fpr: Optional[float]
    confusion: Dict[str, int]
    by_group: Dict[str, Dict[str, Any]]

    def summary(self) -> str:
        """One line."""
        au = "n/a" if self.auroc is None else f"{self.auroc:.4f}"
        rec = "n/a" if self.recall is None else f"{self.recall:.3f}"
        return f"AUROC {au}, recall {rec} at threshold, {self.n_deceptive} deceptive / {self.n_honest} honest messages"


def calibrate(control_rows: Sequence[Dict[str, Any]], fpr: float, source: str) -> Calibration:
    """Threshold at `fpr` on the scores of honest control messages."""
    scores = [r["score"] for r in control_rows]
    return Calibration(threshold=threshold_at_fpr(scores, fpr), fpr=fpr, source=source, n_control=len(scores))


def evaluate(rows: Sequence[Dict[str, Any]], threshold: Optional[float]) -> Metrics:
    """AUROC, recall/FPR at the threshold and a confusion table over labelled messages."""
    from sklearn.metrics import roc_auc_score

    labelled = [r for r in rows if r.get("label") in (0, 1)]
    y_lie = np.array([1 - r["label"] for r in labelled])
    s = np.array([r["score"] for r in labelled], dtype=np.float64)
    n_dec, n_hon = int(y_lie.sum()), int(len(y_lie) - y_lie.sum())
    auroc = float(roc_auc_score(y_lie, s)) if n_dec and n_hon else None
    confusion: Dict[str, int] = {}
    recall = fpr = None
    if threshold is not None and len(labelled):
        flag = s > threshold
        confusion = {"tp": int((flag & (y_lie == 1)).sum()), "fp": int((flag & (y_lie == 0)).sum()),
                     "tn": int((~flag & (y_lie == 0)).sum()), "fn": int((~flag & (y_lie == 1)).sum())}
        recall = confusion["tp"] / n_dec if n_dec else None
        fpr = confusion["fp"] / n_hon if n_hon else None
    groups: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(str(r.get("group")), {"n": 0, "scores": []})
        g["n"] += 1
        g["scores"].append(r["score"])
    by_group = {}
    for name, g in sorted(groups.items()):
        arr = np.asarray(g["scores"])
        entry = {"n": g["n"], "mean": float(arr.mean())}
        if threshold is not None:
            entry["flagged"] = float((arr > threshold).mean())
        by_group[name] = entry
    return Metrics(n_honest=n_hon, n_deceptive=n_dec, auroc=auroc, recall=recall, fpr=fpr, confusion=confusion,
                   by_group=by_group)


# ---------------------------------------------------------------- running


@dataclass
class ScoringResult:
    """What a scoring run produced: where the scores are, what was skipped, calibration and metrics."""

    out: Optional[str]
    records: List[Dict[str, Any]]
    problems: List[Problem]
    calibration: Optional[Calibration]
    metrics: Optional[Metrics]
    n_new: int
    n_resumed: int
    tokens: int
    seconds: float
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        """Scored throughput of this run (all forwarded tokens per wall-clock second)."""
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{len(self.records)} transcripts scored ({self.n_new} now, {self.n_resumed} resumed), "
                 f"{len(self.problems)} line(s) skipped, {self.tokens_per_s:,.0f} tokens/s"]
        if self.calibration:
            lines.append(self.calibration.summary())
        if self.metrics and (self.metrics.n_honest or self.metrics.n_deceptive):
            lines.append(self.metrics.summary())
        return "\n".join(lines)

    def summary_rows(self) -> List[Dict[str, Any]]:
        """Per-group table rows: messages, mean score, fraction flagged."""
        if not self.metrics:
            return []
        return [{"group": k, **v} for k, v in self.metrics.by_group.items()]

    def to_dict(self) -> Dict[str, Any]:
        """Everything but the records, as plain JSON."""
        return {"out": self.out, "n_transcripts": len(self.records), "n_new": self.n_new, "n_resumed": self.n_resumed,
                "problems": [asdict(p) for p in self.problems], "tokens": self.tokens, "seconds": self.seconds,
                "tokens_per_s": self.tokens_per_s, "settings": self.settings,
                "calibration": asdict(self.calibration) if self.calibration else None,
                "metrics": asdict(self.metrics) if self.metrics else None}

    def save(self, path: Union[str, Path]) -> Path:
        """Write the summary (not the records) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


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


BatchRunner = Callable[[List[List[Encoding]]], Iterator[List[Dict[str, Any]]]]


def local_runner(scorer: Scorer) -> BatchRunner:
    """Score batches one after the other in this process."""
    def run(batches: List[List[Encoding]]) -> Iterator[List[Dict[str, Any]]]:
        for batch in batches:
            yield scorer.score(batch)
    return run


def _settings(scorer_layer: int, hook: str, probe: Any, model: Any, roles, fmt, aggregate, too_long) -> Dict[str, Any]:
    from liedetect.models import model_id

    direction = getattr(probe, "coef_", None)
    if direction is None:
        direction = getattr(probe, "direction_", None)
    digest = hashlib.sha256(np.asarray(torch.as_tensor(direction).float().cpu().numpy()).tobytes()).hexdigest()[:16] \
        if direction is not None else "unknown"
    return {"model_id": model_id(model), "layer": scorer_layer, "hook": hook, "probe_sha": digest,
            "roles": list(roles), "format": fmt, "aggregate": aggregate, "too_long": too_long}


def run_scoring(encs: Sequence[Encoding], runner: BatchRunner, out: Optional[ScoreFile], batch_size: int,
                max_batch_tokens: int, progress: bool = True, label: str = "scoring") -> Tuple[List[Dict[str, Any]], int, int]:
    """Score encodings in the fixed batch plan, skipping finished ids; returns (records in plan order, new, tokens)."""
    from liedetect.progress import progress_bar

    plan = plan_batches([len(e.ids) for e in encs], batch_size, max_batch_tokens)
    done = out.done if out is not None else {}
    todo = [b for b in plan if any(encs[i].transcript.id not in done for i in b)]
    n_new = tokens = 0
    fresh: Dict[str, Dict[str, Any]] = {}
    with progress_bar(label, total=len(encs), enabled=progress,
                      completed=len(encs) - sum(len(b) for b in todo)) as advance:
        for batch, records in zip(todo, runner([[encs[i] for i in b] for b in todo])):
            for i, rec in zip(batch, records):
                tokens += len(encs[i].ids)
                if rec["id"] in done:
                    continue
                if out is not None:
                    out.write(rec)
                fresh[rec["id"]] = rec
                n_new += 1
            advance(len(batch))
    by_id = {**done, **fresh}
    ordered = [by_id[encs[i].transcript.id] for b in plan for i in b if encs[i].transcript.id in by_id]
    return ordered, n_new, tokens


def score_transcripts(model: Any, probe: Any, transcripts: Union[str, Path, TranscriptSet, Sequence[Transcript]],
                      out: Union[None, str, Path] = None, control: Union[None, str, Path, TranscriptSet, Sequence[Transcript]] = None,
                      fpr: float = 0.01, roles: Sequence[str] = ("assistant",), aggregate: str = "mean",
                      fmt: str = "auto", layer: Optional[int] = None, hook: Optional[str] = None,
                      batch_size: int = 16, max_batch_tokens: int = 16384, resume: bool = False, strict: bool = False,
                      too_long: str = "skip", engine: str = "local", ray_options: Optional[Dict[str, Any]] = None,
                      progress: bool = True) -> ScoringResult:
    """Score every transcript with `probe`, stream records to `out`, calibrate on `control`, evaluate on labels."""
    t0 = time.perf_counter()
    data = _as_set(transcripts, strict)
    scorer = Scorer(model, probe, layer, hook, aggregate)
    settings = _settings(scorer.layer, scorer.hook, probe, model, roles, fmt, aggregate, too_long)
    max_len = getattr(model.cfg, "n_ctx", None)
    tokenizer = model.tokenizer
    encs = encode_all(tokenizer, data, roles, fmt, max_len, too_long, strict)
    if not encs:
        raise DataError(f"No transcript in {data.source or 'the input'} could be scored ({len(data.problems)} lines skipped).")
    if engine == "local":
        runner = local_runner(scorer)
    elif engine == "ray":
        from liedetect.ray_engine import ray_runner

        runner = ray_runner(model, probe, scorer.layer, scorer.hook, aggregate, **(ray_options or {}))
    else:
        raise DataError(f"Unknown engine {engine!r}; use local or ray.")
    sink = ScoreFile(out, resume=resume, settings=settings) if out is not None else None
    try:
        n_before = len(sink.done) if sink else 0
        records, n_new, tokens = run_scoring(encs, runner, sink, batch_size, max_batch_tokens, progress)
    finally:
        if sink is not None:
            sink.close()
    calibration = None
    rows = message_rows(records, aggregate)
    if control is not None:
        cdata = _as_set(control, strict)
        cenc = encode_all(tokenizer, cdata, roles, fmt, max_len, too_long, strict)
        csink = ScoreFile(Path(out).with_suffix(".control.jsonl"), resume=resume, settings=settings) if out else None
        try:
            crecords, _, ctokens = run_scoring(cenc, local_runner(scorer) if engine == "local" else runner, csink,
                                               batch_size, max_batch_tokens, progress, "control")
        finally:
            if csink is not None:
                csink.close()
        tokens += ctokens
        calibration = calibrate(message_rows(crecords, aggregate), fpr, "control")
    elif any(r["label"] == 1 for r in rows):
        calibration = calibrate([r for r in rows if r["label"] == 1], fpr, "labelled honest (in-sample)")
    metrics = evaluate(rows, calibration.threshold if calibration else None)
    return ScoringResult(out=str(out) if out else None, records=records, problems=list(data.problems),
                         calibration=calibration, metrics=metrics, n_new=n_new,
                         n_resumed=min(n_before, len(records)), tokens=tokens,
                         seconds=time.perf_counter() - t0, settings=settings)


def _as_set(source: Any, strict: bool) -> TranscriptSet:
    if isinstance(source, TranscriptSet):
        return TranscriptSet(list(source.transcripts), list(source.problems), source.source)
    if isinstance(source, (str, Path)):
        return load_transcripts(source, strict=strict)
    return TranscriptSet(list(source), [], "memory")
