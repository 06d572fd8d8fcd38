"""The streamed score file: append-only JSONL flushed per record, resumable after a crash.

Each record carries a fingerprint of its transcript and of the run's settings; on resume a record is kept only
when its transcript is still in the input, unchanged, so an edited input is rescored, never silently kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from liedetect.errors import CheckpointError

FORMAT = "liedetect-scores"


def score_outputs(out: Union[str, Path]) -> Dict[str, Path]:
    """Every file a scoring run to `out` writes, by role (scores, their meta, control scores, summary)."""
    out = Path(out)
    control = out.with_suffix(".control.jsonl")
    return {"scores": out, "meta": out.with_name(out.name + ".meta.json"), "control": control,
            "control_meta": control.with_name(control.name + ".meta.json"),
            "summary": out.with_name(out.name + ".summary.json")}


def settings_digest(settings: Optional[Dict[str, Any]]) -> str:
    """A short hash of the run settings."""
    return hashlib.sha256(json.dumps(settings or {}, sort_keys=True).encode()).hexdigest()[:16]


def transcript_fingerprint(transcript: Any, settings_sha: str) -> str:
    """A short hash of everything about a transcript that its record depends on, plus the settings' hash."""
    body = {"id": transcript.id, "label": transcript.label, "group": transcript.group, "raw": transcript.raw,
            "messages": [[m.role, m.content, m.label] for m in transcript.messages], "settings": settings_sha}
    if any(getattr(m, "detect", None) is not None for m in transcript.messages):  # the detect mask changes the record
        body["detect"] = [[m.detect, m.detect_span] for m in transcript.messages]
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


class ScoreFile:
    """Append-only JSONL of records, flushed per line; on resume, drops a half-written last line and every
    record whose fingerprint does not match `fingerprints` (id -> fingerprint of the current input)."""

    def __init__(self, path: Union[str, Path], resume: bool = False, settings: Optional[Dict[str, Any]] = None,
                 fingerprints: Optional[Dict[str, str]] = None, lines: Optional[Dict[str, int]] = None) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.done: Dict[str, Dict[str, Any]] = {}
        self.dropped_partial = False
        self.n_stale = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**(settings or {}), "format": FORMAT}
        if resume and self.path.exists() and self.path.stat().st_size:
            self._check_settings(meta)
            self._recover(fingerprints, lines or {})
        else:
            check_replaceable(self.path)
            self.path.write_bytes(b"")
        self.meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._fh = self.path.open("ab")

    def _check_settings(self, settings: Dict[str, Any]) -> None:
        old = check_resumable(self.path)
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            raise CheckpointError(f"{self.path} was written with different settings ({', '.join(diff)}); rerun with "
                                  f"the same settings to resume, or without --resume to start over.")

    def _recover(self, fingerprints: Optional[Dict[str, str]], lines: Dict[str, int]) -> None:
        data = self.path.read_bytes()
        keep: List[bytes] = []
        size, moved = 0, False
        for n, line in enumerate(data.splitlines(keepends=True), start=1):
            if not line.endswith(b"\n"):
                self.dropped_partial = True  # the half-written line of an interrupted run
                break
            size += len(line)
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                rec = None
            if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("messages"), list):
                raise CheckpointError(f"{self.path} line {n} is not a liedetect score record; choose another --out, "
                                      f"or run without --resume to start over.")
            ident = str(rec["id"])
            if fingerprints is not None and (rec.get("fingerprint") != fingerprints.get(ident) or ident in self.done):
                self.n_stale += 1  # its transcript changed or left the input: it is scored again
                continue
            if ident in lines and rec.get("line") != lines[ident]:  # same transcript, moved in the file
                rec["line"] = lines[ident]
                line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
                moved = True
            self.done[ident] = rec
            keep.append(line)
        if self.n_stale or moved:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(b"".join(keep))
            os.replace(tmp, self.path)
        elif self.dropped_partial:
            with self.path.open("r+b") as fh:
                fh.truncate(size)

    def write(self, record: Dict[str, Any]) -> None:
        """Append one record as a line and flush it to the operating system."""
        self._fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._fh.flush()
        self.done[str(record["id"])] = record

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def _read_meta(path: Path) -> Optional[Dict[str, Any]]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def check_resumable(path: Path) -> Dict[str, Any]:
    """The settings a score file was written with; CheckpointError when it is not a liedetect score file."""
    meta = _read_meta(path.with_name(path.name + ".meta.json"))
    if meta is None:
        raise CheckpointError(f"{path} is not a liedetect score file (no valid {path.name}.meta.json beside it); "
                              f"choose another --out, or run without --resume to replace it.")
    return meta


def check_targets(out: Union[str, Path], resume: bool) -> None:
    """The score file and the control cache of a run to `out` can be resumed (with `resume`) or replaced."""
    outputs = score_outputs(out)
    for target in (outputs["scores"], outputs["control"]):
        if resume and target.is_file() and target.stat().st_size:
            check_resumable(target)
        else:
            check_replaceable(target)


def check_replaceable(path: Path) -> None:
    """Refuse to replace a non-empty file that is not a liedetect score file (it may be someone's data)."""
    from liedetect.artifacts import check_replaceable as replaceable

    replaceable(path, lambda p: _read_meta(p.with_name(p.name + ".meta.json")) is not None, "a liedetect score file")


def read_scores(path: Union[str, Path], check: bool = True) -> List[Dict[str, Any]]:
    """Records of a scores JSONL. A last line without its newline (an interrupted run) is left out; any other line
    that is not a score record (broken JSON, no score, a NaN score, a transcript instead of scores) is one
    DataError naming the file and line (`check=False` skips the record checks, not the JSON ones)."""
    from liedetect.errors import DataError
    from liedetect.paths import check_input_file
    from liedetect.schemas import check_record

    path = Path(path)
    check_input_file(path, "scores")
    out = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                why = getattr(exc, "msg", None) or getattr(exc, "reason", "")
                raise DataError(f"{path} line {n} is not valid JSON ({why}), so it is not a score record; pass a "
                                f"scores file written by `liedetect score`.") from None
            out.append(check_record(rec, f"{path} line {n}") if check else rec)
    return out
