"""The evaluation core: group-aware splits, layer selection and the choice of regularisation, one home each.

Every place that splits data, picks a layer or picks C calls these functions (tests/test_architecture.py keeps
it so): the sweep, the detector, the organism study, the experiments and ITI. A split that cannot keep whole
groups apart is refused with one sentence that says how many groups there are and what to pass instead, and
callers check it before any activation is captured (``check_groups``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from probes.errors import ProbeError

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))


def n_groups(groups: Sequence[Any]) -> int:
    """How many distinct group keys there are."""
    return len(np.unique(np.asarray([str(g) for g in groups])))


def check_groups(groups: Sequence[Any] | None, parts: int, what: str = "a grouped split",
                 remedy: str = "pass fewer folds, or data with more distinct groups") -> None:
    """Refuse, with one sentence, a grouped split into `parts` parts that has fewer distinct groups than parts."""
    if groups is None:
        return
    found = n_groups(groups)
    if found < parts:
        raise ProbeError(f"Only {found} distinct group(s); {what} into {parts} parts needs at least {parts}: {remedy}.")


def check_sweep_groups(groups: Sequence[Any] | None, kfold: int | None, test_size: float = 0.25,
                       val_size: float = 0.25) -> None:
    """Refuse, before anything is captured, a sweep whose groups cannot fill its outer split and the inner
    validation split of each training part (`splits`, then `inner_split`)."""
    if groups is None:
        return
    outer = kfold or max(2, round(1 / test_size))
    flag = "--kfold" if kfold else "--test-size"
    check_groups(groups, outer, "the outer split", f"pass a smaller {flag}, or --group-by a column with more values")
    found = n_groups(groups)
    inner = max(2, round(1 / val_size))
    train_groups = found - int(math.ceil(found / outer))
    if train_groups < inner:
        raise ProbeError(f"Only {found} distinct group(s): each training part keeps {train_groups}, and the validation "
                         f"split that picks the layer needs {inner}; pass --group-by a column with more values, "
                         f"or fewer folds.")


def splits(y: np.ndarray, test_size: float = 0.25, kfold: int | None = None, seed: int = 0,
           groups: Sequence[Any] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, test) index pairs: one split, or k folds when ``kfold`` is set.

    ``groups`` (one key per example, e.g. the city a statement is about) keeps every group on one
    side of each split. Data built in pairs (a true and a false statement about the same city) needs
    it: split at random, a test statement's near-identical partner sits in the training set with the
    opposite label, and a probe that keys on the subject scores *below* chance.
    """
    y = np.asarray(y)
    idx = np.arange(len(y))
    if groups is not None:
        keys = np.asarray([str(g) for g in groups])
        if len(keys) != len(y):
            raise ProbeError(f"groups has {len(keys)} entries but there are {len(y)} examples; "
                             f"pass one group key per example.")
        k = kfold or max(2, round(1 / test_size))
        check_groups(keys, k)
        with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", UserWarning)
            folds = [(np.sort(tr), np.sort(te)) for tr, te in
                     StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, y, keys)]
        return folds if kfold else folds[:1]
    if kfold:
        if np.bincount(y).min() < kfold:
            raise ProbeError(f"kfold={kfold} needs at least {kfold} examples of each class; use fewer folds.")
        return [(tr, te) for tr, te in StratifiedKFold(kfold, shuffle=True, random_state=seed).split(idx, y)]
    tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return [(np.sort(tr), np.sort(te))]


