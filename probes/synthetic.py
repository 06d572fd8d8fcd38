"""Synthetic activations with a planted truth direction, for tests, benchmarks and demonstrations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Planted:
    """Activations with known geometry: ``truth`` and ``distractor`` are orthogonal unit vectors [d]."""

    X: torch.Tensor  # [n, d] unpaired activations, or the "True" side of pairs
    y: np.ndarray  # [n] 0/1 truth of each statement
    truth: torch.Tensor
    distractor: torch.Tensor
    X_neg: torch.Tensor | None = None  # the "False" side of pairs (None when unpaired)
    side_offset: torch.Tensor | None = None  # what separates the two sides regardless of truth


def _directions(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.standard_normal((d, 3)))
    return q[:, 0], q[:, 1], q[:, 2]


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation((np.arange(n) % 2).astype(np.int64))


def _geometry_and_labels(n: int, d: int, seed: int, sample_seed: int | None, labels: np.ndarray | None):
    """Directions and centre fixed by `seed`; the sampling generator (reseeded by `sample_seed`) and labels."""
    rng = np.random.default_rng(seed)
    directions = _directions(d, rng)
    centre = rng.standard_normal(d)
    if sample_seed is not None:
        rng = np.random.default_rng([seed, sample_seed])
    y = _labels(n, rng) if labels is None else np.asarray(labels, dtype=np.int64)
    return directions, centre, rng, y


def planted_clouds(n: int = 4000, d: int = 256, signal: float = 2.0, distractor_std: float = 5.0,
                   noise: float = 1.0, seed: int = 0, sample_seed: int | None = None,
                   labels: np.ndarray | None = None) -> Planted:
    """Two Gaussian clouds at +/- signal along ``truth``, plus a label-free distractor with larger variance.

    ``seed`` fixes the geometry (directions, centre); ``sample_seed`` (default: seed) the examples, so a
    held-out set from the same clouds is ``planted_clouds(..., seed=s, sample_seed=other)``; ``labels``
    (0/1, length n) replaces the balanced random labels.
    """
    (t, u, _), centre, rng, y = _geometry_and_labels(n, d, seed, sample_seed, labels)
    X = (centre + noise * rng.standard_normal((n, d)) + np.outer((2 * y - 1) * signal, t)
         + np.outer(distractor_std * rng.standard_normal(n), u))
    f = lambda a: torch.from_numpy(a).to(torch.float32)  # noqa: E731
    return Planted(f(X), y, f(t), f(u))


def planted_pairs(n: int = 1000, d: int = 256, signal: float = 2.0, distractor_std: float = 5.0, noise: float = 1.0,
                  side_noise: float = 1.0, side_offset: float = 10.0, seed: int = 0,
                  sample_seed: int | None = None, labels: np.ndarray | None = None) -> Planted:
    """Contrast pairs: statement i completed with "True" (X) and "False" (X_neg).

    Both sides share the statement's own activation (with a large distractor component); the truth
    direction points one way on the side whose claim is true; a constant ``side_offset`` along a
    third direction marks the "True" side whatever the truth is (the token identity). ``noise`` is
    the statement's own isotropic noise (shared by both sides), ``side_noise`` each side's own.
    ``seed`` fixes the geometry, ``sample_seed`` (default: seed) the examples, ``labels`` the truth values.
    """
    (t, u, o), centre, rng, y = _geometry_and_labels(n, d, seed, sample_seed, labels)
    sign = (2 * y - 1) * signal
    base = centre + noise * rng.standard_normal((n, d)) + np.outer(distractor_std * rng.standard_normal(n), u)
    X_pos = base + np.outer(sign, t) + side_offset * o + side_noise * rng.standard_normal((n, d))
    X_neg = base - np.outer(sign, t) - side_offset * o + side_noise * rng.standard_normal((n, d))
    f = lambda a: torch.from_numpy(a).to(torch.float32)  # noqa: E731
    return Planted(f(X_pos), y, f(t), f(u), X_neg=f(X_neg), side_offset=f(o))
