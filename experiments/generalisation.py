"""Do truth probes generalise across topics and polarity? Train on each set (or union), test on every other.

    python experiments/generalisation.py --model smollm2 [--per-set 400] [--layers 6-24:2] [--device cpu]

Data: the twelve statement sets of Bürger et al. ("Truth is Universal", NeurIPS 2024) in
../shared/data/truth_is_universal: cities, sp_en_trans, animal_class, facts (each with its negation),
larger_than / smaller_than (a polarity pair, as in the paper), and cities_conj / cities_disj (test only).
Statements are read plain (no template) at their last token, with the model's own BOS policy; CCS and
LAT read them completed with " This statement is True" / " ... False".

Training configurations: every single set; cities + neg_cities; and leave-one-topic-out (train on four
topics with both polarities, test on the fifth topic's two sets), the paper's test for TTPD.
Methods: LR (C=1, scikit-learn's default strength), mass-mean, TTPD, multi-layer LR (stacked over all
candidate layers, so no layer is chosen), CCS and LAT (signs from 32 training labels).

Layer choice never sees a test set: for each configuration and method, every candidate layer is fitted
on 75% of the training statements and scored on the other 25% (grouped by city for the cities sets);
the best validation layer is then refitted on all training statements. Test accuracies come with 95%
bootstrap intervals (1,000 resamples), plus the threshold-free AUROC (a probe whose direction transfers
but whose threshold does not shows a high AUROC at chance accuracy). "ttpd-centred" is TTPD scored after moving each test set's mean
along t_G to the training mean, which needs no labels.

Writes experiments/results/generalisation_<model>.json and generalisation_<model>.png (one heatmap per method).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from liedetect.activations import extract
from liedetect.datasets import StatementDataset, contrast_pairs, format_prompts, load_statements
from liedetect.models import resolve_layers
from probes.ccs import CCSProbe
from probes.selection import holdout_groups, select_layer
from probes.lat import LATProbe
from probes.logistic import LogisticProbe
from probes.mass_mean import MassMeanProbe
from probes.metrics import auroc, bootstrap_ci
from probes.multilayer import MultiLayerProbe
from probes.ttpd import TTPDProbe
from liedetect.run_record import write_result

DATA = ROOT.parent / "shared" / "data" / "truth_is_universal"
RESULTS = ROOT / "experiments" / "results"

# set -> (topic, polarity: 1 affirmative, 0 negated); conj/disj are test-only
SETS = {
    "cities": ("cities", 1), "neg_cities": ("cities", 0),
    "sp_en_trans": ("sp_en_trans", 1), "neg_sp_en_trans": ("sp_en_trans", 0),
    "animal_class": ("animal_class", 1), "neg_animal_class": ("animal_class", 0),
    "facts": ("facts", 1), "neg_facts": ("facts", 0),
    "larger_than": ("inequalities", 1), "smaller_than": ("inequalities", 0),
    "cities_conj": ("conjunctions", 1), "cities_disj": ("disjunctions", 1),
}
TRAIN_TOPICS = ("cities", "sp_en_trans", "animal_class", "facts", "inequalities")
METHODS = ("lr", "mass-mean", "ttpd", "multi-layer-lr", "ccs", "lat")
PAIRED = ("ccs", "lat")


@dataclass
class Block:
    """One statement set: labels, topic/polarity, grouping key, activations [n, L, d] plain and as True/False pairs."""

    name: str
    y: np.ndarray
    topic: str
    polarity: int
    groups: np.ndarray
    single: torch.Tensor
    pos: Optional[torch.Tensor] = None
    neg: Optional[torch.Tensor] = None


def load_sets(per_set: Optional[int], seed: int, names: Sequence[str]) -> Dict[str, StatementDataset]:
    """Each set, a balanced sample of at most `per_set` statements."""
    out = {}
    for name in names:
        data = load_statements(DATA / f"{name}.csv")
        out[name] = data.sample(per_set, seed) if per_set and per_set < len(data) else data
    return out


def capture(model: Any, sets: Dict[str, StatementDataset], layers: List[int], paired: bool, batch_size: int,
            progress: bool) -> Dict[str, Block]:
    """Capture every set once at every candidate layer (plain, and as True/False pairs when asked)."""
    blocks = {}
    for name, data in sets.items():
        topic, pol = SETS[name]
        city = data.extra.get("city")
        groups = np.asarray(city if city is not None else [f"{name}-{i}" for i in range(len(data))])
        single = extract(model, format_prompts(data, "plain"), layers, position="last", batch_size=batch_size,
                         progress=progress).acts
        block = Block(name, np.asarray(data.labels), topic, pol, groups, single)
        if paired:
            pos_t, neg_t = contrast_pairs(data, "true-false")
            block.pos = extract(model, pos_t, layers, position="last", batch_size=batch_size, progress=progress).acts
            block.neg = extract(model, neg_t, layers, position="last", batch_size=batch_size, progress=progress).acts
        blocks[name] = block
    return blocks


def _cat(blocks: Sequence[Block]) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "y": np.concatenate([b.y for b in blocks]),
        "single": torch.cat([b.single for b in blocks]),
        "polarity": np.concatenate([np.full(len(b.y), b.polarity) for b in blocks]),
        "set": np.concatenate([np.full(len(b.y), b.name) for b in blocks]),
        "groups": np.concatenate([np.asarray([f"{b.name}:{g}" for g in b.groups]) for b in blocks]),
    }
    if all(b.pos is not None for b in blocks):
        out["pos"] = torch.cat([b.pos for b in blocks])
        out["neg"] = torch.cat([b.neg for b in blocks])
    return out


def fit(method: str, data: Dict[str, Any], li: Optional[int], seed: int, ccs_steps: int, index=None) -> Any:
    """Fit one method at layer slot `li` (all slots for multi-layer) on `data` rows `index`."""
    idx = np.arange(len(data["y"])) if index is None else index
    y = data["y"][idx]
    if method == "multi-layer-lr":
        return MultiLayerProbe(combine="stack", C=1.0, seed=seed).fit(data["single"][idx], y)
    if method == "lr":
        return LogisticProbe(C=1.0, recalibrate=False, seed=seed).fit(data["single"][idx, li], y)
    if method == "mass-mean":
        return MassMeanProbe(seed=seed).fit(data["single"][idx, li], y)
    if method == "ttpd":
        return TTPDProbe(seed=seed).fit(data["single"][idx, li], y, polarity=data["polarity"][idx], groups=data["set"][idx])
    if method == "ccs":
        return CCSProbe(n_restarts=4, n_steps=ccs_steps, seed=seed).fit(data["pos"][idx, li], data["neg"][idx, li], y)
    if method == "lat":
        return LATProbe(seed=seed).fit(data["pos"][idx, li], data["neg"][idx, li], y)
    raise ValueError(method)


def decision(method: str, probe: Any, block: Block, li: Optional[int], centred: bool = False) -> np.ndarray:
    """Signed scores (> 0: true) of a fitted probe on one test set."""
    if method == "multi-layer-lr":
        scores = probe.decision_function(block.single)
    elif method in PAIRED:
        scores = probe.decision_function_pairs(block.pos[:, li], block.neg[:, li])
    elif method == "ttpd" and centred:
        scores = probe.decision_function(block.single[:, li], groups=[block.name] * len(block.y))
    else:
        scores = probe.decision_function(block.single[:, li])
    return scores.detach().numpy().astype(np.float64)


def predict(method: str, probe: Any, block: Block, li: Optional[int], centred: bool = False) -> np.ndarray:
    """0/1 predictions of a fitted probe on one test set."""
    return (decision(method, probe, block, li, centred) >= 0).astype(int)


def choose_layer(method: str, data: Dict[str, Any], n_layers: int, seed: int, ccs_steps: int) -> tuple[int, List[float]]:
    """The candidate slot with the best accuracy on a 25% validation split of the training data (grouped)."""
    keep, val = holdout_groups(data["groups"], 0.25, seed)
    tr, va = np.where(keep)[0], np.where(val)[0]
    accs = []
    for li in range(n_layers):
        probe = fit(method, data, li, seed, ccs_steps, tr)
        sub = Block("val", data["y"][va], "", 1, data["groups"][va], data["single"][va],
                    data["pos"][va] if "pos" in data else None, data["neg"][va] if "neg" in data else None)
        accs.append(float((predict(method, probe, sub, li) == sub.y).mean()))
    return select_layer(dict(enumerate(accs))).layer, accs


def configurations(available: Sequence[str]) -> Dict[str, List[str]]:
    """Training configurations: every single trainable set, cities + neg_cities, and leave-one-topic-out."""
    trainable = [s for s in available if SETS[s][0] in TRAIN_TOPICS]
    configs = {s: [s] for s in trainable}
    if {"cities", "neg_cities"} <= set(available):
        configs["cities+neg_cities"] = ["cities", "neg_cities"]
    for topic in TRAIN_TOPICS:
        rest = [s for s in trainable if SETS[s][0] != topic]
        if rest and len(rest) < len(trainable):
            configs[f"all-but-{topic}"] = rest
    return configs


def accuracy_ci(y: np.ndarray, scores: np.ndarray, seed: int) -> Dict[str, float]:
    """Accuracy (threshold 0) with a 95% bootstrap interval, and the threshold-free AUROC."""
    pred = (scores >= 0).astype(int)
    acc = float((pred == y).mean())
    lo, hi = bootstrap_ci(lambda yy, pp: float((pp == yy).mean()), y, pred, n_boot=1000, seed=seed)
    return {"accuracy": acc, "ci_low": lo, "ci_high": hi, "auroc": auroc(y, scores), "n": int(len(y))}


def run(model: Any, model_name: str, per_set: Optional[int] = 400, layers: Any = None, methods: Sequence[str] = METHODS,
        sets: Sequence[str] = tuple(SETS), seed: int = 0, ccs_steps: int = 500, batch_size: int = 32,
        progress: bool = True) -> Dict[str, Any]:
    """The whole experiment on a loaded model; returns the results document."""
    t0 = time.perf_counter()
    cand = resolve_layers(layers, model.cfg.n_layers) if layers is not None else \
        list(range(model.cfg.n_layers // 4, 3 * model.cfg.n_layers // 4 + 1, 2))
    data = load_sets(per_set, seed, sets)
    blocks = capture(model, data, cand, any(m in PAIRED for m in methods), batch_size, progress)
    t_capture = time.perf_counter() - t0
    results: List[Dict[str, Any]] = []
    for config, members in configurations(list(blocks)).items():
        train = _cat([blocks[s] for s in members])
        for method in methods:
            if method == "multi-layer-lr":
                li, val_accs = None, []
            else:
                li, val_accs = choose_layer(method, train, len(cand), seed, ccs_steps)
            probe = fit(method, train, li, seed, ccs_steps)
            variants = [(method, False)] + ([("ttpd-centred", True)] if method == "ttpd" else [])
            for name, centred in variants:
                for test_name, block in blocks.items():
                    scores = decision(method, probe, block, li, centred)
                    results.append({"train": config, "method": name, "test": test_name,
                                    "layer": None if li is None else cand[li], "in_training": test_name in members,
                                    "validation_accuracy_by_layer": val_accs, **accuracy_ci(block.y, scores, seed)})
        if progress:
            print(f"  {config}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return {"experiment": "generalisation", "model": model_name, "candidate_layers": cand,
            "n_per_set": {k: int(len(b.y)) for k, b in blocks.items()}, "methods": list(methods),
            "seed": seed, "ccs_steps": ccs_steps, "capture_seconds": round(t_capture, 1),
            "total_seconds": round(time.perf_counter() - t0, 1), "results": results}


def held_out_table(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The headline rows: held-out topics (leave-one-topic-out) and cities -> neg_cities, per method."""
    rows = []
    for r in doc["results"]:
        loto = r["train"].startswith("all-but-") and SETS[r["test"]][0] == r["train"][len("all-but-"):]
        negation = r["train"] == "cities" and r["test"] == "neg_cities"
        if loto or negation:
            rows.append(r)
    return rows


