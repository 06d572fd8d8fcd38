"""Transcripts to score: the chat shape, labels, and reading JSONL / CSV files with line-numbered problems."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from liedetect.errors import DataError, LiedetectError
from liedetect.paths import check_input_file, csv_error, iter_lines, open_csv

ROLES = ("system", "user", "assistant", "tool")
HONEST, DECEPTIVE = 1, 0  # the in-memory label values; files name them ("honest" / "deceptive")
HONEST_NAMES = {"honest", "truthful", "truth"}
LIE_NAMES = {"lie", "liar", "deceptive", "dishonest"}
FLAG_KEYS = {"deceptive": 0, "honest": 1}  # boolean keys whose meaning cannot be misread: {"deceptive": true}
CONVENTIONS = ("transcripts name their labels: write \"label\": \"honest\" or \"deceptive\" (also \"truthful\" / \"lie\"), "
               "or a boolean under an unambiguous key, \"deceptive\": true; a bare 1/0 or true/false is refused because "
               "statement sets write 1 = true (honest) while many evaluation sets write 1 = deceptive")


# files of other formats read as transcripts: suffix -> "module:function" returning a TranscriptSet (named, not
# imported, so the readers may build on this module)
SUFFIX_READERS = {".json": "liedetect.benchmarks.apollo:rollout_transcripts"}


class ScoringError(LiedetectError):
    """A transcript that cannot be scored as asked (malformed, too long, unlocatable content)."""


@dataclass
class Message:
    """One chat message; `label` (in memory) 1 = honest, 0 = deceptive, None = unknown (inherits the transcript's).

    `detect` (Apollo's semantics): when any message of a transcript sets it, only messages with detect=True are
    read, whatever their role; None everywhere = the scored roles decide. `detect_span` narrows what is read to
    the characters [a, b) of the content (a merged message whose first part, e.g. an assistant prefix, is not read)."""

    role: str
    content: str
    label: Optional[int] = None
    detect: Optional[bool] = None
    detect_span: Optional[Tuple[int, int]] = None


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

    def is_read(self, index: int, roles: Sequence[str]) -> bool:
        """Whether message `index` is read: its detect flag when the transcript has one, else its role."""
        if any(m.detect is not None for m in self.messages):
            return bool(self.messages[index].detect)
        return self.messages[index].role in roles


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


class LabelConventionError(DataError):
    """A transcript label whose meaning depends on a convention (a bare 1/0 or true/false)."""


def parse_label(value: Any) -> Optional[int]:
    """'honest' / 'truthful' -> 1, 'deceptive' / 'lie' -> 0, None / '' -> None; a bare number or boolean is refused."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and value.strip().lower() in
                                                 {"0", "1", "0.0", "1.0", "true", "false", "yes", "no"}):
        raise LabelConventionError(f"label {value!r} is ambiguous: {CONVENTIONS}")
    if isinstance(value, str):
        name = value.strip().lower()
        if name in HONEST_NAMES:
            return 1
        if name in LIE_NAMES:
            return 0
    raise DataError(f"label {value!r} is not one of honest/truthful or deceptive/lie")


def read_label(obj: Dict[str, Any]) -> Optional[int]:
    """The label of a transcript or message object: `label` by name, or a boolean `deceptive` / `honest` key."""
    found = []
    if obj.get("label") is not None:
        found.append(parse_label(obj.get("label")))
    for key, honest_if_true in FLAG_KEYS.items():
        if key in obj and obj[key] is not None:
            flag = obj[key]
            if not isinstance(flag, bool):
                raise DataError(f"{key!r} must be true or false, got {flag!r}")
            found.append(int(flag) if honest_if_true else int(not flag))
    found = [f for f in found if f is not None]
    if len(set(found)) > 1:
        raise DataError("its label, 'deceptive' and 'honest' keys disagree")
    return found[0] if found else None


def statement_label(value: Any) -> Optional[int]:
    """A CSV statement set's label: 1 / true = a true statement (honest), 0 / false = false (deceptive), or a name."""
    from liedetect.datasets import parse_label as truth_label

    if isinstance(value, str) and value.strip().lower() in HONEST_NAMES | LIE_NAMES:
        return 1 if value.strip().lower() in HONEST_NAMES else 0
    try:
        return truth_label(value if value is not None else "")
    except ValueError as exc:
        raise DataError(str(exc)) from None


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
        detect = m.get("detect")
        if detect is not None and not isinstance(detect, bool):
            raise DataError(f"message {k} has 'detect' {detect!r}; it must be true or false")
        messages.append(Message(role=role, content=content, label=read_label(m), detect=detect))
    ident = obj.get("id")
    label = read_label(obj)
    group = obj.get("group")
    return Transcript(id=str(ident) if ident is not None else f"line-{line}", messages=messages, label=label,
                      group=str(group) if group is not None else None, line=line)


def merge_same_role(parts: Sequence[Tuple[str, str, bool]]) -> List[Message]:
    """(role, content, detect) parts as messages, consecutive same-role parts joined with no separator (as
    Apollo's tokenizer does); a merged message is read from its first detected character to its last."""
    out: List[Message] = []
    spans: List[List[int]] = []
    for role, content, detect in parts:
        if out and out[-1].role == role:
            start = len(out[-1].content)
            out[-1].content += content
        else:
            out.append(Message(role=role, content=content, detect=False))
            spans.append([])
            start = 0
        if detect and content:
            out[-1].detect = True
            spans[-1].extend([start, start + len(content)])
    for msg, span in zip(out, spans):
        if span and (min(span), max(span)) != (0, len(msg.content)):
            msg.detect_span = (min(span), max(span))
    return out


def _read_jsonl(path: Path, roles: Sequence[str], strict: bool) -> TranscriptSet:
    out = TranscriptSet([], [], str(path))
    for line_no, line in iter_lines(path, "transcripts file"):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"bad JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise DataError("JSON nested too deeply") from None
            out.transcripts.append(transcript_from_obj(obj, line_no, roles))
        except LabelConventionError as exc:
            raise LabelConventionError(f"{path} line {line_no}: {exc}.") from None
        except DataError as exc:
            _problem(out, Problem(line_no, str(exc)), strict, path)
    return out


def _read_csv(path: Path, strict: bool) -> TranscriptSet:
    out = TranscriptSet([], [], str(path))
    fh, reader = open_csv(path, "transcripts file")
    try:
        if not reader.fieldnames or "statement" not in reader.fieldnames:
            raise DataError(f"{path} has no 'statement' column; a CSV input needs the header statement,label.")
        for row_no, row in enumerate(reader, start=1):
            line_no = reader.line_num
            try:
                text = row.get("statement") or ""
                if not text.strip():
                    raise DataError("empty statement")
                label = statement_label(row.get("label"))
                out.transcripts.append(Transcript(id=f"row-{row_no}", messages=[Message("assistant", text)],
                                                  label=label, line=line_no, raw=True))
            except DataError as exc:
                _problem(out, Problem(line_no, str(exc)), strict, path)
    except csv.Error as exc:
        raise csv_error(exc, path, reader.line_num) from None
    finally:
        fh.close()
    return out


def _problem(out: TranscriptSet, problem: Problem, strict: bool, path: Any) -> None:
    if strict:
        raise ScoringError(f"{path} {problem}; fix that line or run without --strict to skip and count bad lines.")
    out.problems.append(problem)


def load_transcripts(path: Union[str, Path], roles: Sequence[str] = ROLES, strict: bool = False) -> TranscriptSet:
    """Read transcripts from JSONL (chat shape) or CSV (statement,label); bad lines are skipped and counted."""
    from liedetect.datasets import is_transcript_builtin, transcript_builtin

    if is_transcript_builtin(path):
        return transcript_builtin(str(path))
    path = Path(path)
    if path.suffix.lower() in SUFFIX_READERS and path.is_file():  # another format's reader (liedetect.benchmarks)
        import importlib

        module, func = SUFFIX_READERS[path.suffix.lower()].split(":")
        return getattr(importlib.import_module(module), func)(path)
    if not path.exists():
        raise DataError(f"No transcripts file at {path}; pass a .jsonl of chats, a .csv with statement,label or an "
                        f"Apollo rollout file (.json).")
    check_input_file(path, "transcripts file")
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
