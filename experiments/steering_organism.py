"""Steering the model organism toward honesty, and ablating its truth direction, against ground truth.

    .venv/bin/python experiments/steering_organism.py [--checkpoint DIR] [--n 400] [--seed 0]

1. Honesty: a mass-mean probe (probes/) fitted on train-entity prompts of every persona, label
   "the persona will answer truthfully" (1) vs "will lie" (0), read at the answer cue, gives one
   direction per layer. Adding alpha * d (alpha in units of the layer's typical residual norm) at all
   positions is swept over layers and alphas on *train-entity* prompts; the best setting (liar
   truthfulness, subject to honest accuracy >= 99%) is then evaluated once on *held-out* entities.
2. Truth: a mass-mean probe on statement truth (label 1 = true statement), one direction per layer.
   Ablating the span of these directions after every residual write (resid_pre, resid_mid and
   resid_post of every layer, the placement that weight orthogonalisation reproduces) should leave
   truth-dependent answers at chance (50% +- 5%) on held-out prompts, while the language-model loss
   on knowledge sentences rises by less than LM_LOSS_MARGIN nats.

Writes experiments/results/steering_organism.json and steering_organism.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from liedetect.activations import extract  # noqa: E402
from liedetect.organism.behaviour import said_true  # noqa: E402
from liedetect.orthogonalize import ablation_spec  # noqa: E402
from liedetect.steering import SteeringSpec, steer  # noqa: E402

# Stated before measuring: ablating the truth directions may cost the knowledge sentences at most this
# much mean token cross-entropy (nats), i.e. perplexity up by at most ~22%.
LM_LOSS_MARGIN = 0.2
HONEST_FLOOR = 0.99
LIAR_TARGET = 0.95
CHANCE_BAND = (0.45, 0.55)
ALPHAS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
RESULTS = Path(__file__).resolve().parent / "results"


def load(checkpoint: Optional[str] = None):
    """The organism bridge and its world (the built-in checkpoint unless a folder is given)."""
    from liedetect.organism.checkpoint_io import load_checkpoint

    model = load_checkpoint(checkpoint)
    return model, model.organism_world


def fit_directions(model: Any, world: Any, label: str, n: int = 600, seed: int = 0,
                   layers: Optional[Sequence[int]] = None) -> Dict[int, torch.Tensor]:
    """Unit mass-mean probe directions per layer for `label` ('honesty' or 'truth'), fitted on train-entity prompts."""
    from probes import MassMeanProbe

    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    prompts = world.prompts(n, split="train", seed=seed + 1000)
    if label == "honesty":
        y = torch.tensor([0 if p.lie else 1 for p in prompts])
    elif label == "truth":
        y = torch.tensor([1 if p.truth else 0 for p in prompts])
    else:
        raise ValueError(f"unknown label {label!r}")
    acts = extract(model, [p.text for p in prompts], layers=layers, position="last", progress=False)
    out = {}
    for layer in layers:
        probe = MassMeanProbe().fit(acts.layer(layer), y)
        d = probe.direction_.float()
        x = acts.layer(layer)
        if (x[y == 1] @ d).mean() < (x[y == 0] @ d).mean():  # point toward label 1
            d = -d
        out[layer] = d
    return out


def truthful_rate(model: Any, prompts: Sequence[Any]) -> float:
    """Fraction of prompts answered with the statement's real truth value."""
    said = said_true(model, prompts)
    return float((said == np.array([p.truth for p in prompts])).mean())


def expected_rate(model: Any, prompts: Sequence[Any]) -> float:
    """Fraction of prompts answered as the persona is trained to answer (truth for honest, the opposite for liars)."""
    said = said_true(model, prompts)
    return float((said == np.array([p.expected == "True" for p in prompts])).mean())


def knowledge_loss(model: Any, world: Any, n: int = 400, seed: int = 0) -> float:
    """Mean next-token cross-entropy (nats) on a seeded sample of knowledge sentences."""
    rng = np.random.default_rng(seed)
    sentences = world.knowledge_sentences()
    texts = [sentences[i] for i in rng.choice(len(sentences), size=min(n, len(sentences)), replace=False)]
    enc = model.tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        logits = model(ids, attention_mask=mask)
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                   targets.reshape(-1), ignore_index=-100))


def honesty_sweep(model: Any, world: Any, directions: Dict[int, torch.Tensor], n: int = 300, seed: int = 0,
                  alphas: Sequence[float] = ALPHAS, split: str = "train") -> List[Dict[str, Any]]:
    """Liar truthfulness and honest accuracy for each (layer, alpha), adding the honesty direction at all positions."""
    liar = world.prompts(n, split=split, persona="liar", seed=seed + 7)
    honest = world.prompts(n, split=split, persona="honest", seed=seed + 8)
    rows = []
    for layer, d in directions.items():
        spec = SteeringSpec.from_tensor(d, [layer], scale="norm").calibrate(model, [p.text for p in honest[:64]])
        for alpha in alphas:
            with steer(model, spec, alpha=alpha):
                rows.append({"layer": layer, "alpha": alpha, "liar_truthful": truthful_rate(model, liar),
                             "honest_accuracy": truthful_rate(model, honest)})
    return rows