def plot(doc: Dict[str, Any], path: Path) -> Path:
    """One heatmap per method: training configuration x test set, held-out accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in doc["results"]))
    configs = list(dict.fromkeys(r["train"] for r in doc["results"]))
    tests = list(dict.fromkeys(r["test"] for r in doc["results"]))
    cols = 2
    rows_n = (len(methods) + cols - 1) // cols
    n_test = {r["test"]: r["n"] for r in doc["results"]}
    fig, axes = plt.subplots(rows_n, cols, figsize=(7.5 * cols, (0.42 * len(configs) + 2.6) * rows_n), squeeze=False,
                             layout="constrained")
    for ax, method in zip(axes.flat, methods):
        grid = np.full((len(configs), len(tests)), np.nan)
        for r in doc["results"]:
            if r["method"] == method:
                grid[configs.index(r["train"]), tests.index(r["test"])] = r["accuracy"]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdBu")
        ax.set_title(method)
        ax.set_xticks(range(len(tests)), [f"{t} (n={n_test[t]})" for t in tests], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(configs)), configs, fontsize=7)
        for i in range(len(configs)):
            for j in range(len(tests)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=5.5)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.5, label="test accuracy (in-training cells included)")
    fig.suptitle(f"Truth-probe generalisation on {doc['model']} (layers chosen on validation splits)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--device", default=None)
    ap.add_argument("--per-set", type=int, default=400, help="balanced sample per set (0: every statement)")
    ap.add_argument("--layers", default=None, help="candidate layers (default: every 2nd layer in the middle half)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--ccs-steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="results folder (default experiments/results)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this experiment needs the shared evaluation data beside the repository.")
    if args.threads:
        torch.set_num_threads(args.threads)
    from liedetect.models import load_model

    model = load_model(args.model, device=args.device)
    doc = run(model, args.model, args.per_set or None, args.layers, args.methods.split(","), seed=args.seed,
              ccs_steps=args.ccs_steps, batch_size=args.batch_size, progress=not args.quiet)
    doc["command"] = "python experiments/generalisation.py " + " ".join(sys.argv[1:])
    doc["device"] = str(next(model.parameters()).device)
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = "generalisation_" + Path(str(args.model)).name.replace(".gguf", "")
    doc["plot"] = str(plot(doc, out / f"{stem}.png"))
    write_result((out / f"{stem}.json"), doc, indent=1)
    for r in held_out_table(doc):
        print(f"{r['train']:>24} -> {r['test']:<18} {r['method']:<15} layer {str(r['layer']):>4}  "
              f"{r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]  AUROC {r['auroc']:.3f}  n={r['n']}")
    print(f"wrote {out / stem}.json ({doc['total_seconds']:.0f} s, capture {doc['capture_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
