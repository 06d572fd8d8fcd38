"""CCS restarts: one batched tensor program against a one-restart-at-a-time loop, in the same run.

    python benchmarks/bench_ccs.py [--n 2000] [--d 768] [--restarts 10] [--steps 1000] [--repeats 3]
                                   [--threads 1] [--device cpu]

Both modes run the identical CCS fit (``CCSProbe(batched=True|False)``: same data, normalisation,
initial weights and AdamW update, so they return the same probe); modes are interleaved and the
median of the repeats is reported. Writes benchmarks/results/ccs.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes import CCSProbe  # noqa: E402
from probes.synthetic import planted_pairs  # noqa: E402


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()) / (a.double().norm() * b.double().norm()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ccs.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = planted_pairs(n=args.n, d=args.d, seed=0)
    kw = dict(n_restarts=args.restarts, n_steps=args.steps, device=args.device, seed=0)
    times: dict[str, list[float]] = {"batched": [], "loop": []}
    fitted = {}
    CCSProbe(**{**kw, "n_steps": 20}).fit(data.X, data.X_neg, data.y)  # warm-up
    for rep in range(args.repeats):
        for mode in ("batched", "loop"):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fitted[mode] = CCSProbe(batched=(mode == "batched"), **kw).fit(data.X, data.X_neg, data.y)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[mode].append(time.perf_counter() - t0)
            print(f"repeat {rep + 1}/{args.repeats} {mode:<8} {times[mode][-1]:8.2f} s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    ratio = med["loop"] / med["batched"]
    result = {
        "benchmark": "ccs_restarts_batched_vs_loop",
        "config": {"n_pairs": args.n, "d": args.d, "restarts": args.restarts, "steps": args.steps,
                   "repeats": args.repeats, "threads": args.threads, "device": args.device},
        "seconds": times,
        "median_seconds": med,
        "speedup_batched_over_loop": ratio,
        "same_result": {
            "chosen_restart": [fitted["batched"].fit_info_["chosen_restart"], fitted["loop"].fit_info_["chosen_restart"]],
            "cosine_between_directions": cos(fitted["batched"].direction_, fitted["loop"].direction_),
            "max_abs_restart_loss_diff": float((fitted["batched"].restart_losses_ - fitted["loop"].restart_losses_).abs().max()),
        },
        "cosine_to_planted_truth": cos(fitted["batched"].direction_, data.truth),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "cuda_device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None},
        "command": "python benchmarks/bench_ccs.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median: batched {med['batched']:.2f} s, loop {med['loop']:.2f} s -> batched is {ratio:.1f}x faster; wrote {out}")


if __name__ == "__main__":
    main()
