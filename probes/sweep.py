"""Every method on every layer (``sweep``) and every dataset against every other (``generalization``)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from probes.base import _jsonable
from probes.errors import ProbeError
from probes.metrics import evaluate
from probes.registry import METHODS, is_paired, make_probe
from probes.validation import as_labels

Progress = Callable[[int, int, str], None]  # (done, total, what) -> None

COLUMNS = ("method", "layer", "fold", "input", "accuracy", "auroc", "ece", "accuracy_lo", "accuracy_hi",
           "accuracy_single", "auroc_single", "n_train", "n_test")


def _as_stack(a: Any, name: str) -> torch.Tensor:
    t = a.detach() if torch.is_tensor(a) else torch.from_numpy(np.asarray(a))
    if t.ndim != 3:
        raise ProbeError(f"{name} must be [n_examples, n_layers, d_model], but it has shape {tuple(t.shape)}.")
    return t.to(torch.float32)


def splits(y: np.ndarray, test_size: float = 0.25, kfold: int | None = None, seed: int = 0,
           groups: Sequence[Any] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, test) index pairs: one split, or k folds when ``kfold`` is set.

    ``groups`` (one key per example, e.g. the city a statement is about) keeps every group on one
    side of each split. Data built in pairs (a true and a false statement about the same city) needs
    it: split at random, a test statement's near-identical partner sits in the training set with the
    opposite label, and a probe that keys on the subject scores *below* chance.
    """
    idx = np.arange(len(y))
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise ProbeError(f"groups has {len(groups)} entries but there are {len(y)} examples; pass one group key per example.")
        n_groups = len(np.unique(groups))
        k = kfold or max(2, round(1 / test_size))
        if n_groups < k:
            raise ProbeError(f"Only {n_groups} distinct groups; a grouped split into {k} parts needs at least {k}.")
        folds = [(np.sort(tr), np.sort(te)) for tr, te in
                 StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, y, groups)]
        return folds if kfold else folds[:1]
    if kfold:
        if np.bincount(y).min() < kfold:
            raise ProbeError(f"kfold={kfold} needs at least {kfold} examples of each class; use fewer folds.")
        return [(tr, te) for tr, te in StratifiedKFold(kfold, shuffle=True, random_state=seed).split(idx, y)]
    tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return [(np.sort(tr), np.sort(te))]


