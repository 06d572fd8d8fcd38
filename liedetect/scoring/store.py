"""The streamed score file: append-only JSONL flushed per record, resumable after a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from liedetect.errors import CheckpointError


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
