"""Random-direction baseline: what a "probe" scores when its direction carries no information."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probes.base import Probe, data_hash
from probes.calibration import platt, unit_scale
from probes.registry import register
from probes.validation import as_labels, as_matrix


@register
class RandomProbe(Probe):
    """A seeded random unit direction; labels (if given) only set its sign and threshold on the training data."""

    method = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> "RandomProbe":
        """Draw the direction; calibrate sign and threshold on (X, y) like the other probes."""
        Xt = as_matrix(X)
        labels = None if y is None else as_labels(y, Xt.shape[0])
        gen = torch.Generator().manual_seed(self.seed)
        v = torch.randn(Xt.shape[1], generator=gen, dtype=torch.float64)
        v = (v / v.norm()).numpy()
        Z = Xt.numpy().astype(np.float64)
        proj = Z @ v
        if labels is not None:
            if float((proj - proj.mean()) @ (2 * labels - 1)) < 0:
                v, proj = -v, -proj
            a, c = platt(proj, labels)
        else:
            a, c = unit_scale(proj)
        self._set_fitted(torch.from_numpy(v), torch.from_numpy(a * v), c, mean=None, std=None,
                         train_hash=data_hash(Xt, labels), n_train=len(Z), info={"sign_from": "labels" if labels is not None else "none"})
        return self
