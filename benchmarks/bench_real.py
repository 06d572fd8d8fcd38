"""Speed on a real model (SmolLM2-135M by default): capture, scoring and steered generation against bare baselines.

    python benchmarks/bench_real.py [--model smollm2] [--device cpu|cuda] [--n 256] [--transcripts 24]
                                    [--new-tokens 32] [--repeats 3] [--out benchmarks/results/real.json]

Same process, modes interleaved (rotated per repeat), median of repeats; ratios are liedetect / baseline:
- capture: `extract` of one middle layer vs a bare forward stopped after that layer, over the same padded batches
  (target <= 1.05x in time);
- scoring: `score_transcripts` tokens/s vs a bare forward over exactly the scorer's batches, stopped at the probe
  layer (the floor) and full (what reading the transcript costs) (target >= 0.95x of the stopped one);
- steering: greedy generation with `add` steering at the middle layer (all positions) vs unsteered, tokens/s
  (target >= 0.97x).
Peak memory: the process's peak resident set (CPU) or torch's peak allocated memory (CUDA) after all runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.workload import FixedProbe as Probe, transcripts  # noqa: E402
from liedetect import scoring  # noqa: E402
from liedetect.activations import encode, extract, pad_batch  # noqa: E402
from liedetect.datasets import builtin, load_statements  # noqa: E402
from liedetect.models import load_model, model_id  # noqa: E402
from liedetect.steering import SteeringSpec, generate, steer  # noqa: E402
from liedetect.run_record import write_result  # noqa: E402

CITIES = ROOT.parent / "shared" / "data" / "truth_is_universal" / "cities.csv"




def statements(n: int):
    if CITIES.exists():
        return load_statements(CITIES).statements[:n], "cities.csv"
    return builtin("arithmetic", n=n).statements, "builtin:arithmetic (../shared absent)"



def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rotate(modes, repeats, run):
    """{mode: [seconds per repeat]} with the order rotated each repeat so no mode always runs first."""
    times = {m: [] for m in modes}
    for r in range(repeats):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            times[mode].append(timed(lambda: run(mode)))
            print(f"  repeat {r} {mode}: {times[mode][-1]:.2f}s", flush=True)
    return times


def bench_capture(model, texts, layer, batch_size, repeats, device):
    enc = encode(model, texts)
    order = sorted(range(len(texts)), key=lambda i: len(enc.ids[i]))
    pad = model.tokenizer.pad_token_id
    batches = [pad_batch([enc.ids[i] for i in order[s:s + batch_size]], pad) for s in range(0, len(order), batch_size)]

    def run(mode):
        if mode == "extract":
            extract(model, texts, layers=[layer], batch_size=batch_size, progress=False)
            return
        with torch.inference_mode():
            for ids, mask in batches:
                model(ids.to(device), attention_mask=mask.to(device), stop_at_layer=layer + 1)

    run("bare_stop")  # warm-up
    times = rotate(["bare_stop", "extract"], repeats, run)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"n_statements": len(texts), "tokens": sum(len(r) for r in enc.ids), "layer": layer, "seconds": times,
            "median_seconds": med, "ratio_extract_vs_bare_stop": med["extract"] / med["bare_stop"]}


def bench_scoring(model, data, layer, batch_size, repeats, device):
    tok = model.tokenizer
    encs = scoring.encode_all(tok, scoring.TranscriptSet(data, [], "bench"), ("assistant",), "auto", model.cfg.n_ctx,
                              "skip", strict=False)
    plan = scoring.plan_batches([len(e.ids) for e in encs], batch_size, 16384)
    batches = [pad_batch([encs[i].ids for i in b], tok.pad_token_id) for b in plan]
    real_tokens = sum(len(e.ids) for e in encs)
    probe = Probe(model.cfg.d_model, layer)
    stop = layer + 1 if layer + 1 < model.cfg.n_layers else None

    with tempfile.TemporaryDirectory() as tmp:
        def run(mode):
            if mode == "score":
                scoring.score_transcripts(model, probe, data, out=Path(tmp) / "s.jsonl", batch_size=batch_size,
                                          progress=False)
                return
            with torch.inference_mode():
                for ids, mask in batches:
                    model(ids.to(device), attention_mask=mask.to(device), stop_at_layer=stop if mode == "bare_stop" else None)

        scoring.score_transcripts(model, probe, data[:4], progress=False)  # warm-up
        times = rotate(["bare_stop", "score", "bare_full"], repeats, run)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: real_tokens / v for k, v in med.items()}
    return {"n_transcripts": len(data), "real_tokens": real_tokens,
            "padded_tokens": sum(int(ids.numel()) for ids, _ in batches), "layer": layer, "seconds": times,
            "tokens_per_s": tps, "ratio_vs_bare_stop": tps["score"] / tps["bare_stop"],
            "ratio_vs_bare_full": tps["score"] / tps["bare_full"]}


def bench_steering(model, new_tokens, repeats):
    prompt = model.tokenizer.apply_chat_template([{"role": "user", "content": "Tell me about the city of Paris."}],
                                                 tokenize=False, add_generation_prompt=True)
    layer = model.cfg.n_layers // 2
    d = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    spec = SteeringSpec.from_tensor(d, [layer], alpha=4.0, scale="norm").calibrate(model)
    texts = {}

    def run(mode):
        with steer(model, spec) if mode == "steered" else contextlib.nullcontext():
            with torch.no_grad():
                toks = model.tokenizer(prompt, return_tensors="pt")["input_ids"].to(next(model.parameters()).device)
                out = model.generate(toks, max_new_tokens=new_tokens, do_sample=False, verbose=False,
                                     use_past_kv_cache=True, stop_at_eos=False, return_type="tokens")
        texts[mode] = model.tokenizer.decode(out[0, toks.shape[1]:])

    generate(model, prompt, max_new_tokens=4)  # warm-up (and the version check)
    times = rotate(["unsteered", "steered"], repeats, run)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: new_tokens / v for k, v in med.items()}
    return {"new_tokens": new_tokens, "layer": layer, "seconds": times, "tokens_per_s": tps,
            "ratio_steered_vs_unsteered": tps["steered"] / tps["unsteered"], "sample": texts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=256, help="statements for the capture benchmark")
    ap.add_argument("--transcripts", type=int, default=24)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device)
    load_s = time.perf_counter() - t0
    device = next(model.parameters()).device
    layer = model.cfg.n_layers // 2
    texts, source = statements(args.n)
    print(f"{model_id(model)} on {device}, loaded in {load_s:.1f}s")
    result = {"benchmark": "real", "model": model_id(model), "device": str(device), "load_seconds": load_s,
              "from_cache": getattr(model, "liedetect_source", {}).get("from_cache"), "repeats": args.repeats,
              "batch_size": args.batch_size, "data": source}
    print("capture"); result["capture"] = bench_capture(model, texts, layer, args.batch_size, args.repeats, device)
    print("scoring"); result["scoring"] = bench_scoring(model, transcripts(args.transcripts), layer, 16, args.repeats, device)
    print("steering"); result["steering"] = bench_steering(model, args.new_tokens, args.repeats)
    if device.type == "cuda":
        result["peak_memory_mib"] = {"cuda_max_allocated": torch.cuda.max_memory_allocated() / 2**20}
    result["peak_memory_mib"] = {**result.get("peak_memory_mib", {}),
                                 "process_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    result["machine"] = (f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
                         f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, result, indent=2)
    print(json.dumps({"capture_ratio": result["capture"]["ratio_extract_vs_bare_stop"],
                      "scoring_ratio_vs_bare_stop": result["scoring"]["ratio_vs_bare_stop"],
                      "steering_ratio": result["steering"]["ratio_steered_vs_unsteered"],
                      "peak_memory_mib": result["peak_memory_mib"]}, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