def inner_split(y: np.ndarray, train: np.ndarray, seed: int = 0, groups: Sequence[Any] | None = None,
                val_size: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (fit, validation) parts: stratified, grouped when ``groups`` is given."""
    g = None if groups is None else np.asarray([str(x) for x in groups])[train]
    fit, val = splits(np.asarray(y)[train], val_size, None, seed + 1, g)[0]
    return train[fit], train[val]


def holdout_groups(groups: Sequence[Any], fraction: float = 0.25, seed: int = 0, min_holdout: int = 1,
                   what: str = "a validation split") -> tuple[np.ndarray, np.ndarray]:
    """Boolean (keep, held-out) masks that hold out whole groups: `fraction` of the distinct groups (at least
    `min_holdout`, and at least one group kept). Unstratified: for chats and answers, where a group (a question)
    holds both labels."""
    keys = np.asarray(groups)
    if keys.dtype == object:
        keys = np.asarray([str(g) for g in groups])
    uniq = np.unique(keys)
    check_groups(keys, min_holdout + 1, what, "give more distinct groups (questions, topics), or fix the layer")
    rng = np.random.default_rng(seed)
    n_out = min(len(uniq) - 1, max(min_holdout, int(round(fraction * len(uniq)))))
    out = np.isin(keys, rng.choice(uniq, size=n_out, replace=False))
    return ~out, out


@dataclass(frozen=True)
class LayerChoice:
    """A layer chosen on held-out data: the layer, the validation score of every candidate, and the rule."""

    layer: int
    scores: dict[int, float]
    metric: str = "accuracy"
    rule: str = "highest validation score; ties go to the higher secondary score, then the shallower layer"
    secondary: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (NaN as None)."""
        clean = {str(k): (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
                 for k, v in self.scores.items()}
        out: dict[str, Any] = {"layer": int(self.layer), "metric": self.metric, "rule": self.rule,
                               "validation": clean}
        if self.secondary:
            out["secondary"] = {str(k): float(v) for k, v in self.secondary.items()}
        return out


def select_layer(scores: Mapping[int, float], metric: str = "accuracy",
                 secondary: Mapping[int, float] | None = None) -> LayerChoice:
    """The layer with the highest validation score (NaN counts as lowest; ties: `secondary`, then shallower)."""
    if not scores:
        raise ProbeError("No candidate layers to choose from; pass at least one layer.")
    sec = dict(secondary or {})

    def key(layer: int) -> tuple[float, float, int]:
        s = scores[layer]
        return (-math.inf if s is None or math.isnan(s) else float(s), float(sec.get(layer, 0.0)), -int(layer))

    best = max(scores, key=key)
    return LayerChoice(int(best), {int(k): float(v) for k, v in scores.items()}, metric, secondary=sec)


def validate_layers(layers: Sequence[int], fit_score: Callable[[int], float], metric: str = "accuracy",
                    progress: Callable[[int, int, str], None] | None = None) -> LayerChoice:
    """Score every candidate layer with `fit_score(layer)` (fit on the training part, score on validation) and
    choose one with ``select_layer``."""
    scores = {}
    for i, layer in enumerate(layers):
        scores[int(layer)] = float(fit_score(int(layer)))
        if progress is not None:
            progress(i + 1, len(layers), f"layer {layer}")
    return select_layer(scores, metric)


def choose_C(Z: np.ndarray, y: np.ndarray, Cs: Sequence[float] = DEFAULT_CS, k: int = 5, seed: int = 0,
             groups: Sequence[Any] | None = None, max_iter: int = 2000, tol: float = 1e-4) -> tuple[float, dict]:
    """C of an L2 logistic regression on standardised features `Z`, by k-fold accuracy on the same splits as
    everything else (whole groups held out when `groups` is given); the best mean accuracy, ties to larger C.

    Returns (C, record): the record has the folds, whether they were grouped, and the accuracy per C."""
    y = np.asarray(y)
    if groups is not None:
        k = min(k, n_groups(groups))
    k = min(k, int(np.bincount(y).min()))
    if k < 2:
        raise ProbeError(f"Choosing C needs at least 2 folds with both classes; there are {k}. Pass C explicitly.")
    folds = splits(y, kfold=k, seed=seed, groups=groups)
    Cs = sorted(float(c) for c in Cs)
    acc = np.full((len(folds), len(Cs)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f, (tr, te) in enumerate(folds):
            if len(np.unique(y[tr])) < 2:
                continue
            model = LogisticRegression(C=Cs[0], max_iter=max_iter, tol=tol, warm_start=True)
            for j, C in enumerate(Cs):  # increasing C, warm-started from the previous solution
                model.set_params(C=C).fit(Z[tr], y[tr])
                acc[f, j] = (model.predict(Z[te]) == y[te]).mean()
    mean = np.nanmean(acc, axis=0)
    best = max(range(len(Cs)), key=lambda j: (mean[j], j))
    record = {"C": Cs[best], "folds": len(folds), "grouped": groups is not None,
              "rule": "best mean fold accuracy, ties to the weaker regularisation",
              "cv_accuracy": {str(c): float(m) for c, m in zip(Cs, mean)}}
    return Cs[best], record
