"""Capture at a real shape: Llama-3.2-1B's config (16 layers, d 2048, GQA 32/8) with random weights in bfloat16.

    python benchmarks/bench_scale.py [--repeats 3] [--n 8] [--tokens 128] [--threads 1]

Time, in one process, modes interleaved, median of repeats (the same token ids for every mode), as wall seconds
and as process CPU seconds (one torch thread: the CPU seconds are the work done, and stay put when other jobs
share the cores, which wall seconds do not):
  extract_one  liedetect.extract of the last block (layer 15)  vs  bare_stop: transformers' own LlamaModel with
               its layer list cut after that block (a plain copy of the same weights, same eager attention);
  extract_all  liedetect.extract of all 16 layers  vs  bare_hidden: transformers' forward with output_hidden_states.
Memory: a fresh subprocess runs one mode twice while a thread samples its resident set; the peak of the second
run above the level before it (the weights are loaded by then) is reported for extract of 1, 4 and 16 layers (the
last k blocks, so every run goes through all 16) against the bare forwards. The first run is timed as a first call
(and its peak kept as first_call_peak_extra_mib: it holds one-off allocations of the process).
Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_capture import peak_extra_rss  # noqa: E402
from liedetect.activations import encode, extract, pad_batch  # noqa: E402

import shapes  # noqa: E402

CITIES = ROOT.parent / "shared" / "data" / "truth_is_universal" / "cities.csv"
TIMED = ("bare_stop", "extract_one", "bare_hidden", "extract_all")
MEMORY = ("bare_plain", "bare_hidden", "extract_1", "extract_4", "extract_16")
# glibc keeps freed blocks under a threshold that grows to 32 MiB; a fixed 128 KiB one hands every large tensor
# back to the system when it is freed, so the resident set follows the live tensors instead of malloc's history.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def make_texts(tok, n: int, tokens: int):
    """n texts of `tokens` tokens each, cut from cities.csv (or a fixed sentence when ../shared is absent)."""
    source = CITIES.read_text() if CITIES.exists() else "The city of Paris is in France. " * 2000
    ids = tok(source)["input_ids"]
    texts = [tok.decode(ids[k * tokens:(k + 1) * tokens]) for k in range(n)]
    return texts, "cities.csv" if CITIES.exists() else "synthetic"


def bare_stop(bare, ids, mask, layer: int) -> None:
    """transformers' LlamaModel with its layers cut after `layer` (final norm only, no unembedding)."""
    full = bare.model.layers
    bare.model.layers = torch.nn.ModuleList(list(full)[:layer + 1])
    try:
        bare.model(input_ids=ids, attention_mask=mask)
    finally:
        bare.model.layers = full


