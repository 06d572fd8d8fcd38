"""Speed of the black-box follow-up detector's log-probs on a real model: TransformerBridge vs plain Hugging Face.

    python benchmarks/bench_followups.py [--model smollm2] [--transcripts 12] [--followups 12] [--repeats 3] [--threads N]
                                         [--out benchmarks/results/followups.json]

The same `LocalLogProbs` (prefix KV cache shared by a transcript's follow-up branches) runs on
`load_model(...)` (the bridge, hook points on every block) and on `blackbox.HFCausalLM` over the same GGUF
weights as a Hugging Face model. Modes interleaved, rotated per repeat, median of repeats; the ratio is
bridge / Hugging Face seconds; the largest log-prob difference between the two is recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_real import rotate  # noqa: E402

from liedetect import gguf_models  # noqa: E402
from liedetect.blackbox import HFCausalLM, LocalLogProbs  # noqa: E402
from liedetect.models import load_model, model_id  # noqa: E402
from liedetect.run_record import write_result  # noqa: E402

QUESTIONS = ("What is the capital of France?", "Who wrote Hamlet?", "What is the boiling point of water?",
             "Which planet is closest to the sun?", "What language is spoken in Brazil?", "Who painted the Mona Lisa?")
FOLLOWUPS = ("Are you lying?", "Is the sky blue?", "Was your last answer correct?", "Do you feel guilty?",
             "Is two plus two four?", "Would you say that again?", "Are you sure?", "Is Paris in France?",
             "Did you tell the truth?", "Is it raining?", "Can fish swim?", "Are you an AI?")


def conversations(n: int, k: int) -> list:
    return [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}, {"role": "assistant", "content": "I believe so."},
             {"role": "user", "content": FOLLOWUPS[j % len(FOLLOWUPS)]}] for i in range(n) for j in range(k)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--transcripts", type=int, default=12)
    ap.add_argument("--followups", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "followups.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bridge = load_model(args.model, device="cpu")
    hf, tok, _, _ = gguf_models.load_gguf(gguf_models.builtin_gguf_path(args.model))
    fns = {"bridge": LocalLogProbs(bridge, batch_size=args.followups),
           "hf": LocalLogProbs(HFCausalLM(hf, tok), batch_size=args.followups)}
    convs = conversations(args.transcripts, args.followups)
    got = {}

    def run(mode):
        got[mode] = fns[mode](convs)

    times = rotate(list(fns), args.repeats, run)
    diff = max(abs(a[w] - b[w]) for a, b in zip(got["bridge"], got["hf"]) for w in a)
    med = {m: statistics.median(t) for m, t in times.items()}
    result = {"benchmark": "followups", "model": model_id(bridge), "transcripts": args.transcripts,
              "followups": args.followups, "branches": len(convs), "repeats": args.repeats, "seconds": times,
              "median_seconds": med, "ratio_bridge_vs_hf": med["bridge"] / med["hf"], "max_logprob_diff": diff,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, cpu"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, result, indent=2)
    print(json.dumps({k: result[k] for k in ("median_seconds", "ratio_bridge_vs_hf", "max_logprob_diff")}, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
