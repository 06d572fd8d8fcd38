"""ITI on SmolLM2-135M-Instruct with TruthfulQA: per-head probes, heatmap, MC1/MC2 before and after across K and alpha.

Two-fold split by question (seed 0): heads are probed, ranked and given directions on fold A only (their own
validation split ranks them); MC1/MC2 and the LM loss on neutral text are measured on fold B questions.
CPU budget: a subset of each fold (--train-questions, --test-questions) and at most --max-answers answers per side.

    PYTHONPATH=. python experiments/iti_smollm2.py            # writes experiments/results/iti_smollm2.{json,png}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from liedetect.iti import (answer_texts, capture_heads, fit_iti, lm_loss, load_truthfulqa, mc_scores, paired_bootstrap,
                           plot_head_accuracies, two_fold)
from liedetect.models import load_model
from liedetect.steering.directions import NORM_TEXTS
from liedetect.run_record import write_result

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "truthfulqa" / "TruthfulQA.csv"
RESULTS = Path(__file__).resolve().parent / "results"


def run(model_name: str = "smollm2", data: Path = DATA, train_questions: int = 150, test_questions: int = 40,
        max_answers: int = 2, ks=(16, 48), alphas=(5.0, 15.0), seed: int = 0) -> dict:
    t0 = time.time()
    model = load_model(model_name)
    items = load_truthfulqa(data)
    fold_a, fold_b = two_fold(len(items), seed)
    rng = np.random.default_rng(seed)
    train = [items[i] for i in rng.permutation(fold_a)[:train_questions]]
    test = [items[i] for i in rng.permutation(fold_b)[:test_questions]]
    texts, labels, groups = answer_texts(train, per_side=1)
    acts = capture_heads(model, texts)
    iti = fit_iti(acts, labels, groups, k=max(ks), seed=seed)
    acc = iti.accuracies
    neutral = list(NORM_TEXTS)
    mc = lambda: mc_scores(model, test, max_answers=max_answers, per_question=True)  # noqa: E731
    rows = [{"k": 0, "alpha": 0.0, **mc(), "lm_loss": lm_loss(model, neutral)}]
    base = rows[0]
    print(rows[-1], flush=True)
    for k in ks:
        sub = type(iti)(iti.heads[:k], iti.directions[:k], iti.stds[:k], iti.alpha, acc)
        for alpha in alphas:
            with sub.apply(model, alpha=alpha):
                rows.append({"k": k, "alpha": alpha, **mc(), "lm_loss": lm_loss(model, neutral)})
            for m in ("mc1", "mc2"):  # paired over the same held-out questions
                rows[-1][f"{m}_delta"] = paired_bootstrap(base[f"{m}_each"], rows[-1][f"{m}_each"], seed=seed)
            print({k: v for k, v in rows[-1].items() if not k.endswith("_each")}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    png = plot_head_accuracies(acc, RESULTS / f"iti_{model_name}.png", f"ITI per-head probe accuracy, {model_name} (TruthfulQA fold A)")
    flat = np.sort(acc.ravel())[::-1]
    result = {"model": model_name, "seed": seed, "train_questions": len(train), "test_questions": len(test),
              "train_answers": int(len(labels)), "max_answers_per_side": max_answers, "prompt": "Q: {question}\\nA: {answer}",
              "top_heads": iti.heads[:10], "top_head_accuracy": [float(v) for v in flat[:10]],
              "median_head_accuracy": float(np.median(acc)), "val_questions": iti.meta["val_questions"],
              "accuracies": acc.round(4).tolist(), "rows": rows, "heatmap": png.name, "seconds": round(time.time() - t0, 1)}
    write_result((RESULTS / f"iti_{model_name}.json"), result, indent=1)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--train-questions", type=int, default=150)
    ap.add_argument("--test-questions", type=int, default=40)
    args = ap.parse_args()
    out = run(args.model, train_questions=args.train_questions, test_questions=args.test_questions)
    print(json.dumps({k: v for k, v in out.items() if k != "accuracies"}, indent=1))
