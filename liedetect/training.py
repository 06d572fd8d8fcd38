"""Probes on a real model: build contrast pairs, capture the layers asked, fit, evaluate, save.

The one place where datasets, capture and ``probes`` meet, so the CLI and the demo stay thin.
Single-activation methods read each statement alone (``format_prompts(..., "plain")``); contrast
methods read the statement completed both ways (``contrast_pairs(..., template)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

import probes
from liedetect.activations import extract
from liedetect.datasets import StatementDataset, contrast_pairs, format_prompts
from liedetect.errors import DataError, ProbeMismatchError
from liedetect.models import hook_name, model_id, resolve_layers
from liedetect.probe_io import check_probe, load_probe
from liedetect.progress import progress_bar
from probes.errors import ProbeError
from probes.metrics import evaluate
from probes.selection import check_sweep_groups, n_groups, splits
from probes.sweep import MULTI_LAYER, SweepResult, sweep

DEFAULT_TEMPLATE = "true-false"

__all__ = ["DEFAULT_TEMPLATE", "ProbeInputs", "capture_inputs", "probe_meta", "score_inputs", "TrainResult", "train_probe",
           "sweep_model", "load_probe", "evaluate_probe"]


@dataclass
class ProbeInputs:
    """Captured activations for one dataset: the statements alone and/or both completions of each pair."""

    labels: np.ndarray
    layers: List[int]
    hook: str
    position: str
    model_id: str
    template: str
    single: Optional[torch.Tensor] = None  # [n, L, d]
    pos: Optional[torch.Tensor] = None  # [n, L, d], the statement completed "True"
    neg: Optional[torch.Tensor] = None  # [n, L, d], the statement completed "False"
    bos: str = "auto"  # the BOS policy the texts were tokenized under (liedetect.bos)
    bos_record: Dict[str, Any] = field(default_factory=dict)  # the policy, the token and whether it was added

    @property
    def d_model(self) -> int:
        ref = self.single if self.single is not None else self.pos
        return int(ref.shape[-1])

    def layer_slice(self, layer: int) -> Dict[str, Optional[torch.Tensor]]:
        """The [n, d] activations of one captured layer."""
        i = self.layers.index(layer)
        return {k: None if v is None else v[:, i] for k, v in (("single", self.single), ("pos", self.pos), ("neg", self.neg))}


def capture_inputs(model: Any, dataset: StatementDataset, layers: Union[str, int, Sequence[int]], methods: Sequence[str],
                   position: str = "last", hook: str = "resid_post", template: str = DEFAULT_TEMPLATE,
                   batch_size: int = 32, progress: bool = True, bos: Optional[str] = None) -> ProbeInputs:
    """Capture what ``methods`` need: statements alone for single-activation methods, pairs for contrast methods."""
    dataset.check_two_classes()
    layer_list = resolve_layers(layers, model.cfg.n_layers)
    paired = [probes.is_paired(m) for m in methods]
    kw = dict(layers=layer_list, position=position, hook=hook, batch_size=batch_size, progress=progress, bos=bos)
    single = pos = neg = None
    first = None
    if not all(paired):
        first = extract(model, format_prompts(dataset, "plain"), **kw)
        single = first.acts
    if any(paired):
        pos_texts, neg_texts = contrast_pairs(dataset, template)
        pos_acts = extract(model, pos_texts, **kw)
        pos, neg = pos_acts.acts, extract(model, neg_texts, **kw).acts
        first = first or pos_acts
    return ProbeInputs(labels=np.asarray(dataset.labels), layers=layer_list, hook=hook, position=first.position,
                       model_id=model_id(model), template=template, single=single, pos=pos, neg=neg, bos=first.bos,
                       bos_record={k: first.meta.get(k) for k in ("bos", "bos_token", "bos_added")})


def probe_meta(inputs: ProbeInputs, layer: int, dataset: StatementDataset, **extra: Any) -> Dict[str, Any]:
    """The context saved with a probe: where its activations came from."""
    return {"model_id": inputs.model_id, "hook": inputs.hook, "hook_name": hook_name(layer, inputs.hook), "layer": layer,
            "position": inputs.position, "d_model": inputs.d_model, "template": inputs.template,
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(), "bos": inputs.bos,
            "bos_added": inputs.bos_record.get("bos_added"), "bos_token": inputs.bos_record.get("bos_token"), **extra}


def score_inputs(probe: probes.Probe, inputs: ProbeInputs, layer: int, index: Optional[np.ndarray] = None,
                 n_boot: int = 0, seed: int = 0) -> Dict[str, float]:
    """Metrics of a fitted probe on captured inputs (pairs for contrast probes, plus single statements if captured)."""
    sl = inputs.layer_slice(layer)
    idx = np.arange(len(inputs.labels)) if index is None else index
    y = inputs.labels[idx]
    if probe.paired:
        out = evaluate(y, probe.predict_proba_pairs(sl["pos"][idx], sl["neg"][idx]), n_boot=n_boot, seed=seed)
        if sl["single"] is not None:
            single = evaluate(y, probe.predict_proba(sl["single"][idx]))
            out["accuracy_single"], out["auroc_single"] = single["accuracy"], single["auroc"]
        return out
    return evaluate(y, probe.predict_proba(sl["single"][idx]), n_boot=n_boot, seed=seed)


def side_info(dataset: StatementDataset, *methods: str) -> Dict[str, List[Any]]:
    """What TTPD reads besides activations: polarity and topic per statement (liedetect.polarity adds them)."""
    if "ttpd" not in methods or "polarity" not in dataset.extra:
        return {}
    return {"polarity": list(dataset.extra["polarity"]),
            "groups": list(dataset.extra.get("topic", [dataset.name] * len(dataset)))}


@dataclass
class TrainResult:
    """A fitted probe, its held-out metrics and the metadata that travels with it."""

    probe: probes.Probe
    metrics: Dict[str, float]
    meta: Dict[str, Any] = field(default_factory=dict)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the probe (safetensors + JSON sidecar with meta and metrics); return the JSON path."""
        return self.probe.save(path, meta=self.meta, metrics=self.metrics)

    def summary(self) -> str:
        """One line: method, layer, held-out accuracy/AUROC."""
        m = self.metrics
        where = "held-out" if self.meta.get("n_test") else "training"
        return (f"{self.probe.method} probe at layer {self.meta.get('layer')} ({self.meta.get('hook')}, {self.meta.get('position')}): "
                f"{where} accuracy {m['accuracy']:.3f}, AUROC {m['auroc']:.3f} on {m['n']} statements")


