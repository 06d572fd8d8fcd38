"""What made a result file: the command, the commit, the package versions and the machine, written beside the
numbers so that any number in the README can be regenerated from the record next to it."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

PACKAGES = ("liedetect", "torch", "transformers", "transformer-lens", "scikit-learn", "numpy", "safetensors")
ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_record(config: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The command line, the commit (with '-dirty' when the tree had changes), package versions, machine and time."""
    commit = _git("rev-parse", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return {"command": shlex.join(["python", *sys.argv]), "config": dict(config or {}), "commit": commit,
            "packages": {name: _version(name) for name in PACKAGES}, "python": platform.python_version(),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "torch_threads": _torch_threads()},
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _torch_threads() -> Optional[int]:
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def write_result(path: Union[str, Path], doc: Mapping[str, Any], config: Optional[Mapping[str, Any]] = None,
                 indent: int = 1) -> Path:
    """Write a result JSON with its run record (key "run"), whole or not at all; NaN is written as null."""
    from probes.base import _jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable({**doc, "run": run_record(config)}, other=str), indent=indent) + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
