"""liedetect's LR sweep against plain scikit-learn on every shared Truth_is_Universal set, same activations and folds.

For each set: liedetect's headline (`probes.sweep.sweep`, LR, 5 folds grouped by subject where the set has one,
layer chosen on validation inside each training fold) and scikit-learn's StandardScaler + LogisticRegression(C=1)
fitted on the same folds at the layers liedetect chose, and at each layer (the best layer reported separately).

The activations are captured once and cached (safetensors), so the same numbers can be computed by an older
liedetect (`PYTHONPATH=OLD_CHECKOUT python experiments/lr_parity.py --cache DIR --tag before`): the before/after
table of issue 29 compares both on identical inputs.

    python experiments/lr_parity.py --model smollm2 --cache /tmp/parity-smollm2 --tag after
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "truth_is_universal"
SETS = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans", "larger_than", "smaller_than", "animal_class",
        "neg_animal_class", "facts", "neg_facts")
GROUP_COLUMN = {"cities": "city", "neg_cities": "city", "larger_than": "n1", "smaller_than": "n1"}
LAYERS = {"smollm2": [9, 12, 15, 18, 21, 24], "gemma3-270m": [3, 5, 7, 9, 11, 13]}  # fixed before any number


def capture(model_name: str, cache: Path, per_set: int) -> None:
    """Capture every set at the model's layers into cache/NAME.safetensors (+ labels and groups in NAME.json)."""
    from safetensors.torch import save_file

    from liedetect.datasets import load_statements
    from liedetect.models import load_model
    from liedetect.training import capture_inputs

    model = load_model(model_name, device="cpu")
    cache.mkdir(parents=True, exist_ok=True)
    for name in SETS:
        if (cache / f"{name}.json").exists():
            continue
        data = load_statements(DATA / f"{name}.csv")
        data = data.sample(per_set, seed=0) if per_set else data
        inputs = capture_inputs(model, data, LAYERS[model_name], ["lr"], batch_size=32, progress=False)
        save_file({"acts": inputs.single.contiguous()}, str(cache / f"{name}.safetensors"))
        column = GROUP_COLUMN.get(name)
        (cache / f"{name}.json").write_text(json.dumps({
            "labels": inputs.labels.tolist(), "groups": None if column is None else [str(g) for g in data.extra[column]],
            "layers": LAYERS[model_name], "bos": inputs.bos}))
        print(f"captured {name}: {tuple(inputs.single.shape)}", flush=True)


def folds_of(y: np.ndarray, groups):
    """scikit-learn's own folds: StratifiedGroupKFold (grouped) or StratifiedKFold, 5, shuffled, seed 0."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    idx = np.arange(len(y))
    if groups is None:
        return list(StratifiedKFold(5, shuffle=True, random_state=0).split(idx, y))
    return [(np.sort(a), np.sort(b)) for a, b in
            StratifiedGroupKFold(5, shuffle=True, random_state=0).split(idx, y, np.asarray(groups))]


def sklearn_at(X: np.ndarray, y: np.ndarray, folds, layer_of_fold) -> float:
    """Pooled test accuracy of StandardScaler + LogisticRegression(C=1), fold f read at layer index layer_of_fold[f]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    hits = 0
    for (tr, te), li in zip(folds, layer_of_fold):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X[tr, li], y[tr])
        hits += int((clf.predict(X[te, li]) == y[te]).sum())
    return hits / len(y)


def evaluate(cache: Path) -> dict:
    """Per set: liedetect's headline (and chosen layers, C) and scikit-learn on the same folds and layers."""
    from safetensors.torch import load_file

    from probes.sweep import sweep

    out = {}
    for name in SETS:
        meta = json.loads((cache / f"{name}.json").read_text())
        acts = load_file(str(cache / f"{name}.safetensors"))["acts"]
        y, groups, layers = np.asarray(meta["labels"]), meta["groups"], meta["layers"]
        start = time.perf_counter()
        res = sweep(acts, y, layers=layers, methods=["lr"], kfold=5, seed=0, groups=groups, n_boot=0)
        head = res.headline("lr")
        seconds = time.perf_counter() - start
        X = acts.numpy()
        folds = folds_of(y, groups)
        chosen = [layers.index(layer) for layer in head["fold_layers"]]
        per_layer = {layers[i]: sklearn_at(X, y, folds, [i] * len(folds)) for i in range(len(layers))}
        out[name] = {"liedetect": head["accuracy"], "sklearn_same_layers": sklearn_at(X, y, folds, chosen),
                     "sklearn_best_layer": max(per_layer.values()), "fold_layers": head["fold_layers"],
                     "n": int(len(y)), "grouped_by": GROUP_COLUMN.get(name), "seconds": seconds}
        print(f"{name:<18} liedetect {out[name]['liedetect']:.3f}  sklearn (same layers) "
              f"{out[name]['sklearn_same_layers']:.3f}  sklearn best layer {out[name]['sklearn_best_layer']:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", choices=sorted(LAYERS))
    ap.add_argument("--cache", type=Path, required=True, help="folder for the captured activations (reused)")
    ap.add_argument("--per-set", type=int, default=400, help="balanced sample per set (0: every statement)")
    ap.add_argument("--tag", default="after", help="a name for this code version in the result file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this experiment needs the shared evaluation data beside the repository.")
    if not all((args.cache / f"{n}.json").exists() for n in SETS):
        capture(args.model, args.cache, args.per_set)
    doc = {"model": args.model, "tag": args.tag, "sets": evaluate(args.cache)}
    out = args.out or ROOT / "experiments" / "results" / f"lr_parity_{args.model}_{args.tag}.json"
    try:
        from liedetect.run_record import write_result
    except ImportError:  # an older liedetect (the "before" run) has no run record
        out.write_text(json.dumps(doc, indent=1) + "\n")
    else:
        write_result(out, doc, vars(args))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
