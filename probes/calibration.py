"""One-dimensional logistic calibration: turn a projection onto a direction into P(true)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression


def platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit P(true) = sigmoid(a * score + c) on labelled scores; return (a, c)."""
    s = np.asarray(scores, dtype=np.float64)
    m, sd = float(s.mean()), float(s.std())
    sd = sd if sd > 0 else 1.0
    z = ((s - m) / sd).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(z, np.asarray(y))
    a_std, c_std = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    return a_std / sd, c_std - a_std * m / sd


def unit_scale(scores: np.ndarray) -> tuple[float, float]:
    """Without labels: centre the scores at their mean and scale them to unit variance."""
    s = np.asarray(scores, dtype=np.float64)
    sd = float(s.std())
    a = 1.0 / sd if sd > 0 else 1.0
    return a, -a * float(s.mean())
