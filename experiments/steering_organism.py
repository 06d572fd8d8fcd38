"""Steering the model organism toward honesty, and ablating its truth direction, against ground truth.

    .venv/bin/python experiments/steering_organism.py [--checkpoint DIR] [--n 400] [--seed 0]

1. Honesty: a mass-mean probe (probes/) fitted on train-entity prompts, honest (1) vs liar (0)
   persona, gives one direction per layer. Three placements are swept over layers and alphas (alpha in
   units of the probe's class-mean gap along d): read at the answer cue and added at every token after
   each layer (RepE style); read at the persona tag and added at every token before each layer; read
   at the persona tag and added at the tag token only. The best setting on *train-entity* prompts
   (liar truthfulness, subject to honest accuracy >= 99%) is evaluated once on *held-out* entities.
2. Truth: mass-mean probes on statement truth (label 1 = true statement), one direction per layer,
   refitted under the ablation of the directions found so far (iterative nullspace projection) until
   no layer's probe reads the truth of other train-entity prompts better than chance (3 standard errors). Ablating the span of these directions after every residual write (resid_pre, resid_mid and
   resid_post of every layer, the placement that weight orthogonalisation reproduces) should leave
   truth-dependent answers at chance (50% +- 5%) on held-out prompts, while the language-model loss
   on knowledge sentences rises by less than LM_LOSS_MARGIN nats.

Writes experiments/results/steering_organism.json and steering_organism.png.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import json
import sys
import time
from pathlib import Path
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from liedetect.activations import Marker, extract
from liedetect.organism.behaviour import said_true
from liedetect.steering.orthogonalize import ablation_spec
from liedetect.steering import SteeringSpec, steer
from liedetect.run_record import write_result

# Stated before measuring: ablating the truth directions may cost the knowledge sentences at most this
# much mean token cross-entropy (nats), i.e. perplexity up by at most ~22%.
LM_LOSS_MARGIN = 0.2
HONEST_FLOOR = 0.99
LIAR_TARGET = 0.95
CHANCE_BAND = (0.45, 0.55)
ALPHAS = (0.5, 1.0, 1.5, 2.0, 3.0)
RESULTS = Path(__file__).resolve().parent / "results"


def load(checkpoint: Optional[str] = None):
    """The organism bridge and its world (the built-in checkpoint unless a folder is given)."""
    from liedetect.organism.checkpoint_io import load_checkpoint

    model = load_checkpoint(checkpoint)
    return model, model.organism_world


TAG_MARKER = "]"  # the persona tag ("[honest]" / "[liar]") is the only token with a bracket


def honesty_directions(model: Any, world: Any, n: int = 600, seed: int = 0,
                       layers: Optional[Sequence[int]] = None, position: Any = "last",
                       hook: str = "resid_post") -> Dict[int, Tuple[torch.Tensor, float]]:
    """Per layer: the unit mass-mean probe direction of honest (1) vs liar (0) and the class-mean gap along it.

    Fitted on train-entity prompts of the two personas. (Truth directions come from `truth_subspace`.)
    """
    from probes import MassMeanProbe

    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    prompts = (world.prompts(n // 2, split="train", persona="honest", seed=seed + 1000)
               + world.prompts(n // 2, split="train", persona="liar", seed=seed + 1001))
    y = torch.tensor([1 if p.persona == "honest" else 0 for p in prompts])
    acts = extract(model, [p.text for p in prompts], layers=layers, position=position, hook=hook, progress=False)
    out = {}
    for layer in layers:
        x = acts.layer(layer)
        d = MassMeanProbe().fit(x, y).direction_.float()
        gap = float((x[y == 1].mean(0) - x[y == 0].mean(0)) @ d)
        if gap < 0:  # point toward label 1
            d, gap = -d, -gap
        out[layer] = (d, gap)
    return out


def truthful_rate(model: Any, prompts: Sequence[Any]) -> float:
    """Fraction of prompts answered with the statement's real truth value."""
    said = said_true(model, prompts)
    return float((said == np.array([p.truth for p in prompts])).mean())


def expected_rate(model: Any, prompts: Sequence[Any]) -> float:
    """Fraction of prompts answered as the persona is trained to answer (truth for honest, the opposite for liars)."""
    said = said_true(model, prompts)
    return float((said == np.array([p.expected == "True" for p in prompts])).mean())


