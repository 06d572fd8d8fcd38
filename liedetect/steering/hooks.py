"""The steering context manager: hooks that act on the residual stream inside a `with` block and always come off,
and the position tracker that tells prompt tokens from generated ones (also with a KV cache)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Callable, Iterator, List, Optional, Tuple

import torch

from liedetect.errors import SteeringError
from liedetect.models import check_hook
from liedetect.steering.checks import check_layers
from liedetect.steering.gate import HOOK_ORDER


class _Tracker:
    """Knows the absolute position of the tokens in each forward, and where the prompt ends.

    With a KV cache a step feeds one token and `past_key_values` says how many came before. Without one
    (TL-native models, `use_past_kv_cache=False`) each step re-feeds the whole sequence: a forward whose
    tokens extend the previous forward's tokens is a continuation and keeps the prompt length; anything
    else is a new prompt.
    """

    def __init__(self, prompt_len: Optional[int]) -> None:
        self.fixed = prompt_len
        self.prompt_len: Optional[int] = prompt_len
        self.offset = 0
        self._last: Optional[torch.Tensor] = None

    def pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = args[0] if args else kwargs.get("input")
        cache = kwargs.get("past_key_values")
        past = 0
        if cache is not None:
            length = getattr(cache, "get_seq_length", None)
            past = int(length()) if callable(length) else 0
        self.offset = past
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.long, torch.int, torch.int32):
            if past == 0:
                self._last = None
                self.prompt_len = self.fixed  # set from the first hooked activation
            return
        if ids.ndim == 1:
            ids = ids[None]
        if past > 0:
            if self._last is not None and self._last.shape[0] == ids.shape[0]:
                self._last = torch.cat([self._last, ids], dim=1)
            return
        last = self._last
        continuation = (last is not None and last.shape[0] == ids.shape[0] and last.shape[1] < ids.shape[1]
                        and torch.equal(ids[:, :last.shape[1]], last))
        if not continuation:
            self.prompt_len = self.fixed if self.fixed is not None else ids.shape[1]
        self._last = ids

    def split(self, seq: int) -> int:
        """The index in this forward's sequence where generated tokens start."""
        if self.prompt_len is None:
            self.prompt_len = self.offset + seq
        return min(seq, max(0, self.prompt_len - self.offset))


