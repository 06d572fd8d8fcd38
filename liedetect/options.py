"""Command-line option values checked before any model loads: number lists, choices, which paths are inputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Union

from liedetect.errors import OptionError


def parse_floats(text: str, option: str) -> List[float]:
    """'-8,-4,0,2.5' -> finite floats; OptionError names the first item that is not a number."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise OptionError(f"{option} {text!r}: {part!r} is not a number; write comma-separated numbers like -4,0,4.") from None
        if not math.isfinite(value):
            raise OptionError(f"{option} {text!r}: {part!r} is not a finite number.")
        values.append(value)
    if not values:
        raise OptionError(f"{option} {text!r} names no number; write comma-separated numbers like -4,0,4.")
    return values


def check_choice(value: str, choices: Sequence[str], option: str) -> str:
    """The value when it is one of `choices`, else OptionError listing them."""
    if value not in choices:
        raise OptionError(f"{option} {value!r} is not one of {', '.join(choices)}.")
    return value


def input_paths(*specs: Union[None, str, Path]) -> List[Path]:
    """Those of `specs` that name existing files or folders (built-in names and model names are skipped)."""
    out = []
    for spec in specs:
        if spec is None:
            continue
        p = Path(str(spec)).expanduser()
        if p.exists():
            out.append(p)
    return out


def probe_files(path: Union[str, Path]) -> List[Path]:
    """The two files of a saved probe given as PATH, PATH.json or PATH.safetensors."""
    from probes.base import probe_paths

    return list(probe_paths(path))
