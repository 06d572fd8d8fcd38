"""TTPD: training of truth and polarity directions (Bürger, Hamprecht & Nadler, "Truth is Universal:
Robust Detection of Lies in LLMs", NeurIPS 2024).

A probe trained on affirmative statements alone can invert on negated ones: in many models the
truth of "Paris is in France" and of "Paris is not in France" separate along different directions.
The paper models the topic-centred activation of a statement with truth ``tau`` (+1 true, -1 false)
and polarity ``p`` (+1 affirmative, -1 negated) as

    x - mean(topic) ~= tau * t_G + tau * p * t_P + noise

where ``t_G`` is a *general* truth direction shared by both polarities and ``t_P`` a polarity-sensitive
one. TTPD estimates both by least squares, learns a polarity direction from the raw activations, and
classifies with logistic regression on the 2-D projection (onto ``t_G`` and the polarity direction), so
that statements of either polarity can be scored without knowing their polarity.

This implementation is liedetect's own, written from the paper and checked against its code
(sciai-lab/Truth_is_Universal, ``probes.py``: ``TTPD.from_data``) on the same activations. It stays a linear
read-out in raw residual space, like every probe here: ``coef_ = w_G * t_G + w_P * p`` and
``direction_ = t_G_hat`` (the general truth direction, which is what steering and scoring consume).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes.base import Probe, data_hash
from probes.errors import ProbeError
from probes.registry import register
from probes.validation import as_labels, as_matrix

POLARITY_NAMES = {"affirmative": 1, "aff": 1, "positive": 1, "negated": 0, "neg": 0, "negative": 0}


def as_polarity(polarity: Any, n: int) -> np.ndarray:
    """Polarity per statement as 0/1 (1 = affirmative, 0 = negated); accepts 0/1, +1/-1 or names."""
    values = list(polarity.tolist() if hasattr(polarity, "tolist") else polarity)
    if len(values) != n:
        raise ProbeError(f"polarity has {len(values)} entries but X has {n} rows; give one polarity per statement.")
    out = np.empty(n, dtype=np.int64)
    for i, v in enumerate(values):
        if isinstance(v, str):
            key = v.strip().lower()
            if key not in POLARITY_NAMES:
                raise ProbeError(f"polarity[{i}] is {v!r}; use 'affirmative'/'negated', 1/0 or +1/-1.")
            out[i] = POLARITY_NAMES[key]
        elif v in (1, 1.0, True):
            out[i] = 1
        elif v in (0, 0.0, -1, -1.0, False):
            out[i] = 0
        else:
            raise ProbeError(f"polarity[{i}] is {v!r}; use 'affirmative'/'negated', 1/0 or +1/-1.")
    return out


def centre_by_group(Z: np.ndarray, groups: Sequence[Any] | None) -> np.ndarray:
    """Subtract each group's mean activation (the whole set's mean when no groups are given)."""
    if groups is None:
        return Z - Z.mean(0)
    keys = np.asarray([str(g) for g in groups])
    if len(keys) != Z.shape[0]:
        raise ProbeError(f"groups has {len(keys)} entries but X has {Z.shape[0]} rows; give one topic per statement.")
    out = np.empty_like(Z)
    for key in np.unique(keys):
        rows = keys == key
        out[rows] = Z[rows] - Z[rows].mean(0)
    return out


def truth_directions(Zc: np.ndarray, labels: np.ndarray, polarity: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Least-squares t_G and t_P from centred activations; t_P is None when only one polarity is present."""
    tau = 2.0 * labels - 1.0
    if polarity is None or len(np.unique(polarity)) < 2:
        design = tau[:, None]
    else:
        design = np.stack([tau, tau * (2.0 * polarity - 1.0)], axis=1)
    coef, *_ = np.linalg.lstsq(design, Zc, rcond=None)
    return coef[0], (coef[1] if coef.shape[0] > 1 else None)


