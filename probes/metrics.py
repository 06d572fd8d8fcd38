"""Detection metrics, the one home for every part of liedetect: accuracy, AUROC and the ROC curve, threshold and
recall at a false-positive rate, confusion counts, expected calibration error, bootstrap intervals.

Pure math on score arrays (numpy or torch); no model, no file. Callers that speak of lies pass lies as the
positive class and "higher = more suspicious" scores.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as _sk_roc_curve

from probes.errors import ProbeError


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def _check(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    yy, pp = _np(y).astype(np.int64).ravel(), _np(p).astype(np.float64).ravel()
    if yy.shape != pp.shape:
        raise ProbeError(f"Got {yy.size} labels but {pp.size} probabilities; pass one probability per label.")
    if yy.size == 0:
        raise ProbeError("No examples to evaluate; pass at least one labelled example.")
    return yy, pp


def accuracy(y: Any, p: Any, threshold: float = 0.5) -> float:
    """Fraction of examples where (p >= threshold) equals the 0/1 label."""
    yy, pp = _check(y, p)
    return float(((pp >= threshold).astype(np.int64) == yy).mean())


def auroc(y: Any, p: Any) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    yy, pp = _check(y, p)
    if len(np.unique(yy)) < 2:
        return float("nan")
    return float(roc_auc_score(yy, pp))


def roc_curve(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of the ROC curve of scores `p` for 0/1 labels `y`."""
    yy, pp = _check(y, p)
    fpr, tpr, _ = _sk_roc_curve(yy, pp)
    return fpr, tpr


def threshold_at_fpr(negatives: Any, fpr: float = 0.01) -> float:
    """The lowest threshold t with at most `fpr` of the negative scores strictly above t."""
    s = np.sort(_np(negatives).astype(np.float64).ravel())[::-1]
    if len(s) == 0:
        raise ProbeError("No negative scores to set a threshold on; pass at least one.")
    if not 0 <= fpr < 1:
        raise ProbeError(f"The false-positive rate must be in [0, 1), got {fpr}.")
    k = int(math.floor(fpr * len(s) + 1e-9))
    return float(s[min(k, len(s) - 1)])


def recall_at_fpr(neg_scores: Any, pos_scores: Any, fpr: float = 0.01) -> tuple[float, float]:
    """(recall on positives, threshold) at the threshold that flags at most `fpr` of the negatives."""
    pos = _np(pos_scores).astype(np.float64).ravel()
    threshold = threshold_at_fpr(neg_scores, fpr) if len(_np(neg_scores).ravel()) else 0.0
    return (float((pos > threshold).mean()) if len(pos) else float("nan")), threshold


def confusion_counts(y_pos: Any, flagged: Any) -> dict[str, int]:
    """tp / fp / tn / fn of boolean `flagged` against 0/1 labels `y_pos` (1 = the positive class)."""
    y = _np(y_pos).astype(np.int64).ravel() == 1
    f = _np(flagged).astype(bool).ravel()
    return {"tp": int((f & y).sum()), "fp": int((f & ~y).sum()), "tn": int((~f & ~y).sum()), "fn": int((~f & y).sum())}


def ece(y: Any, p: Any, n_bins: int = 10) -> float:
    """Expected calibration error of P(true) with equal-width bins."""
    yy, pp = _check(y, p)
    bins = np.minimum((pp * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(pp[mask].mean() - yy[mask].mean())
    return float(total)


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], y: Any, p: Any, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of metric(y, p), resampling examples with a seeded generator."""
    yy, pp = _check(y, p)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(yy), size=(n_boot, len(yy)))
    values = np.array([metric(yy[i], pp[i]) for i in idx], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def evaluate(y: Any, p: Any, n_boot: int = 0, seed: int = 0) -> dict[str, float]:
    """accuracy, auroc, ece (and, with n_boot > 0, 95% bootstrap bounds for accuracy and AUROC)."""
    yy, pp = _check(y, p)
    out = {"accuracy": accuracy(yy, pp), "auroc": auroc(yy, pp), "ece": ece(yy, pp), "n": int(len(yy))}
    if n_boot > 0:
        out["accuracy_lo"], out["accuracy_hi"] = bootstrap_ci(accuracy, yy, pp, n_boot, seed=seed)
        out["auroc_lo"], out["auroc_hi"] = bootstrap_ci(auroc, yy, pp, n_boot, seed=seed)
    return out
