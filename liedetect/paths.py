"""Files a run reads and writes: input and output checks, one writer per output (a lock file), strict UTF-8 text.

Every check here runs before a model loads or an output is touched, so a refused run leaves every file as it was.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple, Union

from liedetect.errors import DataError, LockedError, OutputPathError

PathLike = Union[str, Path]

CSV_FIELD_LIMIT = 64 * 1024 * 1024  # one CSV field may hold a 64 MiB transcript; Python's default is 128 KiB


def _real(path: PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def check_input_file(path: PathLike, what: str = "input") -> Path:
    """The path of a readable regular file, or a DataError naming what is wrong with it."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(f"The {what} {p} is a folder; pass a file.")
    if not p.exists():
        raise DataError(f"No {what} file at {p}.")
    if not p.is_file():
        raise DataError(f"The {what} {p} is not a regular file.")
    if not os.access(p, os.R_OK):
        raise DataError(f"The {what} {p} is not readable (permission denied).")
    return p


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_outputs(outputs: Sequence[PathLike], inputs: Iterable[Optional[PathLike]] = (), folder: Sequence[bool] = ()) -> None:
    """Refuse outputs that equal or sit inside an input, repeat each other, or cannot be written.

    `folder[i]` says output i is a folder (it may exist as one, never as a file); otherwise it is a file.
    """
    ins = [_real(p) for p in inputs if p is not None]
    ins += [Path(os.path.realpath(p)) for p in ins]
    seen: List[Path] = []
    for k, out in enumerate(outputs):
        is_folder = folder[k] if k < len(folder) else False
        o = _real(out)
        for candidates in (o, Path(os.path.realpath(o))):
            for i in ins:
                same = candidates == i or (o.is_file() and i.is_file() and os.path.samefile(o, i))  # links too
                if same or _inside(candidates, i):
                    where = "is" if same else "lies inside"
                    raise OutputPathError(f"The output {out} {where} the input {i}; choose an output path apart from the inputs.")
        if o in seen:
            raise OutputPathError(f"Two outputs of this run are both {out}; give each output its own path.")
        seen.append(o)
        _check_writable(Path(out).expanduser(), is_folder)


def _check_writable(out: Path, is_folder: bool) -> None:
    if out.exists():
        if is_folder and not out.is_dir():
            raise OutputPathError(f"The output folder {out} is a file; pass a folder path.")
        if not is_folder and out.is_dir():
            raise OutputPathError(f"The output {out} is a folder; pass a file path.")
        target = out if is_folder else out.parent
        if not os.access(target, os.W_OK) or (not is_folder and not os.access(out, os.W_OK)):
            raise OutputPathError(f"The output {out} is not writable (permission denied).")
        return
    parent = out.parent
    while not parent.exists():
        if parent.is_symlink():
            raise OutputPathError(f"The output {out} lies under a broken link {parent}.")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"The output {out} cannot be created: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"The output {out} cannot be created: the folder {parent} is not writable.")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """One writer per output: `<out>.lock` holds the writer's pid under an exclusive `flock`, which the operating
    system drops when the writer dies, so a lock left by a killed process is taken over by the next run.
    (Where `fcntl` is missing, a lock whose pid is no longer running counts as stale.)"""

    def __init__(self, out: PathLike) -> None:
        out = Path(out)
        self.path = out.with_name(out.name + ".lock")
        self.held = False
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        """Take the lock or raise LockedError naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return self._acquire_by_pid()
        for _ in range(10):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._locked(self._holder()) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and our lock: try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd, self.held = fd, True
            return self
        raise LockedError(f"Could not take the lock {self.path}; other processes keep replacing it.")

    def _acquire_by_pid(self) -> "OutputLock":  # pragma: no cover - not on POSIX
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is not None and _pid_alive(pid) and pid != os.getpid():
                    raise self._locked(pid) from None
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            self.held = True
            return self
        raise LockedError(f"Could not take the lock {self.path}; another process keeps creating it.")

    def _locked(self, pid: Optional[int]) -> LockedError:
        who = f"pid {pid}" if pid is not None else "another process"
        return LockedError(f"Another liedetect process ({who}) is writing {self.path.with_suffix('')}; wait for it to "
                           f"finish (one writer per output).")

    def _holder(self) -> Optional[int]:
        try:
            return int(self.path.read_text().strip() or "-1")
        except (ValueError, OSError):
            return None

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            if self._fd is not None:
                os.close(self._fd)
        self.held, self._fd = False, None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} line {line} is not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8.") from None
    if "\x00" in text:
        raise DataError(f"{path} line {line} holds a NUL byte: this looks like a binary file, not text.")
    return text


def iter_lines(path: PathLike, what: str = "input") -> Iterator[Tuple[int, str]]:
    """(line number, text) of each line of a file, streamed, as strict UTF-8 (a leading BOM is dropped).

    Lines end at "\n" only (a JSON string may hold U+2028 and other characters `str.splitlines` would cut at);
    a byte that is not UTF-8, or a NUL byte, is a DataError naming the file and line."""
    p = check_input_file(path, what)
    with p.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield number, _decode(raw, p, number).rstrip("\n")


def read_text(path: PathLike, what: str = "input") -> str:
    """A whole (small) file as strict UTF-8 text; see `iter_lines`."""
    return "\n".join(text for _, text in iter_lines(path, what))


def open_csv(path: PathLike, what: str = "input") -> Tuple[TextIO, "csv.DictReader"]:
    """(file, DictReader) over a CSV checked as strict UTF-8 first (BOM accepted), with a field limit large
    enough for long transcripts; close the file when done."""
    for _ in iter_lines(path, what):
        pass
    csv.field_size_limit(min(sys.maxsize, CSV_FIELD_LIMIT))
    fh = Path(path).expanduser().open("r", encoding="utf-8-sig", newline="")
    return fh, csv.DictReader(fh)


def read_csv_rows(path: PathLike, columns: Sequence[str], what: str = "input", hint: str = "") -> List[Dict[str, str]]:
    """Every row of a CSV (strict UTF-8, BOM accepted) as a dict, after checking it has `columns`; a missing file,
    a missing column or unreadable CSV is one DataError naming the file (`hint` says what the file should be)."""
    fh, reader = open_csv(path, what)
    with fh:
        missing = sorted(set(columns) - set(reader.fieldnames or []))
        if missing:
            raise DataError(f"{path} lacks the column(s) {', '.join(missing)}{'; ' + hint if hint else ''}.")
        try:
            return list(reader)
        except csv.Error as exc:
            raise csv_error(exc, path, reader.line_num) from None


def csv_error(exc: csv.Error, path: PathLike, line: int) -> DataError:
    """A csv.Error as one sentence with file and line."""
    return DataError(f"{path} line {line} cannot be read as CSV ({exc}).")


def check_encodable(items: Iterable[Tuple[Any, str]], path: PathLike, unit: str = "line") -> None:
    """Each (line, text) must be encodable as UTF-8: a lone surrogate (JSON "\\ud800") is one DataError naming the
    file and line (or another `unit`: entry), not a tokenizer's TypeError later."""
    for line, text in items:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(f"{path} {unit} {line} holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not "
                            f"a character and cannot be encoded; remove or replace it.") from None


def check_transcripts_encodable(data: Any) -> Any:
    """Every role and message of a transcript set (`.transcripts`, `.source`) is encodable text; returns the set."""
    check_encodable(((t.line, part) for t in data.transcripts for m in t.messages
                     for part in (m.role, m.content)), data.source or "the transcripts")
    return data