def train_probe(model: Any, dataset: StatementDataset, method: str, layer: Union[int, str], position: str = "last",
                hook: str = "resid_post", template: str = DEFAULT_TEMPLATE, test_size: float = 0.25, seed: int = 0,
                params: Optional[Dict[str, Any]] = None, n_boot: int = 200, batch_size: int = 32,
                progress: bool = True) -> TrainResult:
    """Capture one layer, fit ``method`` on a stratified train split, measure it on the rest (``test_size=0``: all data)."""
    probe = probes.make_probe(method, seed=seed, **(params or {}))
    layer_idx = resolve_layers(layer, model.cfg.n_layers)
    if len(layer_idx) != 1:
        raise ProbeError(f"Train one probe per layer; {layer!r} names {len(layer_idx)} layers (use `liedetect sweep` to compare layers).")
    inputs = capture_inputs(model, dataset, layer_idx, [method], position, hook, template, batch_size, progress)
    L = layer_idx[0]
    sl = inputs.layer_slice(L)
    y = inputs.labels
    if test_size > 0:
        tr, te = splits(y, test_size, None, seed)[0]
    else:
        tr = te = np.arange(len(y))
    if probe.paired:
        probe.fit(sl["pos"][tr], sl["neg"][tr], y[tr])
    else:
        probe.fit(sl["single"][tr], y[tr], **{k: np.asarray(v)[tr] for k, v in side_info(dataset, method).items()})
    metrics = score_inputs(probe, inputs, L, te, n_boot=n_boot, seed=seed)
    meta = probe_meta(inputs, L, dataset, n_train=int(len(tr)), n_test=int(len(te)) if test_size > 0 else 0, seed=seed,
                      split="stratified train/test" if test_size > 0 else "all data (metrics are training metrics)")
    return TrainResult(probe, metrics, meta)


