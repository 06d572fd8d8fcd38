"""Multi-layer probes: one probe reading several layers at once, for users who do not want to pick a layer.

Input is a stack of activations ``X [n, L, d]`` (the same statements at L layers, in the order of
``layers``). Two ways to combine:

- ``combine="stack"`` (default): one base probe per layer, fitted on inner folds to get out-of-fold
  scores, then a logistic regression on the L per-layer scores learns how much to trust each layer;
  the base probes are refitted on all the data. Layers that carry no signal get weights near zero.
- ``combine="concat"``: one logistic regression on the concatenated ``[n, L*d]`` activations (each
  layer scaled by its own overall standard deviation first, so no layer dominates by norm).

Either way the result is linear in the activations: ``decision_function(X) = sum_l X[:, l] @ coef_[l] + bias_``,
and ``direction_[l]`` is the unit direction read at layer ``layers[l]`` (what per-layer steering uses).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes.base import Probe, data_hash
from probes.errors import ProbeError
from probes.registry import register_loadable
from probes.selection import n_groups, splits
from probes.validation import as_labels

COMBINES = ("stack", "concat")


def as_stack(X: Any, name: str = "X", min_rows: int = 2) -> torch.Tensor:
    """A float32 [n, L, d] tensor from a tensor, array or list of per-layer [n, d] matrices."""
    if isinstance(X, (list, tuple)) and len(X) and (torch.is_tensor(X[0]) or isinstance(X[0], np.ndarray)):
        X = torch.stack([torch.as_tensor(x) for x in X], dim=1)
    t = torch.as_tensor(X).detach().cpu().to(torch.float32)
    if t.ndim != 3:
        raise ProbeError(f"{name} must be [n, layers, d] (the same statements at several layers), got shape {tuple(t.shape)}.")
    if t.shape[0] < min_rows:
        raise ProbeError(f"{name} has {t.shape[0]} rows; need at least {min_rows}.")
    if not torch.isfinite(t).all():
        raise ProbeError(f"{name} contains NaN or infinite values; check the captured activations.")
    return t


def _lr(C: float) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=2000)


@register_loadable
class MultiLayerProbe(Probe):
    """One probe over several layers (``X [n, L, d]``), combined by stacking per-layer scores or by concatenation.

    ``layers``: the layer index of each slice of X (recorded, checked against X's second dimension).
    ``C``: inverse L2 strength of the logistic regressions. ``folds``: inner folds for stacking.
    """

    method = "multi-layer"
    extra_tensors: ClassVar[tuple[str, ...]] = ("layer_weights_",)

    def __init__(self, layers: Sequence[int] = (), combine: str = "stack", C: float = 1.0, folds: int = 5,
                 seed: int = 0) -> None:
        self.layers = tuple(int(x) for x in layers)
        self.combine = combine
        self.C = C
        self.folds = folds
        self.seed = seed

    def _check_layers(self, X: torch.Tensor) -> None:
        if self.layers and len(self.layers) != X.shape[1]:
            raise ProbeError(f"X holds {X.shape[1]} layers but this probe reads {len(self.layers)} ({list(self.layers)}).")

    def _per_layer_fit(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer LR on scalar-standardised activations; returns raw-space weights [L, d] and biases [L]."""
        W, B = np.zeros((Z.shape[1], Z.shape[2])), np.zeros(Z.shape[1])
        for layer in range(Z.shape[1]):
            z = Z[:, layer]
            mu, sd = z.mean(0), float(np.sqrt(((z - z.mean(0)) ** 2).mean())) or 1.0
            model = _lr(self.C).fit((z - mu) / sd, y)
            W[layer] = model.coef_[0] / sd
            B[layer] = float(model.intercept_[0] - (model.coef_[0] * mu / sd).sum())
        return W, B

    def fit(self, X: Any, y: Any, groups: Sequence[Any] | None = None) -> "MultiLayerProbe":
        """Fit on stacked activations X [n, L, d] and 0/1 labels; ``groups`` keeps a topic within one inner fold."""
        if self.combine not in COMBINES:
            raise ProbeError(f"combine must be one of {', '.join(COMBINES)}, not {self.combine!r}.")
        Xt = as_stack(X)
        self._check_layers(Xt)
        labels = as_labels(y, Xt.shape[0])
        Z = Xt.numpy().astype(np.float64)
        n, L, d = Z.shape
        info: dict[str, Any] = {"combine": self.combine, "C": self.C, "layers": list(self.layers)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.combine == "concat":
                mu = Z.mean(0)
                sd = np.sqrt(((Z - mu) ** 2).mean(axis=(0, 2)))
                sd = np.where(sd > 0, sd, 1.0)
                model = _lr(self.C).fit(((Z - mu) / sd[None, :, None]).reshape(n, L * d), labels)
                coef = model.coef_[0].reshape(L, d) / sd[:, None]
                bias = float(model.intercept_[0] - (coef * mu).sum())
                weights = np.linalg.norm(coef, axis=1)
            else:
                oof = self._out_of_fold_scores(Z, labels, groups)
                s_mu, s_sd = oof.mean(0), np.where(oof.std(0) > 0, oof.std(0), 1.0)
                std_w, intercept = self._nonnegative_combiner((oof - s_mu) / s_sd, labels)
                a = std_w / s_sd
                W, B = self._per_layer_fit(Z, labels)
                coef = a[:, None] * W
                bias = float(intercept - (a * s_mu).sum() + (a * B).sum())
                weights = std_w  # per unit of each layer's score spread: comparable across layers
                info["out_of_fold_accuracy_per_layer"] = [float(((oof[:, i] >= 0) == labels).mean()) for i in range(L)]
        scores = np.einsum("nld,ld->n", Z, coef) + bias
        info["train_accuracy"] = float(((scores >= 0).astype(int) == labels).mean())
        info["layer_weights"] = [float(w) for w in weights]  # stack: standardised combiner weights; concat: |coef| per layer
        norms = np.linalg.norm(coef, axis=1, keepdims=True)
        direction = torch.from_numpy(coef / np.where(norms > 0, norms, 1.0))
        self._set_fitted(direction.flatten(), torch.from_numpy(coef), bias, mean=None, std=None,
                         train_hash=data_hash(Xt, labels), n_train=n, info=info)
        self._restack(L, d)
        self.layer_weights_ = torch.from_numpy(np.asarray(weights, dtype=np.float32))
        return self

    def _nonnegative_combiner(self, S: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """Logistic weights on standardised per-layer scores, none negative (Breiman's constraint for stacking).

        A negative weight would trust a layer *against* its own probe: on layers without signal the
        out-of-fold scores of an overfitted probe are anti-correlated with the labels, and an
        unconstrained combiner would then invert the refitted probe. Layers with a negative weight are
        dropped and the rest refitted; if none is left, the best out-of-fold layer is used alone.
        """
        keep = np.arange(S.shape[1])
        while keep.size:
            model = _lr(self.C).fit(S[:, keep], y)
            w = model.coef_[0]
            if (w >= 0).all():
                out = np.zeros(S.shape[1])
                out[keep] = w
                return out, float(model.intercept_[0])
            keep = keep[w > 0]
        best = int(np.argmax([((S[:, i] >= 0) == y).mean() for i in range(S.shape[1])]))
        model = _lr(self.C).fit(S[:, [best]], y)
        out = np.zeros(S.shape[1])
        out[best] = max(float(model.coef_[0, 0]), 1e-6)
        return out, float(model.intercept_[0])

    def _out_of_fold_scores(self, Z: np.ndarray, y: np.ndarray, groups: Sequence[Any] | None) -> np.ndarray:
        oof = np.zeros((Z.shape[0], Z.shape[1]))
        k = min(self.folds, int(np.bincount(y).min()), n_groups(groups) if groups is not None else self.folds)
        if k < 2:
            raise ProbeError("Stacking needs at least 2 inner folds with both classes; use combine='concat' or more data.")
        folds = splits(y, kfold=k, seed=self.seed, groups=groups)
        for train, test in folds:
            if len(np.unique(y[train])) < 2:
                raise ProbeError("An inner fold holds one class only; give more groups or use combine='concat'.")
            W, B = self._per_layer_fit(Z[train], y[train])
            oof[test] = np.einsum("nld,ld->nl", Z[test], W) + B
        return oof

    def _restack(self, L: int, d: int) -> None:
        """Per-layer unit directions [L, d] (``_set_fitted`` stores one flat vector)."""
        flat = self.direction_.reshape(L, d).to(torch.float64)
        norms = flat.norm(dim=1, keepdim=True)
        self.direction_ = (flat / torch.where(norms > 0, norms, torch.ones_like(norms))).to(torch.float32)
        self.n_features_in_ = d

    def _after_load(self) -> None:
        self.n_features_in_ = int(self.coef_.shape[-1])
        self.direction_ = self.direction_.reshape(self.coef_.shape)

    def _input(self, X: Any, name: str = "X") -> torch.Tensor:
        self._check_fitted()
        t = as_stack(X, name, min_rows=1)
        if tuple(t.shape[1:]) != tuple(self.coef_.shape):
            raise ProbeError(f"{name} is [n, {t.shape[1]}, {t.shape[2]}] but this probe reads "
                             f"{self.coef_.shape[0]} layers of width {self.coef_.shape[1]}.")
        return t

    def decision_function(self, X: Any) -> torch.Tensor:
        """Signed score per statement from all layers: > 0 means true. Shape [n]."""
        return torch.einsum("nld,ld->n", self._input(X), self.coef_) + self.bias_

    def project(self, X: Any) -> torch.Tensor:
        """Projection of each statement onto each layer's unit direction, shape [n, L]."""
        return torch.einsum("nld,ld->nl", self._input(X), self.direction_)
