"""Input checks shared by every probe: one clear sentence per kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probes.errors import ProbeError


def as_matrix(X: Any, name: str = "X", min_rows: int = 2) -> torch.Tensor:
    """Return X as a finite, contiguous float32 CPU tensor [n, d], or raise ProbeError."""
    if torch.is_tensor(X):
        t = X.detach()
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(X, dtype=np.float32)))
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"{name} must be a numeric array of shape [n_examples, d_model] ({exc}).") from None
    if t.ndim != 2:
        raise ProbeError(f"{name} must be 2-D [n_examples, d_model], but it has shape {tuple(t.shape)}.")
    if t.shape[0] < min_rows:
        raise ProbeError(f"{name} has {t.shape[0]} example(s); a probe needs at least {min_rows}.")
    if t.shape[1] < 1:
        raise ProbeError(f"{name} has no features (shape {tuple(t.shape)}); pass activations of width d_model.")
    t = t.to(device="cpu", dtype=torch.float32).contiguous()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0, 0])
        raise ProbeError(
            f"{name} contains {int(bad.sum())} NaN or infinite value(s) (first in row {row}); "
            "drop or recompute those activations before using a probe."
        )
    return t


def as_labels(y: Any, n: int, name: str = "y", both_classes: bool = True) -> np.ndarray:
    """Return y as an int64 numpy array of 0/1 of length n, or raise ProbeError."""
    arr = y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
    if arr.ndim != 1:
        raise ProbeError(f"{name} must be 1-D with one label per example, but it has shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ProbeError(f"{name} has {arr.shape[0]} labels but there are {n} examples; pass one label per row.")
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ProbeError(f"{name} must contain only 0 (false) and 1 (true), not {arr.dtype} values.") from None
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        raise ProbeError(f"{name} must contain only 0 (false) and 1 (true), but it contains {arr[bad][0]!r}.")
    labels = as_float.astype(np.int64)
    if both_classes and len(np.unique(labels)) < 2:
        only = int(labels[0])
        raise ProbeError(
            f"{name} contains only class {only} ({'true' if only else 'false'}); "
            "a probe needs both true (1) and false (0) examples."
        )
    return labels


def check_pairs(X_pos: Any, X_neg: Any, min_rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two aligned [n, d] halves of contrast pairs."""
    xp = as_matrix(X_pos, "X_pos", min_rows)
    xn = as_matrix(X_neg, "X_neg", min_rows)
    if xp.shape != xn.shape:
        raise ProbeError(
            f"X_pos has shape {tuple(xp.shape)} but X_neg has shape {tuple(xn.shape)}; "
            "contrast pairs must align row by row."
        )
    return xp, xn


def check_width(X: torch.Tensor, d: int, name: str = "X") -> None:
    """Raise ProbeError when X's width differs from the probe's."""
    if X.shape[1] != d:
        raise ProbeError(
            f"{name} has {X.shape[1]} features but this probe was fitted on {d}; "
            "use activations from the same model and layer."
        )


def read_format_json(path: Path, fmt: str, error: type = ProbeError, what: str = "probe", remedy: str = "re-save it") -> dict:
    """The JSON object in `path`, refused with one sentence (raised as `error`) when it is not valid JSON or its
    "format" is not `fmt`."""
    try:
        d = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}); {remedy}.") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise error(f"{path} is not a liedetect {what} file (format={found!r}).")
    return d
