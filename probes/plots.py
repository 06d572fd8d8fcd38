"""Figures for probes: accuracy against layer, cross-dataset generalisation, and the projection scatter.

Figures are drawn on matplotlib's Agg canvas directly, so importing this never changes the user's
backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probes.errors import ProbeError
from probes.validation import as_labels, as_matrix

_PNG_META = {"Software": None}  # keep files byte-stable across matplotlib builds


class SweepLike(Protocol):
    """What ``plot_sweep`` reads from a sweep result (``probes.sweep.SweepResult`` is one)."""

    methods: Sequence[str]
    layers: Sequence[int]
    chance: float
    title: str | None
    config: dict[str, Any]

    def table(self) -> list[dict[str, Any]]: ...

    def best_layer(self, method: str) -> int: ...


class GeneralizationLike(Protocol):
    """What ``plot_generalization`` reads (``probes.sweep.GeneralizationResult`` is one)."""

    method: str
    names: Sequence[str]
    accuracy: Any
    auroc: Any


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight", metadata=_PNG_META if path.suffix == ".png" else None)
    return path


BASELINES = ("random", "lat-random")


def plot_sweep(result: SweepLike, path: str | Path, metric: str = "accuracy") -> Path:
    """Mean test ``metric`` against layer per method (error bars over folds), the validation-chosen layer
    starred, random baselines layer by layer as grey lines, chance, and n in the title."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    table = result.table()
    for method in result.methods:
        rows = [r for r in table if r["method"] == method and r.get(metric) is not None]
        if not rows:
            continue
        xs = [r["layer"] for r in rows]
        ys = [r[metric] for r in rows]
        err = [r.get(f"{metric}_std", 0.0) or 0.0 for r in rows]
        if method in BASELINES:  # a per-layer baseline, never its best layer
            ax.plot(xs, ys, color="grey" if method == "random" else "silver", ls=":", marker=".", lw=1.2,
                    label=f"{method} (baseline, per layer)")
            continue
        line = ax.errorbar(xs, ys, yerr=err if any(err) else None, marker="o", ms=3.5, capsize=2, label=method)
        try:
            chosen = result.best_layer(method)
        except (ProbeError, KeyError, ValueError):  # no usable choice: draw the line alone
            continue
        y_at = next(r[metric] for r in rows if r["layer"] == chosen)
        ax.plot([chosen], [y_at], marker="*", ms=12, color=line[0].get_color(), mec="black", mew=0.6, ls="none")
    chance = result.chance if metric == "accuracy" else 0.5
    ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.2f})")
    ax.plot([], [], marker="*", ms=10, color="white", mec="black", ls="none", label="layer chosen on validation")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"test {metric}")
    n = (getattr(result, "config", None) or {}).get("n")
    n_test = max((r.get("n_test") or 0 for r in table), default=0)
    ax.set_title((result.title or f"probe {metric} by layer") + (f"  (n = {n}, {n_test} tested)" if n else f"  (n tested = {n_test})"),
                 fontsize=10)
    ax.set_xticks(result.layers)
    if len(result.layers) > 16:
        ax.tick_params(axis="x", labelsize=7)
    if len(result.methods) > 4:  # many lines: a legend inside the axes would cover some of them
        fig.set_size_inches(8.4, 4.2)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_generalization(result: GeneralizationLike, path: str | Path, metric: str = "accuracy") -> Path:
    """Heatmap: rows = training dataset, columns = test dataset, cells = test ``metric``."""
    M = np.asarray(result.accuracy if metric == "accuracy" else result.auroc, dtype=float)
    k = len(result.names)
    fig = Figure(figsize=(1.2 * k + 2.5, 1.0 * k + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(M, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(k), result.names, rotation=45, ha="right")
    ax.set_yticks(range(k), result.names)
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", color="white" if M[i, j] < 0.6 else "black", fontsize=8)
    sizes = (getattr(result, "config", None) or {}).get("n", {})
    n_text = ", ".join(f"{k} {v}" for k, v in sizes.items()) if isinstance(sizes, dict) else str(sizes)
    ax.set_title(f"{result.method}: {metric} across datasets" + (f"\n(n = {n_text})" if n_text else ""), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def projection_coordinates(X: Any, direction: Any) -> tuple[np.ndarray, np.ndarray]:
    """(projection on the unit direction, projection on the top principal component of what remains)."""
    Z = as_matrix(X).numpy().astype(np.float64)
    v = (direction.detach().cpu().numpy() if torch.is_tensor(direction) else np.asarray(direction)).astype(np.float64)
    v = v / np.linalg.norm(v)
    Zc = Z - Z.mean(0)
    along = Zc @ v
    rest = Zc - np.outer(along, v)
    pc = np.linalg.svd(rest, full_matrices=False)[2][0]
    return along, rest @ pc


def plot_projection(X: Any, y: Any, direction: Any, path: str | Path, title: str | None = None) -> Path:
    """Scatter of activations on (probe direction, top remaining principal component), coloured by label."""
    along, across = projection_coordinates(X, direction)
    labels = as_labels(y, len(along), both_classes=False)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for value, colour, name in ((0, "tab:red", "false"), (1, "tab:blue", "true")):
        mask = labels == value
        ax.scatter(along[mask], across[mask], s=8, alpha=0.6, c=colour, label=name, linewidths=0)
    ax.set_xlabel("projection on probe direction")
    ax.set_ylabel("top principal component (orthogonal to it)")
    ax.set_title(f"{title or 'activations on the probe direction'} (n = {len(along)})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
