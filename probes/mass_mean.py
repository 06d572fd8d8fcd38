"""Mass-mean probing (Marks & Tegmark): the direction is the difference of the class means."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from probes.base import Probe, data_hash
from probes.calibration import platt
from probes.registry import register, register_preset
from probes.validation import as_labels, as_matrix


@register
class MassMeanProbe(Probe):
    """``direction_`` = mean(true) - mean(false), normalised.

    ``iid=False``: classify with the projection on that direction (Platt-calibrated on the training labels).
    ``iid=True``: classify with the covariance-corrected (LDA) weights Sigma^-1 (mu_1 - mu_0), where Sigma
    is the pooled within-class covariance (Ledoit-Wolf shrinkage); ``direction_`` stays the mass-mean
    direction (what steering uses), ``lda_coef_`` holds the unscaled corrected weights.
    """

    method = "mass-mean"
    extra_tensors: ClassVar[tuple[str, ...]] = ("lda_coef_",)

    def __init__(self, iid: bool = False, seed: int = 0) -> None:
        self.iid = iid
        self.seed = seed

    def fit(self, X: Any, y: Any) -> "MassMeanProbe":
        """Fit on activations X [n, d] and 0/1 labels y [n]."""
        Xt = as_matrix(X)
        labels = as_labels(y, Xt.shape[0])
        Z = Xt.numpy().astype(np.float64)
        mu1, mu0 = Z[labels == 1].mean(0), Z[labels == 0].mean(0)
        theta = mu1 - mu0
        info: dict[str, Any] = {"mean_gap_norm": float(np.linalg.norm(theta))}
        if self.iid:
            centred = np.where(labels[:, None] == 1, Z - mu1, Z - mu0)
            lw = LedoitWolf(assume_centered=True).fit(centred)
            w = np.linalg.solve(lw.covariance_, theta)
            info["ledoit_wolf_shrinkage"] = float(lw.shrinkage_)
            self.lda_coef_ = torch.from_numpy(w).to(torch.float32)
        else:
            w = theta
            self.lda_coef_ = None
        a, c = platt(Z @ w, labels)
        coef = torch.from_numpy(a * w)
        acc = float((((Z @ (a * w)) + c >= 0).astype(int) == labels).mean())
        info["train_accuracy"] = acc
        self._set_fitted(torch.from_numpy(theta), coef, c, mean=torch.from_numpy((mu1 + mu0) / 2), std=None,
                         train_hash=data_hash(Xt, labels), n_train=len(labels), info=info)
        return self


register_preset("mass-mean-iid", MassMeanProbe, iid=True)
