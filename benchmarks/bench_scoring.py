"""Scoring throughput: `liedetect.scoring.score_transcripts` end to end (render, tokenize, exact token
ranges, batched forward stopped at the probe layer, probe, JSONL streamed to disk) against a bare forward
over the same padded batches. GPT-2-small shape, random weights.

    python benchmarks/bench_scoring.py [--n 48] [--max-words 120] [--repeats 3] [--layers 11,5]

Baselines, each over exactly the batches the scorer forms:
- bare_full: ``model(ids, attention_mask=mask)``, all 12 blocks and the unembedding (what reading a transcript costs).
- bare_stop: ``model(ids, attention_mask=mask, stop_at_layer=layer + 1)``, no hooks (the floor for this layer).
Tokens/s counts real (unpadded) tokens. Modes interleaved, median of repeats, same process.
Writes benchmarks/results/scoring.json.
"""

from __future__ import annotations

import argparse
import platform
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
from liedetect.activations import pad_batch  # noqa: E402
from liedetect.models import random_gpt2  # noqa: E402
from liedetect.run_record import write_result  # noqa: E402

GPT2_DIR = ROOT.parent / "shared" / "tokenizers" / "gpt2"  # GPT-2's tokenizer and config for the random model






def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--max-words", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layers", default="11,5")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scoring.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    model = random_gpt2(GPT2_DIR, seed=0)
    data = transcripts(args.n, max_words=args.max_words)
    tok = model.tokenizer
    encs = scoring.encode_all(tok, scoring.TranscriptSet(data, [], "bench"), ("assistant",), "auto",
                              model.cfg.n_ctx, "skip", strict=False)
    plan = scoring.plan_batches([len(e.ids) for e in encs], args.batch_size, 16384)
    batches = [pad_batch([encs[i].ids for i in b], tok.pad_token_id) for b in plan]
    real_tokens = sum(len(e.ids) for e in encs)
    padded_tokens = sum(int(ids.numel()) for ids, _ in batches)
    results = {"config": {"model": "GPT-2-small shape, random weights (12 layers, d=768)", "n_transcripts": args.n,
                          "real_tokens": real_tokens, "padded_tokens": padded_tokens, "batch_size": args.batch_size,
                          "repeats": args.repeats, "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "device": "cpu", "machine": platform.machine(), "python": platform.python_version()},
               "layers": {}}

    def bare(stop):
        with torch.inference_mode():
            for ids, mask in batches:
                model(ids, attention_mask=mask, stop_at_layer=stop)

    for layer in [int(x) for x in args.layers.split(",")]:
        probe = Probe(model.cfg.d_model, layer)
        times = {"score": [], "bare_full": [], "bare_stop": []}
        with tempfile.TemporaryDirectory() as tmp:
            scoring.score_transcripts(model, probe, data[:8], progress=False)  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                scoring.score_transcripts(model, probe, data, out=Path(tmp) / "s.jsonl", batch_size=args.batch_size,
                                          progress=False)
                times["score"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                bare(None)
                times["bare_full"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                bare(layer + 1 if layer + 1 < model.cfg.n_layers else None)
                times["bare_stop"].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        tps = {k: real_tokens / v for k, v in med.items()}
        results["layers"][str(layer)] = {
            "seconds_median": med, "seconds_all": times, "tokens_per_s": tps,
            "ratio_vs_bare_full": tps["score"] / tps["bare_full"],
            "ratio_vs_bare_stop": tps["score"] / tps["bare_stop"]}
        print(f"layer {layer}: scoring {tps['score']:,.0f} tok/s, bare full forward {tps['bare_full']:,.0f} tok/s "
              f"({tps['score'] / tps['bare_full']:.2f}x), bare forward stopped at the layer {tps['bare_stop']:,.0f} tok/s "
              f"({tps['score'] / tps['bare_stop']:.2f}x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, results, indent=2)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