@dataclass
class SweepResult:
    """Tidy per-(method, layer, fold) test metrics, plus what is needed to plot and pick a layer."""

    rows: list[dict[str, Any]]
    methods: list[str]
    layers: list[int]
    chance: float
    config: dict[str, Any] = field(default_factory=dict)
    title: str | None = None

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per (method, layer, fold): ready for ``pandas.DataFrame(result.to_rows())``."""
        return [dict(r) for r in self.rows]

    def table(self) -> list[dict[str, Any]]:
        """Mean (and spread) over folds per (method, layer)."""
        out = []
        for method in self.methods:
            for layer in self.layers:
                rows = [r for r in self.rows if r["method"] == method and r["layer"] == layer]
                if not rows:
                    continue
                entry: dict[str, Any] = {"method": method, "layer": layer}
                for key in ("accuracy", "auroc", "ece", "accuracy_single", "auroc_single"):
                    vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
                    entry[key] = float(np.mean(vals)) if vals else None
                    if key == "accuracy" and len(vals) > 1:
                        entry["accuracy_std"] = float(np.std(vals))
                out.append(entry)
        return out

    def best_layer(self, method: str, metric: str = "accuracy") -> int:
        """The layer with the highest mean test ``metric`` for ``method`` (earliest on ties)."""
        rows = [r for r in self.table() if r["method"] == method and r.get(metric) is not None]
        if not rows:
            raise ProbeError(f"No {metric} results for method {method!r}; methods in this sweep: {', '.join(self.methods)}.")
        return max(rows, key=lambda r: (r[metric], -r["layer"]))["layer"]

    def best(self, metric: str = "accuracy") -> tuple[str, int, float]:
        """(method, layer, value) with the highest mean test ``metric`` overall."""
        rows = [r for r in self.table() if r.get(metric) is not None]
        top = max(rows, key=lambda r: (r[metric], -r["layer"]))
        return top["method"], top["layer"], top[metric]

    def summary(self) -> str:
        """Best layer and accuracy per method, one line each."""
        lines = [f"sweep: {len(self.methods)} methods x {len(self.layers)} layers, chance {self.chance:.3f}"]
        for m in self.methods:
            layer = self.best_layer(m)
            acc = next(r["accuracy"] for r in self.table() if r["method"] == m and r["layer"] == layer)
            lines.append(f"  {m:<14} best layer {layer:>3}  accuracy {acc:.3f}")
        return "\n".join(lines)

    def plot(self, path: str | Path, metric: str = "accuracy") -> Path:
        """Accuracy (or another metric) against layer per method, with the chance line."""
        from probes.plots import plot_sweep

        return plot_sweep(self, path, metric)

    def to_dict(self) -> dict[str, Any]:
        """Everything ``save`` writes to sweep.json, as plain JSON values."""
        doc = {"config": self.config, "methods": self.methods, "layers": self.layers, "chance": self.chance,
               "title": self.title, "best_layer": {m: self.best_layer(m) for m in self.methods},
               "table": self.table(), "rows": self.rows}
        return _jsonable(doc)

    def save(self, directory: str | Path, plot: bool = True) -> dict[str, Path]:
        """Write sweep.json (config, rows, best layers), sweep.csv (rows) and sweep.png; return the paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = {"json": d / "sweep.json", "csv": d / "sweep.csv"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        with paths["csv"].open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        if plot:
            paths["png"] = self.plot(d / "sweep.png")
        return paths

    @classmethod
    def load(cls, path: str | Path) -> "SweepResult":
        """Read a sweep.json written by ``save`` (a directory or the file itself)."""
        p = Path(path)
        p = p / "sweep.json" if p.is_dir() else p
        doc = json.loads(p.read_text())
        rows = [{k: (float("nan") if v is None and k in ("accuracy", "auroc", "ece") else v) for k, v in r.items()} for r in doc["rows"]]
        return cls(rows, doc["methods"], doc["layers"], doc["chance"], doc.get("config", {}), doc.get("title"))


def sweep(acts: Any, y: Any, layers: Sequence[int] | None = None, methods: Sequence[str] | None = None,
          pairs: tuple[Any, Any] | None = None, test_size: float = 0.25, kfold: int | None = None, seed: int = 0,
          params: dict[str, dict[str, Any]] | None = None, n_boot: int = 0,
          progress: Progress | None = None, title: str | None = None, groups: Sequence[Any] | None = None) -> SweepResult:
    """Fit and test every method on every layer.

    ``acts`` [n, L, d]: one activation per statement (``None`` if only contrast methods run);
    ``y`` [n]: 1 = true; ``layers``: the model layer number of each of the L slices (default 0..L-1);
    ``pairs`` = (acts_pos, acts_neg), each [n, L, d], aligned with ``acts``: the statements completed
    with "True" / "False", needed by contrast methods (lat, lat-random, ccs), which are evaluated on
    pairs and also, as ``accuracy_single``/``auroc_single``, on ``acts`` alone.
    Train/test split (stratified, seeded) or ``kfold`` folds, grouped when ``groups`` is given (see
    ``splits``); identical indices for every method.
    """
    A = None if acts is None else _as_stack(acts, "acts")
    P = None if pairs is None else (_as_stack(pairs[0], "pairs[0]"), _as_stack(pairs[1], "pairs[1]"))
    if A is None and P is None:
        raise ProbeError("Pass activations (acts) and/or contrast pairs (pairs=(acts_pos, acts_neg)) to sweep.")
    ref = A if A is not None else P[0]
    n, L, d = ref.shape
    labels = as_labels(y, n)
    if P is not None and (P[0].shape != ref.shape or P[1].shape != ref.shape):
        raise ProbeError(f"pairs must both have the shape of acts {tuple(ref.shape)}, not {tuple(P[0].shape)} and {tuple(P[1].shape)}.")
    layer_ids = list(range(L)) if layers is None else [int(x) for x in layers]
    if len(layer_ids) != L:
        raise ProbeError(f"layers names {len(layer_ids)} layers but the activations hold {L}; pass one layer number per slice.")
    if methods is None:
        methods = [m for m in METHODS if (is_paired(m) and P is not None) or (not is_paired(m) and A is not None)]
    methods = list(methods)
    for m in methods:
        if is_paired(m) and P is None:
            raise ProbeError(f"Method {m!r} needs contrast pairs; pass pairs=(acts_pos, acts_neg) or drop it.")
        if not is_paired(m) and A is None:
            raise ProbeError(f"Method {m!r} needs one activation per statement; pass acts or drop it.")
    params = params or {}
    folds = splits(labels, test_size, kfold, seed, groups)
    total, done = len(methods) * L * len(folds), 0
    rows: list[dict[str, Any]] = []
    for li, layer in enumerate(layer_ids):
        for fi, (tr, te) in enumerate(folds):
            for m in methods:
                probe = make_probe(m, seed=seed, **params.get(m, {}))
                row: dict[str, Any] = {"method": m, "layer": layer, "fold": fi, "n_train": len(tr), "n_test": len(te)}
                if probe.paired:
                    pos, neg = P[0][:, li], P[1][:, li]
                    probe.fit(pos[tr], neg[tr], labels[tr])
                    p = probe.predict_proba_pairs(pos[te], neg[te])
                    row["input"] = "pairs"
                    if A is not None:
                        single = evaluate(labels[te], probe.predict_proba(A[te, li]))
                        row["accuracy_single"], row["auroc_single"] = single["accuracy"], single["auroc"]
                else:
                    probe.fit(A[tr, li], labels[tr])
                    p = probe.predict_proba(A[te, li])
                    row["input"] = "single"
                metrics = evaluate(labels[te], p, n_boot=n_boot, seed=seed)
                row.update({k: metrics[k] for k in ("accuracy", "auroc", "ece")})
                if n_boot:
                    row["accuracy_lo"], row["accuracy_hi"] = metrics["accuracy_lo"], metrics["accuracy_hi"]
                rows.append(row)
                done += 1
                if progress is not None:
                    progress(done, total, f"{m} layer {layer}")
    chance = float(max(labels.mean(), 1 - labels.mean()))
    config = {"n": n, "d_model": d, "seed": seed, "test_size": None if kfold else test_size, "kfold": kfold,
              "grouped": groups is not None, "params": params, "n_boot": n_boot}
    return SweepResult(rows, methods, layer_ids, chance, _jsonable(config), title)


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
    return GeneralizationResult(names, method, acc, auc, {"test_size": test_size, "seed": seed, "params": params or {}})
