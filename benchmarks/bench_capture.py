"""Capture speed: liedetect.extract of one middle layer against a bare forward stopped at that layer and
against TransformerLens run_with_cache of every hook over the full model. GPT-2-small shape, random weights.

    python benchmarks/bench_capture.py [--n 1496] [--repeats 3]

Writes benchmarks/results/capture.json. Ratios come from the same process, modes interleaved, median of repeats.
Peak memory: a fresh subprocess runs each mode once while a thread samples its resident set; the peak above
the level before the run is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liedetect.activations import encode, extract, pad_batch  # noqa: E402
from liedetect.datasets import builtin, load_statements  # noqa: E402
from liedetect.models import random_gpt2  # noqa: E402
from liedetect.run_record import write_result  # noqa: E402

CITIES = ROOT.parent / "shared" / "data" / "truth_is_universal" / "cities.csv"
GPT2_DIR = ROOT.parent / "shared" / "tokenizers" / "gpt2"  # GPT-2's tokenizer and config for the random model


def statements(n: int):
    if CITIES.exists():
        return load_statements(CITIES).statements[:n], "cities.csv"
    return builtin("arithmetic", n=n).statements, "builtin:arithmetic (../shared absent)"


def batches(model, texts, batch_size):
    enc = encode(model, texts)
    order = sorted(range(len(texts)), key=lambda i: len(enc.ids[i]))
    pad = model.tokenizer.pad_token_id
    return [pad_batch([enc.ids[i] for i in order[s:s + batch_size]], pad) for s in range(0, len(order), batch_size)]


def run_mode(mode, model, texts, layer, batch_size):
    if mode == "extract":
        extract(model, texts, layers=[layer], batch_size=batch_size, progress=False)
        return
    with torch.inference_mode():
        for ids, mask in batches(model, texts, batch_size):
            if mode == "bare_stop":
                model(ids, attention_mask=mask, stop_at_layer=layer + 1)
            elif mode == "cache_all":
                _, cache = model.run_with_cache(ids, attention_mask=mask)
                del cache
            else:
                raise ValueError(mode)


MODES = ("bare_stop", "extract", "cache_all")


def peak_extra_rss(fn) -> dict:
    """Run fn while sampling resident memory; report the peak above the level before it started (MiB)."""
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fn()
    stop.set()
    thread.join()
    return {"before_mib": before / 2**20, "peak_extra_mib": (peak[0] - before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1496)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-of", choices=MODES)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "capture.json"))
    args = parser.parse_args()
    texts, source = statements(args.n)
    model = random_gpt2(GPT2_DIR, seed=0)
    if args.memory_of:
        print(json.dumps(peak_extra_rss(lambda: run_mode(args.memory_of, model, texts, args.layer, args.batch_size))))
        return
    run_mode("bare_stop", model, texts[:64], args.layer, args.batch_size)  # warm-up
    times = {m: [] for m in MODES}
    for r in range(args.repeats):
        for mode in MODES[r % 3:] + MODES[:r % 3]:
            start = time.perf_counter()
            run_mode(mode, model, texts, args.layer, args.batch_size)
            times[mode].append(time.perf_counter() - start)
            print(f"repeat {r} {mode}: {times[mode][-1]:.2f}s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    memory = {}
    for mode in MODES:
        proc = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--layer", str(args.layer),
                               "--memory-of", mode], capture_output=True, text=True, check=True)
        memory[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {
        "benchmark": "capture", "data": source, "n_statements": len(texts), "layer": args.layer,
        "model": "GPT-2-small shape, random weights", "batch_size": args.batch_size, "repeats": args.repeats,
        "seconds": times, "median_seconds": med,
        "ratio_extract_vs_bare_stop": med["extract"] / med["bare_stop"],
        "ratio_extract_vs_cache_all": med["extract"] / med["cache_all"],
        "peak_extra_rss_mib": {m: round(v["peak_extra_mib"], 1) for m, v in memory.items()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(Path(args.out), result, indent=2)
    print(json.dumps({k: result[k] for k in ("median_seconds", "ratio_extract_vs_bare_stop",
                                              "ratio_extract_vs_cache_all", "peak_extra_rss_mib")}, indent=2))


if __name__ == "__main__":
    main()
