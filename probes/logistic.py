"""Logistic regression: the supervised baseline (L2, C chosen by cross-validation unless given)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from probes.base import Probe, data_hash
from probes.calibration import platt
from probes.errors import ProbeError
from probes.registry import register
from probes.validation import as_labels, as_matrix

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))


@register
class LogisticProbe(Probe):
    """L2-regularised logistic regression (scikit-learn, lbfgs).

    ``C=None`` picks C from ``Cs`` by stratified ``cv``-fold accuracy (scikit-learn's default scoring) with
    the one-standard-error rule: the strongest regularisation within one standard error of the best
    fold-mean accuracy (a stable direction beats a tiny gain in likelihood); the chosen C is in
    ``fit_info_``. With ``recalibrate=True`` the logit's scale and offset are then re-fitted in one
    dimension (Platt) so P(true) stays calibrated however strong the regularisation.
    ``standardize``: ``"scalar"`` (default) centres and divides by one global scale, which keeps the
    geometry of residual space (the L2 penalty treats every direction alike, so ``direction_`` is a
    direction in the model's own coordinates); ``"feature"`` z-scores every feature (scikit-learn's
    usual pipeline; the penalty then favours high-variance features); ``"none"``. The statistics are
    stored as ``mean_``/``std_`` and folded into ``coef_``/``bias_``.
    """

    method = "lr"

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, cv: int = 5,
                 standardize: str = "scalar", recalibrate: bool = True, max_iter: int = 2000, tol: float = 1e-4,
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
        return LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol, warm_start=True)

    def _choose_C(self, Z: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
        folds = min(self.cv, int(np.bincount(y).min()))
        if folds < 2:
            return 1.0, {}
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        Cs = sorted(self.Cs)
        acc = np.zeros((folds, len(Cs)))
        for f, (tr, te) in enumerate(splitter.split(Z, y)):
            model = self._model(Cs[0])
            for j, C in enumerate(Cs):  # increasing C, warm-started from the previous solution
                model.set_params(C=C).fit(Z[tr], y[tr])
                acc[f, j] = (model.predict(Z[te]) == y[te]).mean()
        mean, se = acc.mean(0), acc.std(0, ddof=1) / np.sqrt(folds)
        best = int(np.argmax(mean))
        # one-standard-error rule: the strongest regularisation whose accuracy is within one SE of the best
        chosen = next(j for j in range(len(Cs)) if mean[j] >= mean[best] - se[best])
        return Cs[chosen], {str(c): float(m) for c, m in zip(Cs, mean)}

    def fit(self, X: Any, y: Any) -> "LogisticProbe":
        """Fit on activations X [n, d] and 0/1 labels y [n]."""
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
            C, cv_losses = (self.C, {}) if self.C is not None else self._choose_C(Z, labels)
            model = self._model(C).fit(Z, labels)
        w = model.coef_[0] / std
        b = float(model.intercept_[0] - (model.coef_[0] * mean / std).sum())
        raw = Xt.numpy().astype(np.float64) @ w + b
        a, c = platt(raw, labels) if self.recalibrate else (1.0, 0.0)
        acc = float(((a * raw + c >= 0).astype(int) == labels).mean())
        self._set_fitted(torch.from_numpy(w), torch.from_numpy(a * w), a * b + c, mean=torch.from_numpy(mean),
                         std=torch.from_numpy(std), train_hash=data_hash(Xt, labels), n_train=len(labels),
                         info={"C": C, "C_chosen_by": "given" if self.C is not None else f"{self.cv}-fold CV accuracy, one-SE rule",
                               "cv_accuracy": cv_losses, "platt": [a, c], "train_accuracy": acc})
        return self
