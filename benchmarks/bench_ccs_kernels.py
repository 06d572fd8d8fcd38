"""Why batching CCS restarts gains what it gains on a CPU: one R-row matrix product vs R matrix-vector products.

    python benchmarks/bench_ccs_kernels.py [--n 2000] [--d 768] [--restarts 10] [--threads 1] [--repeats 7]

The batched CCS step is two products with the stacked pairs Z [2n, d]: logits W @ Z.T ([R, d] x [d, 2n])
and the gradient g @ Z ([R, 2n] x [2n, d]). One restart at a time does the same with R = 1, i.e. two
matrix-vector products, R times. This times both (median of repeats, interleaved) and reports the
throughput of each, so the ceiling on the batched speed-up from the arithmetic alone is on record.
Writes benchmarks/results/ccs_kernels.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from liedetect.run_record import write_result


def _time(fn, calls: int) -> float:
    """Seconds per call of `fn`, averaged over `calls` calls."""
    fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="contrast pairs (Z has 2n rows)")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ccs_kernels.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    R, m, d = args.restarts, 2 * args.n, args.d
    Z = torch.randn(m, d, generator=gen)
    ZT = Z.T.contiguous()
    W = torch.randn(R, d, generator=gen)
    g = torch.randn(R, m, generator=gen)

    def batched() -> None:
        W @ ZT
        g @ Z

    def one_at_a_time() -> None:
        for r in range(R):
            W[r] @ ZT
            g[r] @ Z

    times: dict[str, list[float]] = {"batched_products": [], "one_restart_at_a_time_products": []}
    for _ in range(args.repeats):
        times["batched_products"].append(_time(batched, args.calls))
        times["one_restart_at_a_time_products"].append(_time(one_at_a_time, args.calls))
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = 2 * 2 * R * m * d  # two products, each 2*R*m*d
    result = {
        "benchmark": "ccs_step_products",
        "config": vars(args),
        "median_ms_per_step": {k: round(v * 1e3, 3) for k, v in med.items()},
        "gflops": {k: round(flops / v / 1e9, 1) for k, v in med.items()},
        "arithmetic_speedup_ceiling": round(med["one_restart_at_a_time_products"] / med["batched_products"], 2),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, result, indent=2)
    print(f"per step: batched {result['median_ms_per_step']['batched_products']} ms "
          f"({result['gflops']['batched_products']} GFLOP/s), one restart at a time "
          f"{result['median_ms_per_step']['one_restart_at_a_time_products']} ms "
          f"({result['gflops']['one_restart_at_a_time_products']} GFLOP/s): batching gains at most "
          f"{result['arithmetic_speedup_ceiling']}x on the products; wrote {out}")


if __name__ == "__main__":
    main()
