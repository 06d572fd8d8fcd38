"""Every method on every layer (``sweep``); every dataset against every other is probes.generalization."""

from __future__ import annotations

import csv
import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from probes.base import _jsonable
from probes.errors import ProbeError
from probes.metrics import accuracy, auroc, bootstrap_ci, evaluate
from probes.registry import METHODS, is_paired, make_probe
from probes.selection import inner_split, select_layer, splits
from probes.validation import as_labels

Progress = Callable[[int, int, str], None]  # (done, total, what) -> None

COLUMNS = ("method", "layer", "fold", "input", "accuracy", "auroc", "ece", "accuracy_lo", "accuracy_hi",
           "accuracy_single", "auroc_single", "n_train", "n_test", "val_accuracy", "n_val")
BASELINES = ("random", "lat-random")
MULTI_LAYER = "multi-layer"  # fits every captured layer at once (probes.multilayer); not a per-layer method
ALL_LAYERS = -1  # the "layer" of a headline that reads every layer  # methods that measure what a direction without truth scores, layer by layer


def _as_stack(a: Any, name: str) -> torch.Tensor:
    t = a.detach() if torch.is_tensor(a) else torch.from_numpy(np.asarray(a))
    if t.ndim != 3:
        raise ProbeError(f"{name} must be [n_examples, n_layers, d_model], but it has shape {tuple(t.shape)}.")
    return t.to(torch.float32)


def _choose(val: dict[int, float]) -> int:
    return select_layer(val).layer


