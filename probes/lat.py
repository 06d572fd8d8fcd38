"""LAT / PCA (representation engineering): the first principal component of activation differences.

``LATProbe`` works on contrast pairs: it takes the difference of each pair (optionally after
centring each side of the pairs separately, which removes the constant "True"/"False" token
offset) and, with ``pairing="random"``, flips the order of each pair at random as RepE does, so a
truth signal that always sits on the same side still shows up as variance. ``PCAProbe`` is the
plain first principal component of unpaired activations: it finds whatever varies most, which is
usually not truth. That contrast is the reason pairing matters.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from probes.base import ContrastProbe, Probe, data_hash
from probes.calibration import platt, unit_scale
from probes.errors import ProbeError
from probes.registry import register, register_preset
from probes.validation import as_labels, as_matrix


def top_components(M: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First k principal directions of the (already centred) rows of M and their explained-variance ratios."""
    _, s, vt = np.linalg.svd(M, full_matrices=False)
    var = s**2
    total = float(var.sum()) or 1.0
    k = min(k, vt.shape[0])
    return vt[:k], var[:k] / total


def _deterministic_sign(v: np.ndarray) -> np.ndarray:
    """Without labels: make the largest-magnitude coordinate positive (scikit-learn's svd_flip convention)."""
    return v if v[np.argmax(np.abs(v))] >= 0 else -v


@register
class LATProbe(ContrastProbe):
    """First principal component of paired differences; sign from labels, else from the pairs' ordering."""

    method = "lat"
    extra_tensors: ClassVar[tuple[str, ...]] = ("pair_coef_", "pair_bias_", "components_")

    def __init__(self, pairing: str = "pairs", center_sides: bool = True, n_components: int = 5, seed: int = 0) -> None:
        self.pairing = pairing
        self.center_sides = center_sides
        self.n_components = n_components
        self.seed = seed

    def fit(self, X_pos: Any, X_neg: Any, y: Any = None) -> "LATProbe":
        """Fit on contrast pairs (row i of X_pos and X_neg is one pair); y (optional) = truth of each pair's statement."""
        if self.pairing not in ("pairs", "random"):
            raise ProbeError(f"pairing must be 'pairs' or 'random', not {self.pairing!r}.")
        xp_t, xn_t, labels = self._pairs(X_pos, X_neg, y)
        xp, xn = xp_t.numpy().astype(np.float64), xn_t.numpy().astype(np.float64)
        mu_p = xp.mean(0) if self.center_sides else np.zeros(xp.shape[1])
        mu_n = xn.mean(0) if self.center_sides else np.zeros(xn.shape[1])
        diffs = (xp - mu_p) - (xn - mu_n)
        used = diffs
        if self.pairing == "random":
            flips = np.random.default_rng(self.seed).choice([-1.0, 1.0], size=len(diffs))
            used = diffs * flips[:, None]
        comps, evr = top_components(used - used.mean(0), self.n_components)
        v = comps[0]
        pair_scores = diffs @ v
        if labels is not None:
            sign_source = "labels"
            if float(pair_scores @ (2 * labels - 1)) < 0:
                v = -v
        else:
            sign_source = "pair ordering (X_pos is the true side on average)"
            if float(((xp - xn) @ v).mean()) < 0:
                v = -v
        pair_scores = diffs @ v
        # pairs: decision = a * ((x+ - mu+) - (x- - mu-)) . v + c
        if labels is not None:
            pa, pc = platt(pair_scores, labels)
        else:
            pa, pc = 1.0 / (float(pair_scores.std()) or 1.0), 0.0
        self.pair_coef_ = torch.from_numpy(pa * v).to(torch.float32)
        self.pair_bias_ = torch.tensor([pc - pa * float((mu_p - mu_n) @ v)], dtype=torch.float64)
        # single activations: each side is a claim; x+ is true when the statement is, x- when it is not
        both = np.vstack([xp, xn])
        centre = both.mean(0)
        proj = (both - centre) @ v
        if labels is not None:
            a, c = platt(proj, np.concatenate([labels, 1 - labels]))
        else:
            a, c = unit_scale(proj)
        self.components_ = torch.from_numpy(comps).to(torch.float32)
        info = {"explained_variance_ratio": evr.tolist(), "sign_from": sign_source, "pairing": self.pairing}
        if labels is not None:
            info["train_pair_accuracy"] = float(((pa * pair_scores + pc >= 0).astype(int) == labels).mean())
        self._set_fitted(torch.from_numpy(v), torch.from_numpy(a * v), c - a * float(centre @ v),
                         mean=torch.from_numpy(centre), std=None, train_hash=data_hash(xp_t, xn_t, labels),
                         n_train=len(xp), info=info)
        return self

    def decision_function_pairs(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """Signed score per pair from the projection of its difference (> 0: statement true)."""
        xp, xn = self._pair_input(X_pos, X_neg)
        return (xp - xn) @ self.pair_coef_ + float(self.pair_bias_[0])


# RepE's recipe: raw differences in random order (side-centring first would make the flips a no-op,
# i.e. this would be `lat` again)
register_preset("lat-random", LATProbe, pairing="random", center_sides=False)


@register
class PCAProbe(Probe):
    """First principal component of unpaired activations (the naive unsupervised baseline)."""

    method = "pca"
    extra_tensors: ClassVar[tuple[str, ...]] = ("components_",)

    def __init__(self, n_components: int = 5, seed: int = 0) -> None:
        self.n_components = n_components
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> "PCAProbe":
        """Fit on activations X [n, d]; labels (optional) only choose the sign and calibrate P(true)."""
        Xt = as_matrix(X)
        labels = None if y is None else as_labels(y, Xt.shape[0])
        Z = Xt.numpy().astype(np.float64)
        centre = Z.mean(0)
        comps, evr = top_components(Z - centre, self.n_components)
        v = comps[0]
        if labels is not None:
            if float(((Z - centre) @ v) @ (2 * labels - 1)) < 0:
                v = -v
            sign_source = "labels"
        else:
            v = _deterministic_sign(v)
            sign_source = "none (largest coordinate made positive)"
        proj = (Z - centre) @ v
        a, c = platt(proj, labels) if labels is not None else unit_scale(proj)
        self.components_ = torch.from_numpy(comps).to(torch.float32)
        self._set_fitted(torch.from_numpy(v), torch.from_numpy(a * v), c - a * float(centre @ v),
                         mean=torch.from_numpy(centre), std=None, train_hash=data_hash(Xt, labels), n_train=len(Z),
                         info={"explained_variance_ratio": evr.tolist(), "sign_from": sign_source})
        return self