class Steering:
    """Steers a TransformerBridge inside a `with` block; the hooks come off on exit, also after an exception.

    `spec` is a `SteeringSpec` (this module does not import it: the spec imports this module for `apply`).
    """

    def __init__(self, model: Any, spec: Any, prompt_len: Optional[int] = None) -> None:
        self.model = model
        self.spec = spec
        self.prompt_len = prompt_len
        self._stack: Optional[contextlib.ExitStack] = None
        self.tracker: Optional[_Tracker] = None
        self.opened: Optional[torch.Tensor] = None  # with a gate: its decision for each row of the latest prompt

    def validate(self) -> List[Tuple[str, int]]:
        """Check the spec against the model; return the (hook name, layer) pairs to act on."""
        model, spec = self.model, self.spec
        d_model = model.cfg.d_model
        if spec.d_model != d_model:
            raise SteeringError(f"The steering direction has width {spec.d_model} but this model's residual stream has "
                                f"{d_model}; use a direction found on this model.")
        layers = check_layers(model, spec.layers)
        if layers != spec.layers:  # negative layers count from the end
            norms = None if spec.norms is None else {layer % model.cfg.n_layers: v for layer, v in spec.norms.items()}
            self.spec = spec = replace(spec, directions={layer % model.cfg.n_layers: v for layer, v in spec.directions.items()},
                                       norms=norms)
            layers = spec.layers
        if spec.scale == "norm" and spec.op != "ablate":
            if spec.norms is None or any(layer not in spec.norms for layer in layers):
                spec.calibrate(model)
        if spec.gate is not None:
            self._check_gate(spec.gate, layers)
        return [(check_hook(model, layer, hook), layer) for layer in layers for hook in spec.hooks]

    def _check_gate(self, gate: Any, layers: List[int]) -> None:
        """The gate must read the prompt before the first steered hook acts on it (its width is the spec's, which
        `validate` has checked against the model)."""
        layer = check_layers(self.model, [gate.layer])[0]
        if layer != gate.layer:  # a negative layer counts from the end
            self.spec = replace(self.spec, gate=replace(gate, layer=layer))
        if any(h not in HOOK_ORDER for h in self.spec.hooks):
            raise SteeringError(f"A gate works with residual hooks ({', '.join(HOOK_ORDER)}); this spec steers {self.spec.hook}.")
        first = min((layer, HOOK_ORDER.index(h)) for layer in layers for h in self.spec.hooks)
        if (layer, HOOK_ORDER.index(gate.hook)) > first:
            raise SteeringError(f"The gate reads layer {gate.layer} ({gate.hook}), after the first steered hook at layer "
                                f"{first[0]} ({HOOK_ORDER[first[1]]}); gate at or before it, so it sees the prompt unsteered.")

    def _gate_fn(self) -> Callable:
        """Decides, on each forward that reads a prompt's end, which rows the steering hooks act on."""
        gate, tracker = self.spec.gate, self.tracker

        def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
            cut = tracker.split(x.shape[1])
            if cut > 0:  # this forward holds the prompt's last token; later steps keep its decision
                self.opened = gate.decide(x[:, cut - 1])
            return x
        return fn

    def _make_fn(self, layer: int) -> Callable:
        spec = self.spec
        rows = spec.directions[layer]
        factor = spec.alpha * (spec.norms[layer] if spec.scale == "norm" and spec.op != "ablate" else 1.0)
        device = next(self.model.parameters()).device
        if spec.op == "add":
            vec = (factor * rows.sum(0)).to(device)

            def op(x: torch.Tensor) -> torch.Tensor:
                return x + vec.to(x.dtype)
        else:
            basis = torch.linalg.qr(rows.T.double())[0].T.float().to(device)  # orthonormal rows spanning the directions
            value = factor if spec.op == "set" else 0.0

            def op(x: torch.Tensor) -> torch.Tensor:
                q = basis.to(x.dtype)
                coef = x @ q.T
                return x + (value - coef) @ q

        positions = spec.positions
        tracker = self.tracker
        if isinstance(positions, str) and positions == "all":
            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                return op(x)
        elif isinstance(positions, str):
            prompt = positions == "prompt"

            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                cut = tracker.split(x.shape[1])
                if prompt:
                    return x if cut == 0 else torch.cat([op(x[:, :cut]), x[:, cut:]], dim=1)
                return x if cut == x.shape[1] else torch.cat([x[:, :cut], op(x[:, cut:])], dim=1)
        else:
            mask = positions.to(device)

            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                start, seq = tracker.offset, x.shape[1]
                m = mask[..., start:start + seq]
                if m.shape[-1] < seq:  # positions past the mask are not steered
                    pad = torch.zeros(*m.shape[:-1], seq - m.shape[-1], dtype=torch.bool, device=m.device)
                    m = torch.cat([m, pad], dim=-1)
                if m.ndim == 1:
                    m = m[None]
                return torch.where(m[..., None], op(x), x)
        if self.spec.gate is None:
            return fn
        ungated = fn

        def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
            opened = self.opened
            if opened is None or not bool(opened.any()):
                return x
            if opened.shape[0] != x.shape[0]:
                raise SteeringError(f"The gate decided for {opened.shape[0]} rows but this forward has {x.shape[0]}.")
            return torch.where(opened.to(x.device)[:, None, None], ungated(x, hook), x)
        return fn

    def __enter__(self) -> "Steering":
        targets = self.validate()
        self.opened = None
        stack = contextlib.ExitStack()
        try:
            gate = self.spec.gate
            needs_positions = gate is not None or not (isinstance(self.spec.positions, str) and self.spec.positions == "all")
            if needs_positions:
                self.tracker = _Tracker(self.prompt_len)
                handle = self.model.register_forward_pre_hook(self.tracker.pre_hook, with_kwargs=True)
                stack.callback(handle.remove)
            fns = {layer: self._make_fn(layer) for layer in self.spec.layers}
            first = [(check_hook(self.model, gate.layer, gate.hook), self._gate_fn())] if gate is not None else []
            stack.enter_context(self.model.hooks(fwd_hooks=first + [(name, fns[layer]) for name, layer in targets]))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()


def steer(model: Any, spec: Any, alpha: Optional[float] = None, prompt_len: Optional[int] = None) -> Steering:
    """Context manager: `with steer(model, spec): ...` steers every forward and generate inside the block."""
    return spec.apply(model, alpha=alpha, prompt_len=prompt_len)


@contextlib.contextmanager
def maybe_steer(model: Any, spec: Optional[Any], alpha: Optional[float] = None) -> Iterator[None]:
    """`steer` when a spec is given, else nothing (for code paths that compare with and without)."""
    if spec is None:
        yield
        return
    with steer(model, spec, alpha=alpha):
        yield
