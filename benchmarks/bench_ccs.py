"""CCS restarts: one batched tensor program against a one-restart-at-a-time loop, in the same run.

    python benchmarks/bench_ccs.py [--n 2000] [--d 768] [--restarts 10] [--steps 1000] [--repeats 3]
                                   [--threads 1] [--device cpu]

Four modes, interleaved, median of the repeats (the first three with Burns et al.'s AdamW recipe):
- ``batched``: ``CCSProbe(batched=True)``, all restarts as one [R, d] program with a hand-written gradient;
- ``loop``: ``CCSProbe(batched=False)``, the identical program run one restart at a time (the strict baseline:
  same kernel, same update, same result);
- ``loop-autograd``: one restart at a time the way reference implementations train CCS (a weight and bias
  with ``requires_grad``, the loss through autograd, ``torch.optim.AdamW``), from the same normalised pairs
  and initial weights (the recorded lowest loss must agree);
- ``lbfgs``: the default optimiser, batched L-BFGS (``probes.lbfgs``, at most 200 iterations), against ``batched``.
Writes benchmarks/results/ccs.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes import CCSProbe  # noqa: E402
from probes.ccs import ccs_loss  # noqa: E402
from probes.synthetic import planted_pairs  # noqa: E402
from liedetect.run_record import write_result  # noqa: E402


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()) / (a.double().norm() * b.double().norm()))


def autograd_loop(probe: CCSProbe, X_pos: torch.Tensor, X_neg: torch.Tensor) -> list[float]:
    """Each restart alone through autograd + torch.optim.AdamW; returns the final loss of each restart."""
    xp, xn = X_pos.float(), X_neg.float()
    zp = (xp - xp.mean(0)) / xp.std(0, unbiased=False).clamp_min(1e-6)
    zn = (xn - xn.mean(0)) / xn.std(0, unbiased=False).clamp_min(1e-6)
    d = zp.shape[1]
    W0 = torch.randn(probe.n_restarts, d, generator=torch.Generator().manual_seed(probe.seed)) / d**0.5
    finals = []
    for r in range(probe.n_restarts):
        w = W0[r:r + 1].clone().requires_grad_(True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.AdamW([w, b], lr=probe.lr, weight_decay=probe.weight_decay)
        for _ in range(probe.n_steps):
            opt.zero_grad()
            loss = ccs_loss(zp, zn, w, b).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            finals.append(float(ccs_loss(zp, zn, w, b)[0]))
    return finals


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
    kw = dict(n_restarts=args.restarts, n_steps=args.steps, device=args.device, seed=0, optimizer="adam")
    times: dict[str, list[float]] = {"batched": [], "loop": [], "loop-autograd": [], "lbfgs": []}
    fitted = {}
    CCSProbe(**{**kw, "n_steps": 20}).fit(data.X, data.X_neg, data.y)  # warm-up
    for rep in range(args.repeats):
        for mode in times:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            if mode == "loop-autograd":
                autograd_finals = autograd_loop(CCSProbe(**kw), data.X.to(args.device), data.X_neg.to(args.device))
            elif mode == "lbfgs":  # the default optimiser: batched L-BFGS, at most 200 iterations
                fitted[mode] = CCSProbe(**{**kw, "optimizer": "lbfgs", "n_steps": None}).fit(data.X, data.X_neg, data.y)
            else:
                fitted[mode] = CCSProbe(batched=(mode == "batched"), **kw).fit(data.X, data.X_neg, data.y)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[mode].append(time.perf_counter() - t0)
            print(f"repeat {rep + 1}/{args.repeats} {mode:<8} {times[mode][-1]:8.2f} s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    ratio = med["loop"] / med["batched"]
    ratio_autograd = med["loop-autograd"] / med["batched"]
    result = {
        "benchmark": "ccs_restarts_batched_vs_loop",
        "config": {"n_pairs": args.n, "d": args.d, "restarts": args.restarts, "steps": args.steps,
                   "repeats": args.repeats, "threads": args.threads, "device": args.device},
        "seconds": times,
        "median_seconds": med,
        "speedup_batched_over_loop": ratio,
        "speedup_batched_over_autograd_loop": ratio_autograd,
        "speedup_lbfgs_over_adam_batched": med["batched"] / med["lbfgs"],
        "lbfgs": {"iterations": int(fitted["lbfgs"].loss_curve_.shape[0] - 1),
                  "final_loss": fitted["lbfgs"].fit_info_["final_loss"], "adam_final_loss": fitted["batched"].fit_info_["final_loss"],
                  "cosine_to_adam": cos(fitted["lbfgs"].direction_, fitted["batched"].direction_)},
        "same_result": {
            "chosen_restart": [fitted["batched"].fit_info_["chosen_restart"], fitted["loop"].fit_info_["chosen_restart"]],
            "cosine_between_directions": cos(fitted["batched"].direction_, fitted["loop"].direction_),
            "max_abs_restart_loss_diff": float((fitted["batched"].restart_losses_ - fitted["loop"].restart_losses_).abs().max()),
            "max_abs_restart_loss_diff_autograd": float((fitted["batched"].restart_losses_ - torch.tensor(autograd_finals)).abs().max()),
        },
        "cosine_to_planted_truth": cos(fitted["batched"].direction_, data.truth),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "cuda_device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None},
        "command": "python benchmarks/bench_ccs.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, result, indent=2)
    print(f"median: batched {med['batched']:.2f} s, loop {med['loop']:.2f} s ({ratio:.1f}x), "
          f"autograd loop {med['loop-autograd']:.2f} s ({ratio_autograd:.1f}x); wrote {out}")


if __name__ == "__main__":
    main()