def _lr(features: np.ndarray, y: np.ndarray, C: float | None) -> LogisticRegression:
    """The paper's read-outs: ``LogisticRegression(penalty=None)`` with scikit-learn's other defaults (C=None);
    an L2 penalty of strength 1/C otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if C is None:
            return LogisticRegression(penalty=None, fit_intercept=True).fit(features, y)
        return LogisticRegression(C=C, max_iter=2000).fit(features, y)


@register
class TTPDProbe(Probe):
    """Truth and polarity directions (TTPD), as the paper's code fits it: ``fit(X, y, polarity=..., groups=...)``.

    1. Each topic (``groups``: the set a statement came from, cities and neg_cities being two topics) is centred
       on its own mean, and ``t_G``, ``t_P`` are the least-squares solution of ``x_c = tau t_G + tau p t_P``.
    2. The polarity direction is the weight vector of a logistic regression of polarity on the raw activations.
    3. Truth is a logistic regression on the 2-D projection of the raw activations onto ``t_G`` and the polarity
       direction, so the polarity feature can move the decision (checked against the paper's code in
       tests/test_probes_ttpd.py; ``fit_info_["weights_tG_polarity"]`` shows both weights).

    ``polarity``: per statement, 1/'affirmative' or 0/-1/'negated'; without it (or with one polarity only) the
    probe reduces to ``t_G`` alone and says so in ``fit_info_``. ``C=None`` (default): the paper's unpenalised
    read-outs; a number: L2 read-outs of that strength.
    """

    method = "ttpd"
    extra_tensors: ClassVar[tuple[str, ...]] = ("t_G_", "t_P_", "polarity_direction_", "train_mean_")

    def __init__(self, C: float | None = None, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def fit(self, X: Any, y: Any, polarity: Any = None, groups: Sequence[Any] | None = None) -> "TTPDProbe":
        """Fit on activations X [n, d], truth labels y (1 = true), polarity and topic per statement."""
        Xt = as_matrix(X)
        labels = as_labels(y, Xt.shape[0])
        pol = None if polarity is None else as_polarity(polarity, Xt.shape[0])
        Z = Xt.numpy().astype(np.float64)
        t_G, t_P = truth_directions(centre_by_group(Z, groups), labels, pol)
        info: dict[str, Any] = {"t_G_norm": float(np.linalg.norm(t_G)), "C": self.C,
                                "readout": "unpenalised" if self.C is None else f"L2, C={self.C}"}
        raw = Xt.numpy()  # float32, as the paper's code hands its activations to scikit-learn
        if pol is not None and len(np.unique(pol)) == 2:
            p_model = _lr(raw, pol, self.C)
            p = p_model.coef_[0].astype(np.float64)
            info["polarity_train_accuracy"] = float((p_model.predict(raw) == pol).mean())
            info["cos_tG_tP"] = float(t_G @ t_P / (np.linalg.norm(t_G) * np.linalg.norm(t_P)))
            basis = np.stack([t_G, p], axis=1)
            info["polarity"] = "both"
        else:
            p, basis = None, t_G[:, None]
            info["polarity"] = "one polarity only: t_P and the polarity direction were not estimated"
        feats = Z @ basis
        model = _lr(feats, labels, self.C)
        w = model.coef_[0].astype(np.float64)
        b = float(model.intercept_[0])
        coef = basis @ w
        info["train_accuracy"] = float((((feats @ w + b) >= 0).astype(int) == labels).mean())
        # each weight times its feature's spread: how much each feature moves the logit
        info["weights_tG_polarity"] = [float(v) for v in w * feats.std(0)]
        g_hat = t_G / np.linalg.norm(t_G)
        self.t_G_ = torch.from_numpy(t_G).to(torch.float32)
        self.t_P_ = None if t_P is None else torch.from_numpy(t_P).to(torch.float32)
        self.polarity_direction_ = None if p is None else torch.from_numpy(p / np.linalg.norm(p)).to(torch.float32)
        self.train_mean_ = torch.from_numpy(Z.mean(0)).to(torch.float32)
        self._set_fitted(torch.from_numpy(g_hat), torch.from_numpy(coef), b, mean=None, std=None,
                         train_hash=data_hash(Xt, labels, pol), n_train=len(labels), info=info)
        return self

    def decision_function(self, X: Any, groups: Sequence[Any] | None = None) -> torch.Tensor:
        """Signed score per statement (> 0 = true); with ``groups``, each topic's offset along t_G is removed first.

        Moving an unseen topic's mean along ``t_G`` to the training mean needs no labels (only the batch
        of statements of that topic, assumed to hold both true and false ones) and removes the topic's
        offset, which otherwise shifts every score of the topic by the same amount.
        """
        Xt = self._input(X)
        if groups is not None:
            if self.train_mean_ is None:
                raise ProbeError("This TTPD probe was saved without its training mean; refit it to score with groups.")
            Z = Xt.numpy().astype(np.float64)
            g = self.direction_.numpy().astype(np.float64)
            shift = (Z - centre_by_group(Z, groups) - self.train_mean_.numpy().astype(np.float64)) @ g
            Xt = torch.from_numpy(Z - shift[:, None] * g[None, :]).to(torch.float32)
        return Xt @ self.coef_ + self.bias_

    def score(self, X: Any, y: Any, groups: Sequence[Any] | None = None) -> float:
        """Accuracy against 0/1 labels (with ``groups``: topics centred on their own means first)."""
        pred = (self.decision_function(X, groups) >= 0).long().numpy()
        return float((pred == as_labels(y, len(pred), both_classes=False)).mean())
