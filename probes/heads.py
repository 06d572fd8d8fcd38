"""Per-attention-head linear probes (ITI, Li et al. 2023): one logistic regression per (layer, head) on the head's
output before the output projection, ranked by held-out accuracy; and the mass-mean direction a head is shifted along.

Pure numpy / scikit-learn on arrays shaped [n, n_layers, n_heads, d_head]; no model code here.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression

from probes.errors import ProbeError


def _arrays(acts: Any, labels: Any) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(acts.detach().cpu().float() if hasattr(acts, "detach") else acts, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).astype(int).ravel()
    if x.ndim != 4:
        raise ProbeError(f"Head activations must be [n, n_layers, n_heads, d_head]; got shape {tuple(x.shape)}.")
    if x.shape[0] != len(y):
        raise ProbeError(f"{x.shape[0]} activations but {len(y)} labels.")
    if set(np.unique(y)) - {0, 1}:
        raise ProbeError("Labels must be 0 (false) or 1 (true).")
    return x, y


def head_accuracies(acts: Any, labels: Any, train: Any, val: Any, C: float = 1.0, seed: int = 0) -> np.ndarray:
    """Validation accuracy [n_layers, n_heads] of a logistic-regression probe fitted per head on the `train` rows."""
    x, y = _arrays(acts, labels)
    train, val = np.asarray(train), np.asarray(val)
    if len(np.unique(y[train])) < 2:
        raise ProbeError("The probe-training rows hold only one class; give true and false answers.")
    if len(val) == 0:
        raise ProbeError("No validation rows to rank heads on.")
    n_layers, n_heads = x.shape[1], x.shape[2]
    out = np.zeros((n_layers, n_heads))
    for layer in range(n_layers):
        for head in range(n_heads):
            xi = x[:, layer, head]
            mu, sd = xi[train].mean(0), xi[train].std(0) + 1e-8  # standardise on the training rows only
            clf = LogisticRegression(C=C, max_iter=1000, random_state=seed)
            clf.fit((xi[train] - mu) / sd, y[train])
            out[layer, head] = float((clf.predict((xi[val] - mu) / sd) == y[val]).mean())
    return out


def top_heads(accuracies: np.ndarray, k: int) -> List[Tuple[int, int]]:
    """The k (layer, head) pairs with the highest accuracy, best first (ties broken by position, stable)."""
    acc = np.asarray(accuracies)
    if not 1 <= k <= acc.size:
        raise ProbeError(f"Cannot pick {k} heads out of {acc.size}; choose 1..{acc.size}.")
    order = np.argsort(-acc.ravel(), kind="stable")[:k]
    return [(int(i // acc.shape[1]), int(i % acc.shape[1])) for i in order]


def mass_mean_directions(acts: Any, labels: Any, heads: List[Tuple[int, int]]) -> Tuple[np.ndarray, np.ndarray]:
    """Per chosen head: the unit mass-mean direction (mean true - mean false) and the std of all rows projected on it."""
    x, y = _arrays(acts, labels)
    dirs, stds = [], []
    for layer, head in heads:
        xi = x[:, layer, head]
        d = xi[y == 1].mean(0) - xi[y == 0].mean(0)
        norm = np.linalg.norm(d)
        if norm == 0:
            raise ProbeError(f"Head ({layer}, {head}) has the same mean on true and false rows; no direction.")
        d = d / norm
        dirs.append(d)
        stds.append(float((xi @ d).std()))
    return np.stack(dirs), np.asarray(stds)
