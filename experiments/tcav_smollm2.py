"""TCAV on SmolLM2-135M-Instruct: is the cities truth direction used to answer " True" vs " False"?

A logistic probe (probes/ 'lr') is fitted on 200 cities statements at the last token of the prompt
"{statement} This statement is"; TCAV (directional derivative of logit(" True") - logit(" False") along the probe
direction, by autograd at the same layer and position) is measured on 120 held-out statements, against 50 random
directions. Layers 9, 15 and 21 (a third, half and two thirds of the depth) were fixed before looking; all three are
reported, none is selected. The probe's held-out accuracy is printed beside the score.

    PYTHONPATH=. python experiments/tcav_smollm2.py      # writes experiments/results/tcav_smollm2.json
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from liedetect.activations import extract
from liedetect.models import load_model
from liedetect.tcav import layer_gradients, tcav
from liedetect.zero_shot import answer_margins
from probes import make_probe
from liedetect.run_record import write_result

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "truth_is_universal" / "cities.csv"
RESULTS = Path(__file__).resolve().parent / "results"
LAYERS = (9, 15, 21)
TEMPLATE = "{statement} This statement is"
ANSWERS = (" True", " False")


def run(n_train: int = 200, n_test: int = 120, n_random: int = 50, seed: int = 0) -> dict:
    t0 = time.time()
    model = load_model("smollm2")
    with DATA.open() as fh:
        rows = list(csv.DictReader(fh))
    order = np.random.default_rng(seed).permutation(len(rows))
    train, test = [rows[i] for i in order[:n_train]], [rows[i] for i in order[n_train:n_train + n_test]]
    text = lambda rs: [TEMPLATE.format(statement=r["statement"]) for r in rs]  # noqa: E731
    y_train, y_test = np.array([int(r["label"]) for r in train]), np.array([int(r["label"]) for r in test])
    acts_train = extract(model, text(train), layers=list(LAYERS), progress=False)
    acts_test = extract(model, text(test), layers=list(LAYERS), progress=False)
    margins = answer_margins(model, text(test), ANSWERS)  # the model's own answer, for context
    out = {"zero_shot_accuracy": float(((margins > 0) == y_test).mean()),
           "zero_shot_margin_true_minus_false": float(margins[y_test == 1].mean() - margins[y_test == 0].mean()),
           "model": "smollm2", "data": "cities", "template": TEMPLATE, "answers": ANSWERS, "n_train": n_train, "n_test": n_test,
           "n_random": n_random, "layers": {}}
    all_grads = layer_gradients(model, text(test), LAYERS, ANSWERS)  # one backward pass serves the three layers
    for layer in LAYERS:
        probe = make_probe("lr", C=1.0).fit(acts_train.layer(layer), y_train)
        acc = float(((probe.predict_proba(acts_test.layer(layer)).detach().cpu().numpy() > 0.5) == y_test).mean())
        grads = all_grads[layer]
        proj = acts_test.layer(layer).float() @ (probe.direction_.float() / probe.direction_.float().norm())
        entry = {"probe_test_accuracy": acc,  # the direction points to 'true' when this gap is positive
                 "projection_gap_true_minus_false": float(proj[y_test == 1].mean() - proj[y_test == 0].mean())}
        for name, mask in (("all", np.ones(len(test), bool)), ("true_statements", y_test == 1), ("false_statements", y_test == 0)):
            r = tcav(model, [], probe.direction_, layer, ANSWERS, n_random=n_random, seed=seed, grads=grads[mask]).to_dict()
            entry[name] = {k: r[k] for k in ("score", "random_mean", "random_std", "p_value_ttest", "p_value_rank", "p_value_magnitude",
                                             "significant", "mean_derivative", "mean_abs_derivative_random", "n_inputs")}
        out["layers"][str(layer)] = entry
        print(layer, json.dumps(entry), flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / "tcav_smollm2.json"), out, indent=1)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