def sweep_groups(dataset: StatementDataset, group_by: Optional[str], kfold: Optional[int] = None,
                 test_size: float = 0.25) -> Optional[List[Any]]:
    """The group key of each statement (column `group_by`), after checking that there are enough groups for the
    sweep's splits: called before any model loads or anything is captured."""
    if group_by is None:
        return None
    if group_by not in dataset.extra:
        have = ", ".join(sorted(dataset.extra)) or "none"
        raise DataError(f"{dataset.name} has no column {group_by!r} to group splits by (extra columns: {have}).")
    groups = list(dataset.extra[group_by])
    check_sweep_groups(groups, kfold, test_size)
    return groups


def sweep_model(model: Any, dataset: StatementDataset, layers: Union[str, int, Sequence[int]] = "all",
                methods: Optional[Sequence[str]] = None, position: str = "last", hook: str = "resid_post",
                template: str = DEFAULT_TEMPLATE, test_size: float = 0.25, kfold: Optional[int] = None, seed: int = 0,
                params: Optional[Dict[str, Dict[str, Any]]] = None, n_boot: int = 200, batch_size: int = 32,
                progress: bool = True, group_by: Optional[str] = None) -> SweepResult:
    """Every method on every layer of a model for one dataset (see ``probes.sweep.sweep``).

    ``group_by`` names a dataset column (e.g. ``city``) whose rows must stay on one side of every split
    (the validation split that picks each method's layer included); ``n_boot`` resamples give the 95%
    interval of each chosen layer's test accuracy.
    """
    groups = sweep_groups(dataset, group_by, kfold, test_size)
    methods = list(methods or probes.METHODS)
    for m in methods:
        if m != MULTI_LAYER:
            probes.is_paired(m)  # unknown names fail before any capture
    capture_methods = [m for m in methods if m != MULTI_LAYER] or ["lr"]
    inputs = capture_inputs(model, dataset, layers, capture_methods, position, hook, template, batch_size, progress)
    pairs = None if inputs.pos is None else (inputs.pos, inputs.neg)
    n_folds = kfold or 1
    with progress_bar("fitting probes", total=len(methods) * len(inputs.layers) * n_folds, enabled=progress) as advance:
        result = sweep(inputs.single, inputs.labels, layers=inputs.layers, methods=methods, pairs=pairs,
                       test_size=test_size, kfold=kfold, seed=seed, params=params, n_boot=n_boot,
                       progress=lambda done, total, what: advance(1), groups=groups,
                       side=side_info(dataset, *methods),
                       title=f"{dataset.name}: probe accuracy by layer ({inputs.model_id.split('|')[0]}, {inputs.hook}, {inputs.position})")
    result.config.update({"group_by": group_by, "model_id": inputs.model_id, "hook": inputs.hook, "position": inputs.position,
                          "template": inputs.template, "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
                          "bos": inputs.bos, "bos_added": inputs.bos_record.get("bos_added"),
                          "bos_token": inputs.bos_record.get("bos_token"), "groups": None if groups is None else
                          {"column": group_by, "n_groups": n_groups(groups)}})
    return result


def evaluate_probe(probe: probes.Probe, model: Any, dataset: StatementDataset, n_boot: int = 200, seed: int = 0,
                   batch_size: int = 32, progress: bool = True, bos: Optional[str] = None) -> Dict[str, float]:
    """Metrics of a saved probe on a dataset, captured the way the probe was trained (layer, hook, position, template, BOS)."""
    meta = probe.meta_
    missing = [k for k in ("layer", "hook", "position") if k not in meta]
    if missing:
        raise ProbeMismatchError(f"This probe records no {', '.join(missing)}; it was not trained through liedetect, so pass activations to probes directly.")
    layer = int(meta["layer"])
    check_probe(probe, model)
    inputs = capture_inputs(model, dataset, [layer], [probe.method], meta["position"], meta["hook"],
                            meta.get("template", DEFAULT_TEMPLATE), batch_size, progress, bos=bos or meta.get("bos"))
    return score_inputs(probe, inputs, layer, n_boot=n_boot, seed=seed)
