"""Black-box lie detection by follow-up questions (Pacchiardi et al. 2024) on SmolLM2, and on the organism beside
the white-box truth-probe detector on the same transcripts.

SmolLM2: per question of questions_1000_all.json one honest transcript (user: question, assistant: the true
answer) and one lie (the false answer written into the assistant turn); each follow-up of probes.csv is asked
in its own branch (the tokenizer's chat template), its yes/no log-odds read; a logistic regression is fitted on
half the questions and evaluated on the other half (AUROC with a 95% bootstrap interval, recall at 1% FPR).

Organism (no chat template, a word-level vocabulary: the "conversation" is its own prompt format, contents joined
by spaces; follow-up questions are world statements `<statement> Answer:`, read as True vs False log-odds):
own lies (honest vs liar persona, the organism's own greedy answer) and inserted lies (honest persona, the false
answer written in). Train on train-entity transcripts, evaluate on held-out entities; the white-box detector is a
logistic truth probe at the organism's truth layer (3) read at `Answer:` and compared with the given answer.

    PYTHONPATH=. python experiments/blackbox_smollm2.py [--questions 50] [--followups 24] [--skip-smollm2] [--skip-organism]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from liedetect.blackbox import (FollowupDetector, LocalLogProbs, detection_report, followup_features, inserted_transcripts,
                                load_followups, load_questions, split_by_group)
from liedetect.models import load_model
from liedetect.run_record import write_result

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pacchiardi"
RESULTS = Path(__file__).resolve().parent / "results"


def smollm2_run(n_questions: int = 50, n_followups: int = 24, seed: int = 0, max_chars: int = 300) -> dict:
    t0 = time.time()
    model = load_model("smollm2")
    all_followups = load_followups(DATA / "probes.csv")
    followups = [q for q in all_followups if len(q) <= max_chars]  # CPU budget: the 'Verbose' ones run to ~250 tokens each
    qs = load_questions(DATA / "questions_1000_all.json")
    rng = np.random.default_rng(seed)
    if n_followups < len(followups):  # a seeded random subset: the file is ordered by question type
        followups = [followups[i] for i in sorted(rng.choice(len(followups), n_followups, replace=False))]
    chosen = [qs[i] for i in rng.permutation(len(qs))[:n_questions]]
    convs, lies, groups = inserted_transcripts(chosen)
    fn = LocalLogProbs(model, batch_size=33)
    x = followup_features(fn, convs, followups, chunk=len(followups),
                          progress=lambda i, n: print(f"{i}/{n} branches, {time.time() - t0:.0f}s", flush=True))
    train, test = split_by_group(groups, 0.5, seed)
    det = FollowupDetector.fit(x[train], lies[train], followups)
    report = detection_report(lies[test], det.score(x[test]), n_boot=1000, seed=seed)
    # the single most direct follow-up, no training: "Is the previous statement accurate?" (yes = honest)
    accurate = [q for q in all_followups if "previous statement accurate" in q][:1]  # fixed a priori, no training
    acc_x = followup_features(fn, convs, accurate) if accurate else None
    single = detection_report(lies[test], -acc_x[test][:, 0], n_boot=1000, seed=seed) if accurate else None
    order = np.argsort(-np.abs(det.coef))[:5]
    result = {"model": "smollm2", "seed": seed, "n_questions": n_questions, "n_followups": len(followups), "followups": followups,
              "followup_pool": f"{sum(len(q) <= max_chars for q in all_followups)} of {len(all_followups)} (at most {max_chars} characters)",
              "train_transcripts": int(train.sum()), "test_transcripts": int(test.sum()), "held_out": report,
              "previous_statement_accurate_alone": single,
              "top_followups": [{"question": followups[i], "coef": float(det.coef[i])} for i in order],
              "seconds": round(time.time() - t0, 1)}
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / "blackbox_smollm2.json"), result, indent=1)
    return result


def organism_run(n: int = 150, n_followups: int = 16, seed: int = 0) -> dict:
    from liedetect.organism.detect import capture, fit_truth_probe, lie_scores

    t0 = time.time()
    model = load_model("organism")
    world = model.organism_world
    follow = [p.text.split("] ", 1)[-1] for p in world.prompts(n_followups, split="train", persona="honest", seed=99)]
    fn = LocalLogProbs(model, ("True", "False"))
    kw = dict(yes=("True",), no=("False",))
    train_probe = capture(model, world.prompts(600, split="train", seed=seed + 1), layers=[3])
    probe = fit_truth_probe("lr", train_probe, 3, seed=seed)

    def own(split, s):  # honest and liar persona prompts with the organism's own answer
        prompts = world.prompts(n, split=split, persona="honest", seed=s) + world.prompts(n, split=split, persona="liar", seed=s)
        data = capture(model, prompts, layers=[3])
        return prompts, data.said_true, data

    def inserted(split, s):  # honest persona, half the answers written in false
        prompts = world.prompts(2 * n, split=split, persona="honest", seed=s)
        data = capture(model, prompts, layers=[3])
        flip = np.random.default_rng(s).random(len(prompts)) < 0.5
        written = np.array([p.truth for p in prompts]) ^ flip
        return prompts, written, data

    out = {"model": "organism", "n_per_side": n, "n_followups": n_followups, "white_box": "LR truth probe, layer 3, at 'Answer:'"}
    for name, make in (("own_lies", own), ("inserted_lies", inserted)):
        sides = {}
        for split, s in (("train", seed + 10), ("heldout", seed + 20)):
            prompts, said, data = make(split, s)
            convs = [[{"role": "user", "content": p.text}, {"role": "assistant", "content": "True" if t else "False"}]
                     for p, t in zip(prompts, said)]
            lies = (np.asarray(said, dtype=bool) != np.array([p.truth for p in prompts])).astype(int)
            sides[split] = (followup_features(fn, convs, follow, **kw), lies, data, said)
        (xtr, ytr, _, _), (xte, yte, dte, said_te) = sides["train"], sides["heldout"]
        det = FollowupDetector.fit(xtr, ytr, follow)
        white = lie_scores(probe.predict_proba(dte.layer(3)), np.asarray(said_te, dtype=bool))
        out[name] = {"black_box": detection_report(yte, det.score(xte), n_boot=1000, seed=seed),
                     "white_box": detection_report(yte, white, n_boot=1000, seed=seed)}
    out["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / "blackbox_organism.json"), out, indent=1)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--followups", type=int, default=24)
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--skip-organism", action="store_true")
    args = ap.parse_args()
    if not args.skip_organism:
        print(json.dumps(organism_run(), indent=1))
    if not args.skip_smollm2:
        print(json.dumps(smollm2_run(args.questions, args.followups), indent=1))
