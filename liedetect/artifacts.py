"""Artifacts written whole or not at all: a folder of several files (a detector, an ITI intervention) is written
into a temporary sibling folder with a manifest (file names, sizes, sha256, format and version), then swapped into
place in one rename; a single file is written beside its target and renamed over it. Loading checks the manifest,
so a folder holding a mix of two versions is refused with one sentence.

A full disk or an unwritable folder while writing is one OutputPathError; the temporary files are removed and the
earlier artifact (if any) is left as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Union

from liedetect.errors import CheckpointError, OutputPathError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "liedetect-manifest"
MANIFEST_VERSION = 1
TEST_KILL_ENV = "LIEDETECT_TEST_KILL_AT"  # tests only: SIGKILL this process at a named point of a write

PathLike = Union[str, Path]


def _kill_point(name: str) -> None:
    """Die here, as `kill -9` would, when the test hook names this point (reliability tests only)."""
    if os.environ.get(TEST_KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_error(target: Path, exc: BaseException) -> OutputPathError:
    reason = getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = "free some disk space or choose another output" if full or "space" in reason.lower() else \
        "check the folder and its permissions"
    return OutputPathError(f"Could not write {target} ({reason}); nothing was written and any earlier version is "
                           f"untouched: {hint}.")


def _write_errors() -> tuple:
    """OSError and safetensors' own error (a full disk while writing tensors raises it)."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors is a dependency
        return (OSError,)
    return (OSError, SafetensorError)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


def _remove_stale(folder: Path) -> None:
    """Temporary siblings left by a killed writer (its pid no longer runs)."""
    from liedetect.paths import _pid_alive

    for p in folder.parent.glob(f".{folder.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def write_artifact_dir(folder: PathLike, write: Callable[[Path], None], fmt: str, version: int) -> Path:
    """Write an artifact folder whole or not at all: `write(tmp)` fills a temporary sibling folder, a manifest
    (fmt, version, each file's size and sha256) is added, and the folder is swapped into place in one rename."""
    folder = Path(folder)
    parent = folder.parent
    tmp = parent / f".{folder.name}.tmp-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MANIFEST}
        manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "artifact": fmt,
                    "artifact_version": version, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        for p in tmp.iterdir():
            _fsync(p)
        _kill_point("written")
        if folder.is_dir() and _exchange(tmp, folder):
            _kill_point("swapped")
            shutil.rmtree(tmp, ignore_errors=True)  # now the old version
        else:
            old = parent / f".{folder.name}.old-{os.getpid()}"
            if folder.is_dir():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(parent)
    except _write_errors() as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(folder, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_file_atomic(path: PathLike, data: Union[str, bytes, Callable[[Path], None]]) -> Path:
    """Write one file whole or not at all: into a temporary sibling, then renamed over `path`. `data` is the
    text (UTF-8), the bytes, or a function that writes the temporary path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except _write_errors() as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def verify_manifest(folder: PathLike, fmt: str, version: int) -> Optional[Dict[str, dict]]:
    """Check an artifact folder against its manifest: the same format and version, every listed file present with
    its size and sha256. Returns the listed files, or None for a folder written before manifests (no manifest)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({type(exc).__name__}); the artifact is damaged: write it "
                              f"again.") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("files"), dict):
        raise CheckpointError(f"{path} is not a liedetect manifest; the artifact is damaged: write it again.")
    if m.get("artifact") != fmt or m.get("artifact_version") != version:
        raise CheckpointError(f"{folder} holds a {m.get('artifact')!r} version {m.get('artifact_version')!r} artifact, "
                              f"not {fmt!r} version {version}; use a matching liedetect or write it again.")
    for name, entry in m["files"].items():
        f = folder / str(name)
        if not isinstance(entry, dict) or Path(str(name)).name != name or name in ("", ".", ".."):
            raise CheckpointError(f"{path} lists {name!r}, which is not a file of this folder; write the artifact "
                                  f"again.")
        if not f.is_file():
            raise CheckpointError(f"{folder} lacks {name}, which its manifest lists: the folder is incomplete; write "
                                  f"it again.")
        if f.stat().st_size != entry.get("bytes") or sha256_file(f) != entry.get("sha256"):
            raise CheckpointError(f"{f} is not the file its manifest lists (sha256 differs): {folder} mixes files "
                                  f"of two "
                                  f"versions or was edited; write it again.")
    return m["files"]


def check_artifact_target(folder: PathLike, known: Iterable[str], what: str) -> None:
    """An artifact folder may be written at `folder` only when it does not exist, is empty, or holds an earlier
    artifact of this kind and nothing else (replacing it must not delete anyone's other files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = {p.name for p in folder.iterdir()}
    if not names:
        return
    keep = set(known) | {MANIFEST}
    foreign = sorted(names - keep)
    if foreign or not (names & (set(known) - {MANIFEST})):
        listed = foreign or sorted(names)
        shown = ", ".join(listed[:3]) + (" ..." if len(listed) > 3 else "")
        raise OutputPathError(f"The output folder {folder} holds files that are not part of {what} ({shown}); "
                              f"replacing it "
                              f"would delete them: choose another --out or an empty folder.")


def json_doc(path: PathLike) -> object:
    """The JSON document in a file, or None when it cannot be read as JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def json_object(path: PathLike) -> dict:
    """The JSON object in a file, or {} when it holds no readable JSON object."""
    doc = json_doc(path)
    return doc if isinstance(doc, dict) else {}


def check_replaceable(path: PathLike, ours: Callable[[Path], bool], what: str) -> None:
    """An existing, non-empty output file is replaced only when it is one this command wrote (`ours(path)`, e.g.
    from its `json_doc`): another file there (a probe, someone's data) is refused, never overwritten."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"The output {path} is a folder; pass a file path.")
    if path.is_file() and path.stat().st_size and not ours(path):
        raise OutputPathError(f"{path} exists and is not {what}; choose another output path or delete it first.")
