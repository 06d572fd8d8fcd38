"""The steering specification: directions per layer plus where and how to apply them; saved as safetensors + JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from liedetect.errors import LayerError, SteeringError
from liedetect.steering.checks import as_rows, check_alpha, check_layers
from liedetect.steering.directions import contrast_directions, direction_from_probe, residual_norms
from liedetect.steering.gate import SteeringGate
from liedetect.steering.hooks import Steering

OPS = ("add", "ablate", "set")
POSITIONS = ("all", "prompt", "generated")
SCALES = ("raw", "norm")


Positions = Union[str, torch.Tensor]


@dataclass
class SteeringSpec:
    """Directions per layer plus where and how to apply them.

    `directions` maps a layer to unit rows `[k, d]`; its keys are the layers acted on. `op` is `add`
    (x + alpha * d for each row), `ablate` (remove the projection on the span of the rows) or `set`
    (set the projection on each orthonormalised row to alpha). With `scale="norm"` alpha is in units of
    the typical residual norm of each layer, measured on a few texts (`calibrate`), so alphas transfer
    between models. `positions` is `all`, `prompt`, `generated` or a boolean mask over absolute token
    positions (`[seq]` or `[batch, seq]`). `hook` is one residual hook or several (e.g. pre, mid and post).
    With a `gate` (a `SteeringGate`), only the sequences whose prompt the gate opens are steered (CAST).
    """

    directions: Dict[int, torch.Tensor]
    op: str = "add"
    alpha: float = 1.0
    positions: Positions = "all"
    hook: Union[str, Tuple[str, ...]] = "resid_post"
    scale: str = "raw"
    norms: Optional[Dict[int, float]] = None
    source: Dict[str, Any] = field(default_factory=dict)
    gate: Optional[SteeringGate] = None

    def __post_init__(self) -> None:
        if not self.directions:
            raise SteeringError("A steering spec needs at least one layer with a direction.")
        self.directions = {int(k): as_rows(v, f"layer {k}") for k, v in self.directions.items()}
        widths = {v.shape[-1] for v in self.directions.values()}
        if len(widths) != 1:
            raise SteeringError(f"The directions have different widths {sorted(widths)}; use one model's residual width.")
        if self.op not in OPS:
            raise SteeringError(f"Unknown steering operation {self.op!r}; use one of {', '.join(OPS)}.")
        if self.scale not in SCALES:
            raise SteeringError(f"Unknown alpha scale {self.scale!r}; use 'raw' or 'norm'.")
        check_alpha(self.alpha)
        if isinstance(self.positions, str) and self.positions not in POSITIONS:
            raise SteeringError(f"Unknown positions {self.positions!r}; use all, prompt, generated or a boolean mask.")
        if isinstance(self.positions, torch.Tensor) and self.positions.dtype != torch.bool:
            raise SteeringError("A position mask must be a boolean tensor over token positions.")
        if isinstance(self.hook, (list, tuple)):
            self.hook = tuple(self.hook)
        if self.gate is not None and not isinstance(self.gate, SteeringGate):
            raise SteeringError(f"gate must be a SteeringGate (e.g. SteeringGate.between(...)), not {type(self.gate).__name__}.")
        if self.gate is not None and self.gate.direction.shape[-1] != self.d_model:
            raise SteeringError(f"The gate's direction has width {self.gate.direction.shape[-1]} but the steering "
                                f"directions have {self.d_model}; find both on one model.")

    # ---- constructors

    @classmethod
    def from_tensor(cls, direction: Any, layers: Union[int, Sequence[int]], **kwargs: Any) -> "SteeringSpec":
        """The same direction (or k directions) at every layer listed."""
        layer_list = [layers] if isinstance(layers, int) else list(layers)
        rows = as_rows(direction, "the tensor")
        return cls(directions={layer: rows for layer in layer_list}, source={"kind": "tensor"}, **kwargs)

    @classmethod
    def from_probe(cls, probe: Any, layers: Union[None, int, Sequence[int]] = None, model: Any = None,
                   **kwargs: Any) -> "SteeringSpec":
        """A saved probe (path) or fitted probe's unit `direction_`, at its own layer unless `layers` says otherwise."""
        direction, meta = direction_from_probe(probe)
        if model is not None and meta.get("d_model") not in (None, model.cfg.d_model):
            raise SteeringError(f"The probe was fitted on a residual width of {meta['d_model']} but the model has "
                                f"{model.cfg.d_model}; use a probe trained on this model.")
        if layers is None:
            if meta.get("layer") is None:
                raise SteeringError("The probe records no layer; pass layers= to say where to steer.")
            layers = [int(meta["layer"])]
        layer_list = [layers] if isinstance(layers, int) else list(layers)
        if model is not None:
            layer_list = check_layers(model, layer_list)
        hook = kwargs.pop("hook", meta.get("hook") or "resid_post")
        return cls(directions={layer: direction for layer in layer_list}, hook=hook,
                   source={"kind": "probe", **{k: meta.get(k) for k in ("path", "method", "model_id", "layer", "hook")}},
                   **kwargs)

    @classmethod
    def from_contrast(cls, model: Any, pos_texts: Sequence[str], neg_texts: Sequence[str],
                      layers: Union[str, int, Sequence[int]], position: Any = "last", hook: str = "resid_post",
                      progress: bool = False, **kwargs: Any) -> "SteeringSpec":
        """Mean-difference (CAA / ActAdd) direction per layer: mean(pos) - mean(neg), normalised."""
        directions = contrast_directions(model, pos_texts, neg_texts, layers, position=position, hook=hook,
                                         progress=progress)
        return cls(directions=directions, hook=hook, source={"kind": "contrast", "n_pairs": len(pos_texts)}, **kwargs)

    # ---- variants

    @property
    def layers(self) -> List[int]:
        """The layers this spec acts on, sorted."""
        return sorted(self.directions)

    @property
    def d_model(self) -> int:
        """Width of the directions."""
        return next(iter(self.directions.values())).shape[-1]

    @property
    def hooks(self) -> Tuple[str, ...]:
        """The residual hooks acted on at each layer."""
        return self.hook if isinstance(self.hook, tuple) else (self.hook,)

    def with_gate(self, gate: Optional[SteeringGate]) -> "SteeringSpec":
        """The same spec, steering only where `gate` opens (None: everywhere)."""
        return replace(self, gate=gate)

    def with_alpha(self, alpha: float) -> "SteeringSpec":
        """The same spec with another alpha."""
        return replace(self, alpha=check_alpha(alpha))

    def at_layers(self, layers: Union[int, Sequence[int]]) -> "SteeringSpec":
        """The same spec at other layers (a shared direction is reused; per-layer ones must exist)."""
        layer_list = [layers] if isinstance(layers, int) else list(layers)
        rows = list(self.directions.values())
        shared = all(torch.equal(rows[0], r) for r in rows[1:])
        out = {}
        for layer in layer_list:
            if layer in self.directions:
                out[layer] = self.directions[layer]
            elif shared:
                out[layer] = rows[0]
            else:
                raise LayerError(f"This spec has per-layer directions for layers {self.layers} only; "
                                 f"compute a direction for layer {layer} first.")
        return replace(self, directions=out)

    def calibrate(self, model: Any, texts: Optional[Sequence[str]] = None) -> "SteeringSpec":
        """Measure the typical residual norm at each layer (median token norm over `texts`) for scale='norm'."""
        self.norms = residual_norms(model, self.layers, texts=texts, hook=self.hooks[-1])
        return self

    # ---- use

    def apply(self, model: Any, alpha: Optional[float] = None, prompt_len: Optional[int] = None) -> "Steering":
        """A context manager that steers `model` inside its `with` block (alpha overrides the spec's)."""
        return Steering(model, self if alpha is None else self.with_alpha(alpha), prompt_len=prompt_len)

    def summary(self) -> str:
        """One line describing the spec."""
        k = next(iter(self.directions.values())).shape[0]
        where = self.positions if isinstance(self.positions, str) else "mask"
        unit = " x residual norm" if self.scale == "norm" else ""
        amount = "" if self.op == "ablate" else f" alpha={self.alpha:g}{unit}"
        gated = "" if self.gate is None else (f", gated at layer {self.gate.layer} ({self.gate.side} "
                                              f"{self.gate.threshold:.3g})")
        return (f"{self.op}{amount} of {k} direction(s) at layers {self.layers} ({'/'.join(self.hooks)}, "
                f"positions {where}, source {self.source.get('kind', '?')}{gated})")

    def save(self, path: Union[str, Path]) -> Path:
        """Write the directions as safetensors plus a JSON sidecar (`path` without suffix or .safetensors)."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"direction.{k}": v.contiguous() for k, v in self.directions.items()}
        if self.gate is not None:
            tensors["gate"] = self.gate.direction.contiguous()
        save_file(tensors, str(path))
        meta = {"format": "liedetect.steering/1", "op": self.op, "alpha": self.alpha, "hook": list(self.hooks),
                "scale": self.scale, "norms": self.norms, "source": self.source,
                "positions": self.positions if isinstance(self.positions, str) else self.positions.tolist(),
                "gate": None if self.gate is None else self.gate.meta()}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "SteeringSpec":
        """Read a spec written by `save`."""
        from safetensors.torch import load_file

        path = Path(path).with_suffix(".safetensors")
        if not path.exists() or not path.with_suffix(".json").exists():
            raise SteeringError(f"No steering spec at {path} (needs .safetensors and .json); write one with spec.save().")
        tensors = load_file(str(path))
        meta = json.loads(path.with_suffix(".json").read_text())
        pos = meta["positions"]
        hook = meta["hook"]
        gate_dir = tensors.pop("gate", None)
        if (gate_dir is None) != (meta.get("gate") is None):
            raise SteeringError(f"The spec at {path} has half a gate (its direction or its settings are missing); save it again.")
        gate = None if gate_dir is None else SteeringGate(direction=gate_dir, **meta["gate"])
        return cls(directions={int(k.split(".")[1]): v for k, v in tensors.items()}, op=meta["op"], alpha=meta["alpha"], gate=gate,
                   hook=hook[0] if len(hook) == 1 else tuple(hook), scale=meta["scale"],
                   norms=None if meta["norms"] is None else {int(k): v for k, v in meta["norms"].items()},
                   positions=pos if isinstance(pos, str) else torch.tensor(pos, dtype=torch.bool),
                   source=meta.get("source", {}))
