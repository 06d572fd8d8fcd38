"""Checks shared by the spec, the hooks and the sweeps: directions as unit rows, a finite alpha, layers that exist."""

from __future__ import annotations

import math
from typing import Any, List, Sequence

import torch

from liedetect.errors import LayerError, SteeringError


def as_rows(direction: Any, where: str) -> torch.Tensor:
    """A direction (or k directions) as unit rows [k, d] in float32."""
    t = torch.as_tensor(direction).detach().to("cpu", torch.float32)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] == 0:
        raise SteeringError(f"The direction for {where} has shape {tuple(t.shape)}; pass a [d] vector or a [k, d] matrix.")
    if not torch.isfinite(t).all():
        raise SteeringError(f"The direction for {where} contains NaN or infinite values; refit the probe or fix the tensor.")
    norms = t.norm(dim=-1, keepdim=True)
    if (norms < 1e-12).any():
        raise SteeringError(f"The direction for {where} is a zero vector; a direction needs a non-zero length.")
    return t / norms


def check_alpha(alpha: Any) -> float:
    """`alpha` as a float; SteeringError unless it is a finite number."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise SteeringError(f"Alpha must be a number, got {alpha!r}.") from None
    if not math.isfinite(value):
        raise SteeringError(f"Alpha is {value}; steering needs a finite number such as 4.0.")
    return value


def check_layers(model: Any, layers: Sequence[int]) -> List[int]:
    """The layers as indices 0..n-1 (negative ones count from the end); LayerError names a missing one."""
    n = model.cfg.n_layers
    for layer in layers:
        if not -n <= int(layer) < n:
            raise LayerError(f"Layer {layer} does not exist: this model has {n} layers (0..{n - 1}).")
    return [int(layer) % n for layer in layers]
