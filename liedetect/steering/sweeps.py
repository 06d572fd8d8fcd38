"""Steering sweeps: a behaviour metric over alphas and layers, and the metrics that come with liedetect."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch

from liedetect.errors import DataError
from liedetect.progress import progress_bar
from liedetect.steering.checks import check_alpha, check_layers
from liedetect.steering.hooks import steer
from liedetect.steering.spec import SteeringSpec
from liedetect.zero_shot import last_token_logits

Metric = Callable[[Any], float]


@dataclass
class SweepResult:
    """A behaviour metric over steering strengths and layers; `baseline` is the unsteered value."""

    metric: str
    rows: List[Dict[str, Any]]
    baseline: float
    spec: str = ""

    def best(self, maximize: bool = True) -> Dict[str, Any]:
        """The row with the highest (or lowest) metric."""
        return (max if maximize else min)(self.rows, key=lambda r: r["value"])

    def summary(self) -> str:
        """One line: baseline and best setting."""
        best = self.best()
        return (f"{self.metric}: unsteered {self.baseline:.3f}, best {best['value']:.3f} at layer(s) {best['layers']} "
                f"alpha {best['alpha']:g} ({len(self.rows)} settings)")

    def save(self, path: Union[str, Path]) -> Path:
        """Write the sweep as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"metric": self.metric, "baseline": self.baseline, "spec": self.spec,
                                    "rows": self.rows}, indent=2))
        return path

    def plot(self, path: Union[str, Path]) -> Path:
        """Metric against alpha, one line per layer setting, unsteered value dashed; saved as PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 4))
        groups: Dict[str, List[Dict[str, Any]]] = {}
        for row in self.rows:
            groups.setdefault(str(row["layers"]), []).append(row)
        for label, rows in groups.items():
            rows = sorted(rows, key=lambda r: r["alpha"])
            ax.plot([r["alpha"] for r in rows], [r["value"] for r in rows], marker="o", label=f"layers {label}")
        ax.axhline(self.baseline, color="grey", linestyle="--", label="unsteered")
        ax.set_xlabel("alpha")
        ax.set_ylabel(self.metric)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def p_true_metric(prompts: Sequence[str], token: str = " True", batch_size: int = 32) -> Metric:
    """A metric: mean probability the model puts on `token` as the next token after each prompt."""
    prompts = list(prompts)

    def metric(model: Any) -> float:
        ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise DataError(f"{token!r} is {len(ids)} tokens for this tokenizer; choose a single-token answer.")
        total = sum(rows.softmax(-1)[:, ids[0]].sum().item()
                    for rows in last_token_logits(model, prompts, batch_size, padding_side="left"))
        return total / len(prompts)

    metric.__name__ = f"p({token.strip()})"
    return metric


def organism_truthfulness_metric(model: Any, persona: str = "liar", n: int = 200, split: str = "heldout",
                                 seed: int = 0) -> Metric:
    """A metric for the built-in organism: fraction of `persona` prompts answered with the statement's real truth."""
    import numpy as np

    from liedetect.organism.behaviour import said_true

    world = getattr(model, "organism_world", None)
    if world is None:
        raise DataError("This model is not the liedetect organism (no organism_world); use --metric p_true.")
    prompts = world.prompts(n, split=split, persona=persona, seed=seed)
    truth = np.array([p.truth for p in prompts])

    def metric(m: Any) -> float:
        return float((said_true(m, prompts) == truth).mean())

    metric.__name__ = f"{persona} truthful"
    return metric


def steering_sweep(model: Any, spec: SteeringSpec, alphas: Sequence[float],
                   layers: Optional[Sequence[Union[int, Sequence[int]]]] = None, metric: Optional[Metric] = None,
                   prompts: Optional[Sequence[str]] = None, progress: bool = True) -> SweepResult:
    """Evaluate `metric(model)` under steering for each alpha (and each layer setting in `layers`)."""
    if metric is None:
        if not prompts:
            raise DataError("Give a metric, or prompts for the default metric (probability of ' True').")
        metric = p_true_metric(prompts)
    settings = [spec.layers] if layers is None else [[s] if isinstance(s, int) else list(s) for s in layers]
    alphas = [check_alpha(a) for a in alphas]
    with torch.no_grad():
        baseline = float(metric(model))
    rows = []
    with progress_bar("steering sweep", total=len(settings) * len(alphas), enabled=progress) as advance:
        for setting in settings:
            sub = spec.at_layers(check_layers(model, setting))
            for alpha in alphas:
                with steer(model, sub, alpha=alpha), torch.no_grad():
                    value = float(metric(model))
                rows.append({"layers": sub.layers, "alpha": alpha, "value": value})
                advance(1)
    return SweepResult(metric=getattr(metric, "__name__", "metric"), rows=rows, baseline=baseline, spec=spec.summary())
