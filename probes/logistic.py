"""Logistic regression: the supervised baseline, equal by default to scikit-learn's
``StandardScaler + LogisticRegression(C=1)``."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes.base import Probe, data_hash
from probes.calibration import platt
from probes.errors import ProbeError
from probes.registry import register
from probes.selection import DEFAULT_CS, choose_C
from probes.validation import as_labels, as_matrix


@register
class LogisticProbe(Probe):
    """L2-regularised logistic regression (scikit-learn, lbfgs).

    Defaults: ``C=1`` on z-scored features (``standardize="feature"``) and no recalibration, which is exactly
    the baseline every reader of this field runs (StandardScaler + LogisticRegression(C=1)); a test holds it
    within a point of that on every shared statement set, both real models. ``C=None`` chooses C from ``Cs`` by
    ``cv``-fold accuracy on the *same group-aware folds* as everything else (``fit(X, y, groups=...)``; see
    probes.selection.choose_C); the chosen C and the folds are in ``fit_info_``. An ungrouped choice of C
    preferred strong regularisation on paired statement sets and cost 8-10 points on unseen sets.
    ``standardize``: ``"feature"`` (default) z-scores every feature; ``"scalar"`` centres and divides by one
    global scale (the L2 penalty then treats every residual direction alike); ``"none"``. The statistics are
    folded into ``coef_``/``bias_``. ``recalibrate=True`` re-fits the logit's scale and offset (Platt).
    """

    method = "lr"

    def __init__(self, C: float | None = 1.0, Cs: Sequence[float] = DEFAULT_CS, cv: int = 5,
                 standardize: str = "feature", recalibrate: bool = False, max_iter: int = 2000, tol: float = 1e-4,
                 seed: int = 0) -> None:
        self.C = C
        self.Cs = tuple(Cs)
        self.cv = cv
        self.standardize = standardize
        self.recalibrate = recalibrate
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def _model(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol)

    def fit(self, X: Any, y: Any, groups: Sequence[Any] | None = None) -> "LogisticProbe":
        """Fit on activations X [n, d] and 0/1 labels y [n]; `groups` keeps whole groups apart when C is chosen."""
        Xt = as_matrix(X)
        labels = as_labels(y, Xt.shape[0])
        Z = Xt.numpy().astype(np.float64)
        if self.standardize not in ("scalar", "feature", "none"):
            raise ProbeError(f"standardize must be 'scalar', 'feature' or 'none', not {self.standardize!r}.")
        mean = Z.mean(0) if self.standardize != "none" else np.zeros(Z.shape[1])
        if self.standardize == "feature":
            std = Z.std(0)
        elif self.standardize == "scalar":
            std = np.full(Z.shape[1], float(np.sqrt(((Z - mean) ** 2).mean())))
        else:
            std = np.ones(Z.shape[1])
        std = np.where(std > 0, std, 1.0)
        Z = (Z - mean) / std
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.C is not None:
                C, record = float(self.C), {"C": float(self.C), "chosen_by": "given"}
            else:
                C, record = choose_C(Z, labels, self.Cs, self.cv, self.seed, groups, self.max_iter, self.tol)
                record["chosen_by"] = f"{record['folds']}-fold CV accuracy ({'grouped' if groups is not None else 'ungrouped'})"
            model = self._model(C).fit(Z, labels)
        w = model.coef_[0] / std
        b = float(model.intercept_[0] - (model.coef_[0] * mean / std).sum())
        raw = Xt.numpy().astype(np.float64) @ w + b
        a, c = platt(raw, labels) if self.recalibrate else (1.0, 0.0)
        acc = float(((a * raw + c >= 0).astype(int) == labels).mean())
        self._set_fitted(torch.from_numpy(w), torch.from_numpy(a * w), a * b + c, mean=torch.from_numpy(mean),
                         std=torch.from_numpy(std), train_hash=data_hash(Xt, labels), n_train=len(labels),
                         info={"C": C, "C_choice": record, "standardize": self.standardize, "platt": [a, c],
                               "train_accuracy": acc})
        return self