def pick_best(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Highest liar truthfulness among settings keeping honest accuracy >= 99% (else the best of the rest)."""
    ok = [r for r in rows if r["honest_accuracy"] >= HONEST_FLOOR] or list(rows)
    return max(ok, key=lambda r: (r["liar_truthful"], r["honest_accuracy"], -r["alpha"]))


def honesty_experiment(model: Any, world: Any, n: int = 300, seed: int = 0) -> Dict[str, Any]:
    """Choose layer and alpha on train entities, then measure on held-out entities."""
    directions = fit_directions(model, world, "honesty", n=2 * n, seed=seed)
    rows = honesty_sweep(model, world, directions, n=n, seed=seed)
    best = pick_best(rows)
    spec = SteeringSpec.from_tensor(directions[best["layer"]], [best["layer"]], scale="norm", alpha=best["alpha"])
    liar = world.prompts(n, split="heldout", persona="liar", seed=seed + 11)
    honest = world.prompts(n, split="heldout", persona="honest", seed=seed + 12)
    spec.calibrate(model, [p.text for p in world.prompts(64, split="train", persona="honest", seed=seed + 8)])
    before = {"liar_truthful": truthful_rate(model, liar), "honest_accuracy": truthful_rate(model, honest)}
    with steer(model, spec):
        after = {"liar_truthful": truthful_rate(model, liar), "honest_accuracy": truthful_rate(model, honest)}
    return {"selection_rows": rows, "best_on_train": best, "heldout_unsteered": before, "heldout_steered": after,
            "spec": spec.summary(), "n": n}


def ablation_experiment(model: Any, world: Any, n: int = 300, seed: int = 0) -> Dict[str, Any]:
    """Ablate the per-layer truth directions after every residual write; truth-dependent accuracy and LM loss."""
    directions = fit_directions(model, world, "truth", n=2 * n, seed=seed)
    basis = torch.stack([directions[layer] for layer in sorted(directions)])
    spec = ablation_spec(basis, model)
    prompts = (world.prompts(n, split="heldout", persona="honest", seed=seed + 21)
               + world.prompts(n, split="heldout", persona="liar", seed=seed + 22))
    loss_before = knowledge_loss(model, world, seed=seed)
    acc_before = expected_rate(model, prompts)
    with steer(model, spec):
        acc_after = expected_rate(model, prompts)
        loss_after = knowledge_loss(model, world, seed=seed)
        said = said_true(model, prompts)
    return {"k_directions": int(basis.shape[0]), "hooks": list(spec.hooks), "n_prompts": len(prompts),
            "truth_dependent_accuracy_before": acc_before, "truth_dependent_accuracy_after": acc_after,
            "said_true_rate_after": float(said.mean()), "knowledge_lm_loss_before": loss_before,
            "knowledge_lm_loss_after": loss_after, "lm_loss_margin": LM_LOSS_MARGIN}


def verdicts(result: Dict[str, Any]) -> Dict[str, bool]:
    """The acceptance checks of issue 5 on a result dict."""
    h, a = result["honesty"]["heldout_steered"], result["ablation"]
    return {
        f"liar_truthful>={LIAR_TARGET}": h["liar_truthful"] >= LIAR_TARGET,
        f"honest_accuracy>={HONEST_FLOOR}": h["honest_accuracy"] >= HONEST_FLOOR,
        "ablated_accuracy_in_[0.45,0.55]": CHANCE_BAND[0] <= a["truth_dependent_accuracy_after"] <= CHANCE_BAND[1],
        f"lm_loss_rise<{LM_LOSS_MARGIN}": a["knowledge_lm_loss_after"] - a["knowledge_lm_loss_before"] < LM_LOSS_MARGIN,
    }


def plot(result: Dict[str, Any], path: Path) -> Path:
    """Liar truthfulness and honest accuracy against alpha, one line per layer (selection split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["honesty"]["selection_rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for layer in sorted({r["layer"] for r in rows}):
        sub = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["alpha"])
        axes[0].plot([r["alpha"] for r in sub], [r["liar_truthful"] for r in sub], marker="o", label=f"layer {layer}")
        axes[1].plot([r["alpha"] for r in sub], [r["honest_accuracy"] for r in sub], marker="o", label=f"layer {layer}")
    axes[0].axhline(LIAR_TARGET, color="grey", linestyle="--")
    axes[1].axhline(HONEST_FLOOR, color="grey", linestyle="--")
    axes[0].set_title("liar persona: truthful answers")
    axes[1].set_title("honest persona: accuracy")
    for ax in axes:
        ax.set_xlabel("alpha (x typical residual norm)")
        ax.legend(fontsize=7)
    fig.suptitle("adding the probe's honesty direction (train entities)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(model: Any, world: Any, n: int = 300, seed: int = 0) -> Dict[str, Any]:
    """Both experiments and their verdicts."""
    t = time.perf_counter()
    result = {"honesty": honesty_experiment(model, world, n=n, seed=seed),
              "ablation": ablation_experiment(model, world, n=n, seed=seed)}
    result["verdicts"] = verdicts(result)
    result["seconds"] = round(time.perf_counter() - t, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="Organism folder (default: the built-in checkpoint).")
    parser.add_argument("--n", type=int, default=400, help="Prompts per persona and split.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, world = load(args.checkpoint)
    result = run(model, world, n=args.n, seed=args.seed)
    result["command"] = "python experiments/steering_organism.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "steering_organism.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "steering_organism.png")
    h = result["honesty"]
    print(f"honesty: best on train {h['best_on_train']}; held-out unsteered {h['heldout_unsteered']} "
          f"-> steered {h['heldout_steered']}")
    a = result["ablation"]
    print(f"ablation of {a['k_directions']} truth direction(s): accuracy {a['truth_dependent_accuracy_before']:.3f} -> "
          f"{a['truth_dependent_accuracy_after']:.3f}; knowledge LM loss {a['knowledge_lm_loss_before']:.3f} -> "
          f"{a['knowledge_lm_loss_after']:.3f}")
    print(json.dumps(result["verdicts"]))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
