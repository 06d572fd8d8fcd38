"""Every dataset against every other: fit a method on one set's training split, test it on each set's test split."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probes.base import _jsonable
from probes.errors import ProbeError
from probes.metrics import evaluate
from probes.registry import is_paired, make_probe
from probes.selection import splits
from probes.validation import as_labels


@dataclass
class GeneralizationResult:
    """Train on dataset i (its train split), test on dataset j (its test split): ``accuracy[i][j]``."""

    names: list[str]
    method: str
    accuracy: list[list[float]]
    auroc: list[list[float]]
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The accuracy matrix as text."""
        w = max(len(n) for n in self.names) + 2
        head = " " * w + "".join(f"{n[:10]:>11}" for n in self.names)
        body = [f"{a:<{w}}" + "".join(f"{v:>11.3f}" for v in row) for a, row in zip(self.names, self.accuracy)]
        return "\n".join([f"{self.method}: rows = trained on, columns = tested on (accuracy)", head, *body])

    def plot(self, path: str | Path, metric: str = "accuracy") -> Path:
        """Heatmap of the matrix."""
        from probes.plots import plot_generalization

        return plot_generalization(self, path, metric)

    def save(self, directory: str | Path, plot: bool = True) -> dict[str, Path]:
        """Write generalization.json (and generalization.png)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = {"json": d / "generalization.json"}
        paths["json"].write_text(json.dumps(_jsonable(self.__dict__), indent=1) + "\n")
        if plot:
            paths["png"] = self.plot(d / "generalization.png")
        return paths


def generalization(datasets: dict[str, tuple], method: str, test_size: float = 0.5, seed: int = 0,
                   params: dict[str, Any] | None = None) -> GeneralizationResult:
    """For each dataset A and B: fit ``method`` on A's train split, evaluate on B's test split.

    Each value is ``(X, y)`` for single-activation methods or ``(X_pos, X_neg, y)`` for contrast methods.
    """
    if len(datasets) < 1:
        raise ProbeError("Pass at least one dataset to generalization().")
    paired = is_paired(method)
    prepared = {}
    for name, value in datasets.items():
        if len(value) != (3 if paired else 2):
            raise ProbeError(f"Dataset {name!r} must be {'(X_pos, X_neg, y)' if paired else '(X, y)'} for method {method!r}.")
        arrays = [v if torch.is_tensor(v) else torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in value[:-1]]
        labels = as_labels(value[-1], arrays[0].shape[0])
        tr, te = splits(labels, test_size, None, seed)[0]
        prepared[name] = (arrays, labels, tr, te)
    names = list(prepared)
    acc = [[float("nan")] * len(names) for _ in names]
    auc = [[float("nan")] * len(names) for _ in names]
    for i, a in enumerate(names):
        arrays, labels, tr, _ = prepared[a]
        probe = make_probe(method, seed=seed, **(params or {}))
        probe.fit(*[x[tr] for x in arrays], labels[tr])
        for j, b in enumerate(names):
            arrays_b, labels_b, _, te = prepared[b]
            test = [x[te] for x in arrays_b]
            p = probe.predict_proba_pairs(*test) if paired else probe.predict_proba(test[0])
            m = evaluate(labels_b[te], p)
            acc[i][j], auc[i][j] = m["accuracy"], m["auroc"]
    sizes = {name: int(len(prepared[name][1])) for name in names}
    return GeneralizationResult(names, method, acc, auc, {"test_size": test_size, "seed": seed, "params": params or {}, "n": sizes})
