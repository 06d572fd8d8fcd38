"""The small benchmark run on SmolLM2 (no Apollo data on this machine): writes its inputs, runs
experiments/bench_smollm2.yaml, prints the table. Usage: LIEDETECT_DATA=../shared/data python experiments/bench_smollm2.py

Inputs written under out/bench_smollm2/ (never committed): capital-city chats (`detector examples --kind
capitals`) and TruthfulQA's 817 best answers as honest control chats (question, then the best answer).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from liedetect.benchmarks.bench import run_bench
from liedetect.example_chats import write_examples

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench_smollm2"


def main() -> None:
    data = Path(os.environ.setdefault("LIEDETECT_DATA", str(ROOT.parent / "shared" / "data")))
    write_examples(OUT / "capitals", "capitals", seed=0)
    with (data / "truthfulqa" / "TruthfulQA.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with (OUT / "truthfulqa_control.jsonl").open("w", encoding="utf-8") as fh:
        for k, r in enumerate(rows):
            fh.write(json.dumps({"id": f"tqa-{k}", "label": "honest", "messages": [
                {"role": "user", "content": r["Question"]}, {"role": "assistant", "content": r["Best Answer"]}]}) + "\n")
    for row in run_bench(ROOT / "experiments" / "bench_smollm2.yaml", progress=True, echo=print):
        print({k: row[k] for k in ("recipe", "dataset", "auroc", "auroc_lo", "auroc_hi", "auroc_vs_control",
                                   "recall_1pct", "fpr_1pct", "recall_0_2pct", "fpr_0_2pct")})


if __name__ == "__main__":
    main()