@dataclass
class SweepResult:
    """Tidy per-(method, layer, fold) test metrics, plus what is needed to plot and pick a layer."""

    rows: list[dict[str, Any]]
    methods: list[str]
    layers: list[int]
    chance: float
    config: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    selection: dict[str, dict[str, Any]] = field(default_factory=dict)

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
                entry["n_test"] = int(sum(r.get("n_test", 0) for r in rows))
                for key in ("val_accuracy", "accuracy", "auroc", "ece", "accuracy_single", "auroc_single"):
                    vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
                    entry[key] = float(np.mean(vals)) if vals else None
                    if key == "accuracy" and len(vals) > 1:
                        entry["accuracy_std"] = float(np.std(vals))
                out.append(entry)
        return out

    @property
    def chosen_on(self) -> str:
        """Which data picked the headline layers: 'validation' (split off the training data) or 'test'."""
        if self.selection or any(r.get("val_accuracy") is not None for r in self.rows):
            return "validation"
        return "test"

    def best_layer(self, method: str, metric: str = "accuracy") -> int:
        """The layer chosen for ``method`` on validation data (test data only for results that hold none)."""
        if method in self.selection and metric == "accuracy":
            return int(self.selection[method]["layer"])
        key = f"val_{metric}" if self.chosen_on == "validation" else metric
        rows = {r["layer"]: r[key] for r in self.table() if r["method"] == method and r.get(key) is not None}
        if not rows:
            raise ProbeError(f"No {metric} results for method {method!r}; methods in this sweep: {', '.join(self.methods)}.")
        return _choose(rows)

    def test_best_layer(self, method: str, metric: str = "accuracy") -> int:
        """The layer with the highest mean *test* ``metric``: a picture of the table, never a layer to report."""
        rows = {r["layer"]: r[metric] for r in self.table() if r["method"] == method and r.get(metric) is not None}
        return _choose(rows)

    def headline(self, method: str) -> dict[str, Any]:
        """The validation-chosen layer of ``method`` and its test accuracy (with its 95% interval when known)."""
        if method in self.selection:
            return dict(self.selection[method])
        layer = self.best_layer(method)
        row = next(r for r in self.table() if r["method"] == method and r["layer"] == layer)
        return {"layer": layer, "accuracy": row["accuracy"], "auroc": row["auroc"], "val_accuracy": row.get("val_accuracy"),
                "accuracy_lo": None, "accuracy_hi": None, "n_test": row.get("n_test"), "chosen_on": self.chosen_on}

    def best(self, metric: str = "accuracy") -> tuple[str, int, float]:
        """(method, layer, test accuracy) of the method with the best validation accuracy (baselines excluded)."""
        cands = [m for m in self.methods if m not in BASELINES] or list(self.methods)
        heads = {m: self.headline(m) for m in cands}
        key = "val_accuracy" if self.chosen_on == "validation" else "accuracy"
        top = max(cands, key=lambda m: (heads[m].get(key) or 0.0, -cands.index(m)))
        return top, int(heads[top]["layer"]), float(heads[top]["accuracy"])

    def summary(self) -> str:
        """Per method: the layer chosen on validation data, its test accuracy and 95% interval, one line each."""
        lines = [f"sweep: {len(self.methods)} methods x {len(self.layers)} layers, chance {self.chance:.3f}, "
                 f"layers chosen on {self.chosen_on} data"]
        for m in self.methods:
            h = self.headline(m)
            ci = f" [{h['accuracy_lo']:.3f}, {h['accuracy_hi']:.3f}]" if h.get("accuracy_lo") is not None else ""
            val = f" (val {h['val_accuracy']:.3f})" if h.get("val_accuracy") is not None else ""
            where = "all layers" if h["layer"] == ALL_LAYERS else f"best layer {h['layer']:>3}"
            lines.append(f"  {m:<14} {where}{val}  test accuracy {h['accuracy']:.3f}{ci}  n={h.get('n_test')}")
        return "\n".join(lines)

    def plot(self, path: str | Path, metric: str = "accuracy") -> Path:
        """Accuracy (or another metric) against layer per method, with the chance line."""
        from probes.plots import plot_sweep

        return plot_sweep(self, path, metric)

    def to_dict(self) -> dict[str, Any]:
        """Everything ``save`` writes to sweep.json, as plain JSON values."""
        doc = {"config": self.config, "methods": self.methods, "layers": self.layers, "chance": self.chance,
               "title": self.title, "best_layer": {m: self.best_layer(m) for m in self.methods},
               "chosen_on": self.chosen_on, "selection": {m: self.headline(m) for m in self.methods},
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
        sel = doc.get("selection", {}) if doc.get("chosen_on") == "validation" else {}
        return cls(rows, doc["methods"], doc["layers"], doc["chance"], doc.get("config", {}), doc.get("title"), sel)


def sweep(acts: Any, y: Any, layers: Sequence[int] | None = None, methods: Sequence[str] | None = None,
          pairs: tuple[Any, Any] | None = None, test_size: float = 0.25, kfold: int | None = None, seed: int = 0,
          params: dict[str, dict[str, Any]] | None = None, n_boot: int = 200,
          progress: Progress | None = None, title: str | None = None, groups: Sequence[Any] | None = None,
          val_size: float = 0.25, layer_intervals: bool = False, batch_layers: bool = True,
          side: dict[str, Any] | None = None) -> SweepResult:
    """Fit and test every method on every layer.

    ``acts`` [n, L, d]: one activation per statement (``None`` if only contrast methods run);
    ``y`` [n]: 1 = true; ``layers``: the model layer number of each of the L slices (default 0..L-1);
    ``pairs`` = (acts_pos, acts_neg), each [n, L, d], aligned with ``acts``: the statements completed
    with "True" / "False", needed by contrast methods (lat, lat-random, ccs), which are evaluated on
    pairs and also, as ``accuracy_single``/``auroc_single``, on ``acts`` alone.
    Train/test split (stratified, seeded) or ``kfold`` folds, grouped when ``groups`` is given (see
    ``splits``); identical indices for every method. Each training part is split again (``val_size``,
    grouped alike): probes fit on the rest, the validation part picks each method's layer, and the
    headline is the test accuracy at that layer with a ``n_boot``-resample 95% interval. The test folds
    never choose anything. ``layer_intervals`` adds an interval to every (method, layer, fold) row;
    ``batch_layers=False`` fits layer by layer (the reference the batched programs are tested against).
    ``side``: per-example extras for probes that take them (TTPD: ``polarity``, and ``groups`` = topic).
    Method ``multi-layer`` reads every layer at once: one headline row (layer -1 = all layers), no per-layer rows.
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
        methods = [m for m in methods if m != "ttpd" or "polarity" in (side or {})]
    methods = list(methods)
    for m in methods:
        if m == MULTI_LAYER:
            if A is None:
                raise ProbeError("Method 'multi-layer' reads one activation per statement at every layer; pass acts.")
            continue
        if is_paired(m) and P is None:
            raise ProbeError(f"Method {m!r} needs contrast pairs; pass pairs=(acts_pos, acts_neg) or drop it.")
        if not is_paired(m) and A is None:
            raise ProbeError(f"Method {m!r} needs one activation per statement; pass acts or drop it.")
    params = params or {}
    side = {k: np.asarray(v) for k, v in (side or {}).items()}
    for key, values in side.items():
        if len(values) != n:
            raise ProbeError(f"{key} has {len(values)} entries but there are {n} examples; pass one per example.")
    multi = MULTI_LAYER in methods
    methods = [m for m in methods if m != MULTI_LAYER]
    folds = splits(labels, test_size, kfold, seed, groups)
    inner = [inner_split(labels, tr, seed, groups, val_size) for tr, _ in folds]
    total, done = len(methods) * L * len(folds), 0
    rows: list[dict[str, Any]] = []
    for fi, ((_, te), (fit, val)) in enumerate(zip(folds, inner)):
        for m in methods:
            fitted = fit_layers(m, params.get(m, {}), seed, A, P, labels, fit, batch_layers, side)
            for li, (layer, probe) in enumerate(zip(layer_ids, fitted)):
                row: dict[str, Any] = {"method": m, "layer": layer, "fold": fi, "n_train": len(fit), "n_val": len(val),
                                       "n_test": len(te)}
                if probe.paired:
                    pos, neg = P[0][:, li], P[1][:, li]
                    p, pv = probe.predict_proba_pairs(pos[te], neg[te]), probe.predict_proba_pairs(pos[val], neg[val])
                    row["input"] = "pairs"
                    if A is not None:
                        single = evaluate(labels[te], probe.predict_proba(A[te, li]))
                        row["accuracy_single"], row["auroc_single"] = single["accuracy"], single["auroc"]
                else:
                    p, pv = probe.predict_proba(A[te, li]), probe.predict_proba(A[val, li])
                    row["input"] = "single"
                p = np.asarray(p, dtype=np.float64)
                metrics = evaluate(labels[te], p)
                row.update({k: metrics[k] for k in ("accuracy", "auroc", "ece")})
                row["val_accuracy"] = accuracy(labels[val], np.asarray(pv, dtype=np.float64))
                if layer_intervals and n_boot:
                    row["accuracy_lo"], row["accuracy_hi"] = bootstrap_ci(accuracy, labels[te], p, n_boot, seed=seed)
                rows.append(row)
                done += 1
                if progress is not None:
                    progress(done, total, f"{m} layer {layer}")
    order = {m: i for i, m in enumerate(methods)}
    rows.sort(key=lambda r: (layer_ids.index(r["layer"]), r["fold"], order[r["method"]]))
    def refit(m: str) -> Callable[[int, int], np.ndarray]:
        def run(fi: int, layer: int) -> np.ndarray:
            tr, te = folds[fi]
            li = layer_ids.index(layer)
            A1 = None if A is None else A[:, li:li + 1]
            P1 = None if P is None else (P[0][:, li:li + 1], P[1][:, li:li + 1])
            probe = fit_layers(m, params.get(m, {}), seed, A1, P1, labels, tr, False, side)[0]
            p = probe.predict_proba_pairs(P1[0][te, 0], P1[1][te, 0]) if probe.paired else probe.predict_proba(A1[te, 0])
            return np.asarray(p, dtype=np.float64)
        return run

    selection = {m: _select(rows, m, layer_ids, folds, labels, refit(m), n_boot, seed) for m in methods}
    if multi:
        selection[MULTI_LAYER] = _multi_layer(A, labels, layer_ids, folds, params.get(MULTI_LAYER, {}), seed, n_boot,
                                              groups)
        methods = [*methods, MULTI_LAYER]
    chance = float(max(labels.mean(), 1 - labels.mean()))
    config = {"n": n, "d_model": d, "seed": seed, "batch_layers": batch_layers, "test_size": None if kfold else test_size, "kfold": kfold,
              "grouped": groups is not None, "params": params, "n_boot": n_boot, "val_size": val_size,
              "layer_choice": "per outer fold, the best validation accuracy on an inner split of its training part "
                              "(probes fit on the rest); the headline refits each fold's chosen layer on the fold's "
                              "whole training part and pools the test predictions"}
    return SweepResult(rows, methods, layer_ids, chance, _jsonable(config), title, _jsonable(selection))


def fit_layers(method: str, params: dict[str, Any], seed: int, A: torch.Tensor | None,
               P: tuple[torch.Tensor, torch.Tensor] | None, labels: np.ndarray, idx: np.ndarray,
               batched: bool = True, side: dict[str, np.ndarray] | None = None) -> list[Any]:
    """One fitted ``method`` probe per layer on the rows ``idx``: one batched program where the method has one.
    ``side``: per-example extras (TTPD's ``polarity`` and topic ``groups``) handed to probes whose ``fit`` takes them."""
    probe = make_probe(method, seed=seed, **params)
    stacked = (P[0][idx], P[1][idx]) if probe.paired else (A[idx],)
    takes = inspect.signature(probe.fit).parameters
    extra = {k: v[idx] for k, v in (side or {}).items() if k in takes}
    if batched and not extra and hasattr(probe, "fit_layers") and getattr(probe, "batched", True):
        return probe.fit_layers(*stacked, labels[idx])
    fitted = []
    for li in range(stacked[0].shape[1]):
        one = make_probe(method, seed=seed, **params)
        fitted.append(one.fit(*[x[:, li] for x in stacked], labels[idx], **extra))
    return fitted


def _multi_layer(A: torch.Tensor, labels: np.ndarray, layer_ids: list[int], folds: list, params: dict[str, Any],
                 seed: int, n_boot: int, groups: Sequence[Any] | None) -> dict[str, Any]:
    """The multi-layer probe on every captured layer at once, per outer fold; its test predictions pooled."""
    from probes.multilayer import MultiLayerProbe

    keys = None if groups is None else np.asarray([str(g) for g in groups])
    idx, p = [], []
    for tr, te in folds:
        probe = MultiLayerProbe(layers=layer_ids, seed=seed, **params)
        probe.fit(A[tr], labels[tr], groups=None if keys is None else keys[tr])
        idx.append(te)
        p.append(np.asarray(probe.predict_proba(A[te]), dtype=np.float64))
    index, pooled = np.concatenate(idx), np.concatenate(p)
    out = {"layer": ALL_LAYERS, "fold_layers": [ALL_LAYERS] * len(folds), "val_accuracy": None,
           "accuracy": accuracy(labels[index], pooled), "auroc": auroc(labels[index], pooled), "accuracy_lo": None,
           "accuracy_hi": None, "n_test": int(len(index)), "n_boot": n_boot, "chosen_on": "none (every layer)"}
    if n_boot:
        out["accuracy_lo"], out["accuracy_hi"] = bootstrap_ci(accuracy, labels[index], pooled, n_boot, seed=seed)
    return out


def _select(rows: list[dict[str, Any]], method: str, layer_ids: list[int], folds: list, labels: np.ndarray,
            refit: Callable[[int, int], np.ndarray], n_boot: int, seed: int) -> dict[str, Any]:
    """Per fold the layer with the best validation accuracy, refitted on the fold's whole training part (fit and
    validation together, as scikit-learn's cross-validation would fit it); its test predictions, pooled."""
    chosen = []
    pooled_idx, pooled_p = [], []
    for fi, (_, te) in enumerate(folds):
        val = {r["layer"]: r["val_accuracy"] for r in rows if r["method"] == method and r["fold"] == fi}
        layer = _choose(val)
        chosen.append(layer)
        pooled_idx.append(te)
        pooled_p.append(refit(fi, layer))
    idx, p = np.concatenate(pooled_idx), np.concatenate(pooled_p)
    counts = {layer: chosen.count(layer) for layer in chosen}
    mean_val = {layer: float(np.mean([r["val_accuracy"] for r in rows if r["method"] == method and r["layer"] == layer]))
                for layer in counts}
    layer = max(counts, key=lambda c: (counts[c], mean_val[c], -c))
    out = {"layer": layer, "fold_layers": chosen, "val_accuracy": mean_val[layer], "accuracy": accuracy(labels[idx], p),
           "auroc": auroc(labels[idx], p), "accuracy_lo": None, "accuracy_hi": None, "n_test": int(len(idx)),
           "n_boot": n_boot, "chosen_on": "validation", "refit": "chosen layer refitted on each fold's training part"}
    if n_boot:
        out["accuracy_lo"], out["accuracy_hi"] = bootstrap_ci(accuracy, labels[idx], p, n_boot, seed=seed)
    return out