def steered_truthful_rate(model: Any, prompts: Sequence[Any], spec: SteeringSpec, where: str) -> float:
    """Truthful-answer rate with `spec` applied at all tokens ('all') or only at the persona tag token ('tag')."""
    tok = model.tokenizer
    enc = tok([p.text for p in prompts], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if where == "tag":
        tags = torch.tensor(tok.convert_tokens_to_ids([t for t in ("[honest]", "[liar]")]))
        positions = torch.isin(ids, tags)
    else:
        positions = mask.bool()
    true_id, false_id = tok.convert_tokens_to_ids(["True", "False"])
    last = mask.sum(1) - 1 if tok.padding_side != "left" else torch.full((len(prompts),), ids.shape[1] - 1)
    with steer(model, replace(spec, positions=positions)), torch.no_grad():
        logits = model(ids, attention_mask=mask)
    rows = logits[torch.arange(len(prompts)), last]
    said = (rows[:, true_id] > rows[:, false_id]).numpy()
    return float((said == np.array([p.truth for p in prompts])).mean())


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


# Where the honesty direction is read and added: (probe position, hook, steered tokens).
CONFIGS = (
    ("last", "resid_post", "all"),      # RepE-style: read at the answer cue, add everywhere, after each layer
    ("tag", "resid_pre", "all"),        # read at the persona tag, add everywhere, before each layer
    ("tag", "resid_pre", "tag"),        # read at the persona tag, add at the persona tag, before each layer
)


def honesty_sweep(model: Any, world: Any, n: int = 300, seed: int = 0, alphas: Sequence[float] = ALPHAS,
                  split: str = "train", configs: Sequence[Tuple[str, str, str]] = CONFIGS) -> Tuple[List[Dict[str, Any]], Dict[Tuple[str, str, int], Tuple[torch.Tensor, float]]]:
    """Liar truthfulness and honest accuracy per (config, layer, alpha); alpha in units of the probe's class-mean gap."""
    liar = world.prompts(n, split=split, persona="liar", seed=seed + 7)
    honest = world.prompts(n, split=split, persona="honest", seed=seed + 8)
    rows, directions = [], {}
    for read_at, hook, where in configs:
        position = Marker(TAG_MARKER) if read_at == "tag" else "last"
        for layer, (d, gap) in honesty_directions(model, world, n=2 * n, seed=seed, position=position,
                                                  hook=hook).items():
            directions[(read_at, hook, layer)] = (d, gap)
            for alpha in alphas:
                spec = SteeringSpec.from_tensor(d, [layer], alpha=alpha * gap, hook=hook)
                rows.append({"read_at": read_at, "hook": hook, "steer_at": where, "layer": layer, "alpha": alpha,
                             "liar_truthful": steered_truthful_rate(model, liar, spec, where),
                             "honest_accuracy": steered_truthful_rate(model, honest, spec, where)})
    return rows, directions


def pick_best(rows: Sequence[Dict[str, Any]], honest_floor: float = HONEST_FLOOR) -> Dict[str, Any]:
    """Highest liar truthfulness among settings keeping honest accuracy >= honest_floor (else the best of the rest)."""
    ok = [r for r in rows if r["honest_accuracy"] >= honest_floor] or list(rows)
    return max(ok, key=lambda r: (r["liar_truthful"], r["honest_accuracy"], -r["alpha"]))


def honesty_experiment(model: Any, world: Any, n: int = 300, seed: int = 0, alphas: Sequence[float] = ALPHAS,
                       configs: Sequence[Tuple[str, str, str]] = CONFIGS) -> Dict[str, Any]:
    """Choose where and how much to add on train entities, then measure once on held-out entities."""
    rows, directions = honesty_sweep(model, world, n=n, seed=seed, alphas=alphas, configs=configs)
    train_honest = truthful_rate(model, world.prompts(n, split="train", persona="honest", seed=seed + 8))
    floor = min(HONEST_FLOOR, train_honest - 0.01)  # do not ask steering to beat the unsteered model
    best = pick_best(rows, floor)
    d, gap = directions[(best["read_at"], best["hook"], best["layer"])]
    spec = SteeringSpec.from_tensor(d, [best["layer"]], alpha=best["alpha"] * gap, hook=best["hook"])
    liar = world.prompts(n, split="heldout", persona="liar", seed=seed + 11)
    honest = world.prompts(n, split="heldout", persona="honest", seed=seed + 12)
    before = {"liar_truthful": truthful_rate(model, liar), "honest_accuracy": truthful_rate(model, honest)}
    after = {"liar_truthful": steered_truthful_rate(model, liar, spec, best["steer_at"]),
             "honest_accuracy": steered_truthful_rate(model, honest, spec, best["steer_at"])}
    best_per_config = {f"{r}/{h}/{w}": pick_best([x for x in rows if (x["read_at"], x["hook"], x["steer_at"]) == (r, h, w)], floor)
                       for r, h, w in configs}
    return {"selection_rows": rows, "best_on_train": best, "best_on_train_per_config": best_per_config,
            "heldout_unsteered": before, "heldout_steered": after, "spec": spec.summary() + f" at {best['steer_at']} tokens",
            "n": n}


def truth_subspace(model: Any, world: Any, n: int = 300, seed: int = 0, max_rounds: int = 8) -> Tuple[torch.Tensor, List[Dict[str, Any]]]:
    """Iterative nullspace projection (INLP) with mass-mean truth probes, one per layer.

    Each round, under the ablation of the span found so far: fit a mass-mean truth probe per layer on
    honest and liar prompts about train and held-out entities, score it on other train-entity prompts, and
    add to the span the direction of every layer that still reads the truth better than chance by more
    than 3 standard errors (0.5 + 3 * sqrt(0.25 / n_check)); stop when none does. Returns the orthonormal basis
    of the ablated span and one log row per round (probe accuracy per layer, behaviour on train entities).
    """
    from probes import MassMeanProbe

    check = (world.prompts(n // 2, split="train", persona="honest", seed=seed + 31)
             + world.prompts(n // 2, split="train", persona="liar", seed=seed + 32))
    layers = list(range(model.cfg.n_layers))
    limit = 0.5 + 3 * math.sqrt(0.25 / len(check))
    rows: List[Dict[str, Any]] = []
    basis = torch.zeros(0, model.cfg.d_model)
    for round_ in range(max_rounds):
        # fitted on prompts about train and held-out entities alike (the test prompts are another sample):
        # directions fitted on train entities alone left held-out truth-dependent accuracy at 0.56-0.59
        fit_set = [p for split in ("train", "heldout") for persona in ("honest", "liar")
                   for p in world.prompts(n // 2, split=split, persona=persona, seed=seed + 1000 + round_)]
        context = steer(model, ablation_spec(basis, model)) if len(basis) else contextlib.nullcontext()
        with context:
            acts = extract(model, [p.text for p in fit_set + check], layers=layers, position="last", hook="resid_post", progress=False)
            behaviour = expected_rate(model, check)
        y_fit = torch.tensor([int(p.truth) for p in fit_set])
        y_check = torch.tensor([int(p.truth) for p in check])
        readable, directions = {}, []
        for layer in layers:
            x = acts.layer(layer)
            probe = MassMeanProbe().fit(x[:len(fit_set)], y_fit)
            readable[layer] = float(probe.score(x[len(fit_set):], y_check))
            directions.append(probe.direction_.float())
        # only the layers that still read the truth add a direction: a probe at chance points nowhere in
        # particular, and ablating it would cost language modelling for nothing
        above = [layer for layer in layers if readable[layer] > limit]
        rows.append({"round": round_, "k": int(basis.shape[0]), "train_truth_dependent_accuracy": behaviour,
                     "probe_accuracy_by_layer": readable, "chance_limit": limit, "layers_added": above})
        if not above:
            break
        new = torch.stack([directions[layer] for layer in above])
        basis = torch.linalg.qr(torch.cat([basis, new]).T.double())[0].T.float()
    return basis, rows


def ablation_experiment(model: Any, world: Any, n: int = 300, seed: int = 0) -> Dict[str, Any]:
    """Ablate the probe-found truth subspace after every residual write; truth-dependent accuracy and LM loss (held-out)."""
    basis, rounds = truth_subspace(model, world, n=n, seed=seed)
    spec = ablation_spec(basis, model)
    prompts = (world.prompts(n, split="heldout", persona="honest", seed=seed + 21)
               + world.prompts(n, split="heldout", persona="liar", seed=seed + 22))
    loss_before = knowledge_loss(model, world, seed=seed)
    acc_before = expected_rate(model, prompts)
    with steer(model, spec):
        acc_after = expected_rate(model, prompts)
        loss_after = knowledge_loss(model, world, seed=seed)
        said = said_true(model, prompts)
    return {"k_directions": int(basis.shape[0]), "rounds": rounds, "hooks": list(spec.hooks), "n_prompts": len(prompts),
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
    keys = sorted({(r["read_at"], r["hook"], r["steer_at"], r["layer"]) for r in rows})
    for key in keys:
        sub = sorted((r for r in rows if (r["read_at"], r["hook"], r["steer_at"], r["layer"]) == key), key=lambda r: r["alpha"])
        label = f"{key[0]}->{key[2]} {key[1]} L{key[3]}"
        axes[0].plot([r["alpha"] for r in sub], [r["liar_truthful"] for r in sub], marker=".", label=label)
        axes[1].plot([r["alpha"] for r in sub], [r["honest_accuracy"] for r in sub], marker=".", label=label)
    axes[0].axhline(LIAR_TARGET, color="grey", linestyle="--")
    axes[1].axhline(HONEST_FLOOR, color="grey", linestyle="--")
    axes[0].set_title("liar persona: truthful answers")
    axes[1].set_title("honest persona: accuracy")
    for ax in axes:
        ax.set_xlabel("alpha (x honest-liar class-mean gap)")
        ax.legend(fontsize=5, ncol=2)
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
    write_result(out, result, indent=2)
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
