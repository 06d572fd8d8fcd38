"""Sweep speed on a real model: fitting every method on every layer against capturing the activations once.

    python benchmarks/bench_sweep.py [--model smollm2] [--n 600] [--layers all] [--kfold 5] [--repeats 3]
                                     [--methods all] [--reference] [--out benchmarks/results/sweep.json]

Same process, median of repeats. ``capture``: `capture_inputs` of every layer asked (statements alone plus the
"True"/"False" pairs the contrast methods need); ``sweep``: `probes.sweep.sweep` on those activations (kfold,
grouped by city, validation split, 200-resample intervals), with layers fitted in one program where a method
has one (CCS); ``--reference`` also times the layer-by-layer path (`batch_layers=False`) and checks that both
choose the same layers. The ratio sweep / capture is the number to watch (target <= 3x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import probes  # noqa: E402
from liedetect.datasets import load_dataset  # noqa: E402
from liedetect.models import load_model  # noqa: E402
from liedetect.training import capture_inputs  # noqa: E402
from probes.sweep import sweep  # noqa: E402

CITIES = ROOT.parent / "shared" / "data" / "truth_is_universal" / "cities.csv"


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    """Time capture and sweep, write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default=str(CITIES))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--layers", default="all")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep.json"))
    args = ap.parse_args()
    methods = list(probes.METHODS) if args.methods == "all" else args.methods.split(",")
    model = load_model(args.model, device="cpu")
    dataset = load_dataset(args.data, n=args.n, seed=0)
    runs = {"capture": [], "sweep": [], "capture_cpu": [], "sweep_cpu": [], "reference": [], "reference_cpu": []}
    same_layers = None
    for r in range(args.repeats):
        inputs, wall, cpu = _timed(lambda: capture_inputs(model, dataset, args.layers, methods, progress=False))
        runs["capture"].append(wall); runs["capture_cpu"].append(cpu)
        pairs = None if inputs.pos is None else (inputs.pos, inputs.neg)
        kw = dict(layers=inputs.layers, methods=methods, pairs=pairs, kfold=args.kfold, seed=0, groups=dataset.extra["city"])
        res, wall, cpu = _timed(lambda: sweep(inputs.single, inputs.labels, **kw))
        runs["sweep"].append(wall); runs["sweep_cpu"].append(cpu)
        print(f"repeat {r}: capture {runs['capture'][-1]:.1f} s, sweep {wall:.1f} s", flush=True)
        if args.reference:
            ref, wall, cpu = _timed(lambda: sweep(inputs.single, inputs.labels, batch_layers=False, **kw))
            runs["reference"].append(wall); runs["reference_cpu"].append(cpu)
            same_layers = all(ref.best_layer(m) == res.best_layer(m) for m in methods) and (same_layers is not False)
            print(f"          layer-by-layer sweep {wall:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    doc = {"benchmark": "sweep", "command": "python benchmarks/bench_sweep.py " + " ".join(sys.argv[1:]),
           "model": args.model, "data": Path(args.data).name, "n": len(dataset.labels), "layers": inputs.layers,
           "methods": methods, "kfold": args.kfold, "grouped_by": "city", "repeats": args.repeats, "runs_s": runs,
           "median_s": med, "sweep_over_capture": med["sweep"] / med["capture"],
           "reference_over_capture": med["reference"] / med["capture"] if "reference" in med else None,
           "same_layers_as_reference": same_layers,
           "headline": {m: res.headline(m) for m in methods},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "note": "shared machine; other jobs ran"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(probes.base._jsonable(doc), indent=1) + "\n")
    print(f"sweep/capture {doc['sweep_over_capture']:.2f}x" + (f", layer-by-layer {doc['reference_over_capture']:.2f}x"
                                                            if doc["reference_over_capture"] else "") + f" -> {args.out}")


if __name__ == "__main__":
    main()