def run(mode: str, bridge, bare, texts, ids, mask, n_layers: int) -> None:
    """One mode over all texts as one batch."""
    with torch.inference_mode():
        if mode == "bare_stop":
            bare_stop(bare, ids, mask, n_layers - 1)
        elif mode == "bare_hidden":
            bare(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        elif mode == "bare_plain":
            bare(input_ids=ids, attention_mask=mask)
        elif mode == "extract_one":
            extract(bridge, texts, layers=[n_layers - 1], batch_size=len(texts), progress=False)
        elif mode == "extract_all":
            extract(bridge, texts, layers="all", batch_size=len(texts), progress=False)
        elif mode.startswith("extract_"):
            k = int(mode.split("_")[1])
            extract(bridge, texts, layers=list(range(n_layers - k, n_layers)), batch_size=len(texts), progress=False)
        else:
            raise ValueError(mode)


def build(args):
    """The tokenizer, texts, both models (two copies of the weights) and the token ids every mode reads."""
    tok = shapes.tokenizer()
    texts, source = make_texts(tok, args.n, args.tokens)
    bridge, bare = shapes.bridge_and_bare("1b", torch.bfloat16, "cpu", tok)
    ids, mask = pad_batch(encode(bridge, texts).ids, tok.pad_token_id)
    return tok, texts, source, bridge, bare, ids, mask


def memory_child(args) -> None:
    """One mode, once, in this fresh process: peak resident memory above the level with the weights loaded."""
    import gc

    torch.set_num_threads(args.threads)
    _, texts, _, bridge, bare, ids, mask = build(args)
    if args.memory_of.startswith("extract"):
        bare = None
    else:
        bridge = None
    gc.collect()
    start = time.perf_counter()
    first = peak_extra_rss(lambda: run(args.memory_of, bridge, bare, texts, ids, mask, 16))
    seconds_first = time.perf_counter() - start
    gc.collect()
    start = time.perf_counter()
    out = peak_extra_rss(lambda: run(args.memory_of, bridge, bare, texts, ids, mask, 16))
    out.update(seconds_first_call=seconds_first, seconds_second_call=time.perf_counter() - start,
               first_call_peak_extra_mib=first["peak_extra_mib"])
    print(json.dumps(out))


def per_repeat(times, mode: str, base: str) -> float:
    """Median over repeats of mode / base within the same repeat."""
    return statistics.median(a / b for a, b in zip(times[mode], times[base]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-of", choices=MEMORY)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = parser.parse_args()
    if args.memory_of:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    tok, texts, source, bridge, bare, ids, mask = build(args)
    build_s = time.perf_counter() - t0
    n_layers = bridge.cfg.n_layers
    run("bare_plain", bridge, bare, texts, ids[:1, :16], mask[:1, :16], n_layers)  # warm-up
    run("extract_one", bridge, bare, texts[:1], ids, mask, n_layers)
    times = {m: [] for m in TIMED}
    cpu = {m: [] for m in TIMED}  # process CPU seconds: with one torch thread, the work done, whatever the load
    for r in range(args.repeats):
        for mode in TIMED[r % len(TIMED):] + TIMED[:r % len(TIMED)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            run(mode, bridge, bare, texts, ids, mask, n_layers)
            times[mode].append(time.perf_counter() - start)
            cpu[mode].append(time.process_time() - start_cpu)
            print(f"repeat {r} {mode}: {times[mode][-1]:.2f}s wall, {cpu[mode][-1]:.2f}s cpu", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    med_cpu = {m: statistics.median(v) for m, v in cpu.items()}
    del bridge, bare
    memory = {}
    for mode in MEMORY:
        proc = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--tokens", str(args.tokens),
                               "--threads", str(args.threads), "--memory-of", mode],
                              capture_output=True, text=True, check=True, env={**os.environ, **MALLOC})
        memory[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"memory {mode}: {memory[mode]}", flush=True)
    peak = {m: round(v["peak_extra_mib"], 1) for m, v in memory.items()}
    result = {
        "benchmark": "scale", "data": source, "texts": args.n, "tokens_per_text": int(mask.sum(1).max()),
        "model": "Llama-3.2-1B config (16 layers, d 2048, GQA 32/8, tied embeddings), random weights, bfloat16, "
                 f"GPT-2 tokenizer (vocab {len(tok)}), eager attention in both",
        "repeats": args.repeats, "threads": args.threads, "build_seconds": round(build_s, 1),
        "seconds": times, "median_seconds": med, "cpu_seconds": cpu, "median_cpu_seconds": med_cpu,
        "cpu_ratio_extract_one_vs_bare_stop": med_cpu["extract_one"] / med_cpu["bare_stop"],
        "cpu_ratio_extract_all_vs_bare_hidden": med_cpu["extract_all"] / med_cpu["bare_hidden"],
        "ratio_extract_one_vs_bare_stop": med["extract_one"] / med["bare_stop"],
        "ratio_extract_all_vs_bare_hidden": med["extract_all"] / med["bare_hidden"],
        "median_of_per_repeat_ratios": {  # each repeat's pair ran minutes apart at most: robust to a drifting load
            "extract_one_vs_bare_stop": per_repeat(times, "extract_one", "bare_stop"),
            "extract_all_vs_bare_hidden": per_repeat(times, "extract_all", "bare_hidden")},
        "peak_extra_rss_mib": peak,
        "ratio_peak_extract_vs_bare_plain": {k: peak[f"extract_{k}"] / peak["bare_plain"] for k in (1, 4, 16)},
        "seconds_first_and_second_call": {m: [round(v["seconds_first_call"], 2), round(v["seconds_second_call"], 2)]
                                          for m, v in memory.items()},
        "first_call_peak_extra_rss_mib": {m: round(v["first_call_peak_extra_mib"], 1) for m, v in memory.items()},
        "load_average_before_after": [load_before, os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_seconds", "median_cpu_seconds",
                                              "cpu_ratio_extract_one_vs_bare_stop",
                                              "cpu_ratio_extract_all_vs_bare_hidden", "ratio_extract_one_vs_bare_stop",
                                              "ratio_extract_all_vs_bare_hidden", "median_of_per_repeat_ratios",
                                              "peak_extra_rss_mib",
                                              "ratio_peak_extract_vs_bare_plain")}, indent=2))


if __name__ == "__main__":
    main()
