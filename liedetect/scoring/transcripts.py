"""Transcripts to score: the chat shape, labels, and reading JSONL / CSV files with line-numbered problems."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from liedetect.errors import DataError, LiedetectError

ROLES = ("system", "user", "assistant", "tool")
HONEST_NAMES = {"honest", "truthful", "true", "truth"}
LIE_NAMES = {"lie", "liar", "deceptive", "dishonest", "false"}


class ScoringError(LiedetectError):
    """A transcript that cannot be scored as asked (malformed, too long, unlocatable content)."""


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


def as_transcript_set(source: Any, strict: bool) -> TranscriptSet:
    """A fresh TranscriptSet from a path, a TranscriptSet (copied) or a sequence of transcripts."""
    if isinstance(source, TranscriptSet):
        return TranscriptSet(list(source.transcripts), list(source.problems), source.source)
    if isinstance(source, (str, Path)):
        return load_transcripts(source, strict=strict)
    return TranscriptSet(list(source), [], "memory")
