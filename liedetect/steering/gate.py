"""Conditional steering (CAST, Lee et al. 2024): steer a sequence only when its prompt reads as the condition.

A `SteeringGate` projects the residual stream at the prompt's last token, at one layer, on a unit direction and
opens where the projection lies on the condition's side of a threshold. `Steering` takes the decision once per
prompt, while the prompt is read, and keeps it for every token generated after it; the rows of a batch are
decided one by one. `SteeringGate.between` finds direction and threshold from two sets of example prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Sequence

import torch

from liedetect.errors import SteeringError
from liedetect.steering.checks import as_rows

HOOK_ORDER = ("resid_pre", "resid_mid", "resid_post")  # where each hook sits inside a block
SIDES = ("above", "below")


@dataclass
class SteeringGate:
    """Open where the last prompt token's `hook` activation at `layer`, projected on the unit `direction`, lies
    `side` ("above" or "below") `threshold`."""

    layer: int
    direction: torch.Tensor
    threshold: float
    side: str = "above"
    hook: str = "resid_post"

    def __post_init__(self) -> None:
        rows = as_rows(self.direction, "the gate")
        if rows.shape[0] != 1:
            raise SteeringError(f"A gate reads one direction; got {rows.shape[0]}.")
        self.direction = rows[0]
        self.layer = int(self.layer)
        if self.side not in SIDES:
            raise SteeringError(f"Unknown gate side {self.side!r}; use 'above' or 'below'.")
        if self.hook not in HOOK_ORDER:
            raise SteeringError(f"A gate reads a residual hook ({', '.join(HOOK_ORDER)}), not {self.hook!r}.")
        if not math.isfinite(float(self.threshold)):
            raise SteeringError(f"The gate's threshold is {self.threshold}; it needs a finite number.")
        self.threshold = float(self.threshold)

    def passes(self, score: torch.Tensor) -> torch.Tensor:
        """Which projections lie on the gate's side of its threshold."""
        return score > self.threshold if self.side == "above" else score < self.threshold

    def decide(self, last: torch.Tensor) -> torch.Tensor:
        """Which rows open, from their states `[batch, d]` at the prompt's last token."""
        return self.passes(last.float() @ self.direction.to(last.device))

    def scores(self, model: Any, prompts: Sequence[str]) -> torch.Tensor:
        """Each prompt's projection at its last token (what the gate compares with its threshold)."""
        return last_states(model, prompts, self.layer, self.hook) @ self.direction

    def opens(self, model: Any, prompts: Sequence[str]) -> torch.Tensor:
        """Which prompts this gate would steer (boolean, one per prompt)."""
        return self.passes(self.scores(model, prompts))

    @classmethod
    def between(cls, model: Any, steer_prompts: Sequence[str], leave_prompts: Sequence[str], layer: int,
                hook: str = "resid_post") -> "SteeringGate":
        """The gate that steers prompts like `steer_prompts` and leaves prompts like `leave_prompts`: the unit
        difference of their mean last-token states at `layer`, the threshold midway between the two means."""
        if not steer_prompts or not leave_prompts:
            raise SteeringError("A gate needs example prompts on both sides (to steer and to leave alone).")
        acts = last_states(model, list(steer_prompts) + list(leave_prompts), layer, hook)
        hi, lo = acts[:len(steer_prompts)].mean(0), acts[len(steer_prompts):].mean(0)
        direction = as_rows(hi - lo, f"the gate at layer {layer} (both sides have the same mean state)")[0]
        return cls(layer, direction, float((hi + lo) @ direction) / 2, "above", hook)

    def meta(self) -> Dict[str, Any]:
        """Everything but the direction, for a JSON sidecar."""
        return {"layer": self.layer, "threshold": self.threshold, "side": self.side, "hook": self.hook}


def last_states(model: Any, prompts: Sequence[str], layer: int, hook: str) -> torch.Tensor:
    """`[n, d]` float32: each prompt's `hook` activation at `layer`, at its last token (what a gate reads)."""
    from liedetect.activations import extract

    return extract(model, list(prompts), layers=[layer], position="last", hook=hook, progress=False).layer(layer).float()
