"""Steer a model along truth directions at inference: add, ablate or set a projection, from hooks that always come off."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from liedetect.bos import prompt_tokens
from liedetect.compat import check_generation_versions
from liedetect.errors import DataError, LayerError, SteeringError
from liedetect.models import check_hook, resolve_layers
from liedetect.progress import progress_bar

OPS = ("add", "ablate", "set")
POSITIONS = ("all", "prompt", "generated")
SCALES = ("raw", "norm")

# A few plain sentences to measure the typical residual norm of a layer when the user gives none.
NORM_TEXTS = (
    "The capital of France is Paris, and it lies on the river Seine.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the window and looked at the garden for a long time.",
    "Mathematics is the study of numbers, shapes and patterns.",
    "The train to the city leaves every hour from the main station.",
    "Honey bees live in colonies with a single queen.",
    "He wrote a letter to his grandmother about the summer holidays.",
    "The museum is closed on Mondays but open late on Fridays.",
)

Positions = Union[str, torch.Tensor]
Metric = Callable[[Any], float]


# ---------------------------------------------------------------- the specification


def _as_rows(direction: Any, where: str) -> torch.Tensor:
    """A direction (or k directions) as unit rows [k, d] in float32."""
    t = torch.as_tensor(direction).detach().to("cpu", torch.float32)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] == 0:
        raise SteeringError(f"The direction for {where} has shape {tuple(t.shape)}; pass a [d] vector or a [k, d] matrix.")
    if not torch.isfinite(t).all():
        raise SteeringError(f"The direction for {where} contains NaN or infinite values; refit the probe or fix the tensor.")
    norms = t.norm(dim=-1, keepdim=True)
    if (norms < 1e-12).any():
        raise SteeringError(f"The direction for {where} is a zero vector; a direction needs a non-zero length.")
    return t / norms


@dataclass
class SteeringSpec:
    """Directions per layer plus where and how to apply them.

    `directions` maps a layer to unit rows `[k, d]`; its keys are the layers acted on. `op` is `add`
    (x + alpha * d for each row), `ablate` (remove the projection on the span of the rows) or `set`
    (set the projection on each orthonormalised row to alpha). With `scale="norm"` alpha is in units of
    the typical residual norm of each layer, measured on a few texts (`calibrate`), so alphas transfer
    between models. `positions` is `all`, `prompt`, `generated` or a boolean mask over absolute token
    positions (`[seq]` or `[batch, seq]`). `hook` is one residual hook or several (e.g. pre, mid and post).
    """

    directions: Dict[int, torch.Tensor]
    op: str = "add"
    alpha: float = 1.0
    positions: Positions = "all"
    hook: Union[str, Tuple[str, ...]] = "resid_post"
    scale: str = "raw"
    norms: Optional[Dict[int, float]] = None
    source: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.directions:
            raise SteeringError("A steering spec needs at least one layer with a direction.")
        self.directions = {int(k): _as_rows(v, f"layer {k}") for k, v in self.directions.items()}
        widths = {v.shape[-1] for v in self.directions.values()}
        if len(widths) != 1:
            raise SteeringError(f"The directions have different widths {sorted(widths)}; use one model's residual width.")
        if self.op not in OPS:
            raise SteeringError(f"Unknown steering operation {self.op!r}; use one of {', '.join(OPS)}.")
        if self.scale not in SCALES:
            raise SteeringError(f"Unknown alpha scale {self.scale!r}; use 'raw' or 'norm'.")
        _check_alpha(self.alpha)
        if isinstance(self.positions, str) and self.positions not in POSITIONS:
            raise SteeringError(f"Unknown positions {self.positions!r}; use all, prompt, generated or a boolean mask.")
        if isinstance(self.positions, torch.Tensor) and self.positions.dtype != torch.bool:
            raise SteeringError("A position mask must be a boolean tensor over token positions.")
        if isinstance(self.hook, (list, tuple)):
            self.hook = tuple(self.hook)

    # ---- constructors

    @classmethod
    def from_tensor(cls, direction: Any, layers: Union[int, Sequence[int]], **kwargs: Any) -> "SteeringSpec":
        """The same direction (or k directions) at every layer listed."""
        layer_list = [layers] if isinstance(layers, int) else list(layers)
        rows = _as_rows(direction, "the tensor")
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
            layer_list = _check_layers(model, layer_list)
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

    def with_alpha(self, alpha: float) -> "SteeringSpec":
        """The same spec with another alpha."""
        return replace(self, alpha=_check_alpha(alpha))

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
        return (f"{self.op}{amount} of {k} direction(s) at layers {self.layers} ({'/'.join(self.hooks)}, "
                f"positions {where}, source {self.source.get('kind', '?')})")

    def save(self, path: Union[str, Path]) -> Path:
        """Write the directions as safetensors plus a JSON sidecar (`path` without suffix or .safetensors)."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({f"direction.{k}": v.contiguous() for k, v in self.directions.items()}, str(path))
        meta = {"format": "liedetect.steering/1", "op": self.op, "alpha": self.alpha, "hook": list(self.hooks),
                "scale": self.scale, "norms": self.norms, "source": self.source,
                "positions": self.positions if isinstance(self.positions, str) else self.positions.tolist()}
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
        return cls(directions={int(k.split(".")[1]): v for k, v in tensors.items()}, op=meta["op"], alpha=meta["alpha"],
                   hook=hook[0] if len(hook) == 1 else tuple(hook), scale=meta["scale"],
                   norms=None if meta["norms"] is None else {int(k): v for k, v in meta["norms"].items()},
                   positions=pos if isinstance(pos, str) else torch.tensor(pos, dtype=torch.bool),
                   source=meta.get("source", {}))


def _check_alpha(alpha: Any) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise SteeringError(f"Alpha must be a number, got {alpha!r}.") from None
    if not math.isfinite(value):
        raise SteeringError(f"Alpha is {value}; steering needs a finite number such as 4.0.")
    return value


def _check_layers(model: Any, layers: Sequence[int]) -> List[int]:
    n = model.cfg.n_layers
    for layer in layers:
        if not -n <= int(layer) < n:
            raise LayerError(f"Layer {layer} does not exist: this model has {n} layers (0..{n - 1}).")
    return [int(layer) % n for layer in layers]


def direction_from_probe(probe: Any) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """The unit direction and metadata of a saved probe (path) or of a fitted probe object."""
    meta: Dict[str, Any] = {}
    if isinstance(probe, (str, Path)):
        import probes

        from probes.errors import ProbeError

        try:
            obj = probes.load(probe)
        except ProbeError as exc:
            raise SteeringError(f"Cannot read the probe at {probe}: {exc}") from None
        meta["path"] = str(probe)
        probe = obj
    direction = getattr(probe, "direction_", None)
    if direction is None:
        raise SteeringError("The probe has no direction_; fit it before steering with it.")
    for attr in ("meta_", "meta", "metadata_", "metadata"):
        found = getattr(probe, attr, None)
        if isinstance(found, dict):
            meta = {**found, **meta}
            break
    meta.setdefault("method", type(probe).__name__)
    return _as_rows(direction, "the probe")[0], meta


def contrast_directions(model: Any, pos_texts: Sequence[str], neg_texts: Sequence[str],
                        layers: Union[str, int, Sequence[int]], position: Any = "last", hook: str = "resid_post",
                        progress: bool = False) -> Dict[int, torch.Tensor]:
    """Unit mean-difference directions {layer: [d]} from paired contrast texts (CAA / ActAdd)."""
    from liedetect.activations import extract

    if len(pos_texts) != len(neg_texts) or not pos_texts:
        raise DataError(f"Contrast pairs need as many positive as negative texts, and at least one "
                        f"(got {len(pos_texts)} and {len(neg_texts)}).")
    layer_list = resolve_layers(layers, model.cfg.n_layers)
    acts = extract(model, list(pos_texts) + list(neg_texts), layers=layer_list, position=position, hook=hook,
                   progress=progress)
    n = len(pos_texts)
    out = {}
    for layer in layer_list:
        x = acts.layer(layer)
        diff = x[:n].mean(0) - x[n:].mean(0)
        out[layer] = _as_rows(diff, f"layer {layer} (the two sides have equal means)")[0]
    return out


def residual_norms(model: Any, layers: Sequence[int], texts: Optional[Sequence[str]] = None,
                   hook: str = "resid_post") -> Dict[int, float]:
    """Median L2 norm of the residual stream per token at each layer, measured on `texts`."""
    from liedetect.activations import extract

    if not texts:
        world = getattr(model, "organism_world", None)  # the organism speaks its own language, not English
        texts = [p.text for p in world.prompts(16, split="train", seed=0)] if world is not None else NORM_TEXTS
    acts = extract(model, list(texts), layers=list(layers), position="all", hook=hook, progress=False)
    return {layer: float(acts.layer(layer).norm(dim=-1).median()) for layer in layers}


# ---------------------------------------------------------------- the context manager


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
    """Steers a TransformerBridge inside a `with` block; the hooks come off on exit, also after an exception."""

    def __init__(self, model: Any, spec: SteeringSpec, prompt_len: Optional[int] = None) -> None:
        self.model = model
        self.spec = spec
        self.prompt_len = prompt_len
        self._stack: Optional[contextlib.ExitStack] = None
        self.tracker: Optional[_Tracker] = None

    def validate(self) -> List[Tuple[str, int]]:
        """Check the spec against the model; return the (hook name, layer) pairs to act on."""
        model, spec = self.model, self.spec
        d_model = model.cfg.d_model
        if spec.d_model != d_model:
            raise SteeringError(f"The steering direction has width {spec.d_model} but this model's residual stream has "
                                f"{d_model}; use a direction found on this model.")
        layers = _check_layers(model, spec.layers)
        if layers != spec.layers:  # negative layers count from the end
            norms = None if spec.norms is None else {layer % model.cfg.n_layers: v for layer, v in spec.norms.items()}
            self.spec = spec = replace(spec, directions={layer % model.cfg.n_layers: v for layer, v in spec.directions.items()},
                                       norms=norms)
            layers = spec.layers
        if spec.scale == "norm" and spec.op != "ablate":
            if spec.norms is None or any(layer not in spec.norms for layer in layers):
                spec.calibrate(model)
        return [(check_hook(model, layer, hook), layer) for layer in layers for hook in spec.hooks]

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
        return fn

    def __enter__(self) -> "Steering":
        targets = self.validate()
        stack = contextlib.ExitStack()
        try:
            needs_positions = not (isinstance(self.spec.positions, str) and self.spec.positions == "all")
            if needs_positions:
                self.tracker = _Tracker(self.prompt_len)
                handle = self.model.register_forward_pre_hook(self.tracker.pre_hook, with_kwargs=True)
                stack.callback(handle.remove)
            fns = {layer: self._make_fn(layer) for layer in self.spec.layers}
            stack.enter_context(self.model.hooks(fwd_hooks=[(name, fns[layer]) for name, layer in targets]))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()


def steer(model: Any, spec: SteeringSpec, alpha: Optional[float] = None, prompt_len: Optional[int] = None) -> Steering:
    """Context manager: `with steer(model, spec): ...` steers every forward and generate inside the block."""
    return spec.apply(model, alpha=alpha, prompt_len=prompt_len)


@contextlib.contextmanager
def maybe_steer(model: Any, spec: Optional[SteeringSpec], alpha: Optional[float] = None) -> Iterator[None]:
    """`steer` when a spec is given, else nothing (for code paths that compare with and without)."""
    if spec is None:
        yield
        return
    with steer(model, spec, alpha=alpha):
        yield


def generate(model: Any, prompts: Union[str, Sequence[str]], spec: Optional[SteeringSpec] = None,
             alpha: Optional[float] = None, max_new_tokens: int = 30, greedy: bool = True, seed: int = 0) -> List[str]:
    """Continuations of each prompt (prompt text excluded), steered by `spec` when given."""
    check_generation_versions()
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    out = []
    for prompt in prompt_list:
        torch.manual_seed(seed)
        tokens = prompt_tokens(model, prompt)  # the model's BOS policy, as in extract; a chat prompt keeps its own tokens
        with maybe_steer(model, spec, alpha=alpha), torch.no_grad():
            result = model.generate(tokens, max_new_tokens=max_new_tokens, do_sample=not greedy, verbose=False,
                                    use_past_kv_cache=True, stop_at_eos=True, return_type="tokens")
        out.append(model.tokenizer.decode(result[0, tokens.shape[1]:], skip_special_tokens=True))
    return out


def compare_generations(model: Any, prompts: Union[str, Sequence[str]], spec: SteeringSpec, max_new_tokens: int = 30,
                        greedy: bool = True, seed: int = 0) -> List[Dict[str, str]]:
    """Unsteered and steered continuations of each prompt: [{'prompt', 'unsteered', 'steered'}]."""
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    plain = generate(model, prompt_list, None, max_new_tokens=max_new_tokens, greedy=greedy, seed=seed)
    steered = generate(model, prompt_list, spec, max_new_tokens=max_new_tokens, greedy=greedy, seed=seed)
    return [{"prompt": p, "unsteered": a, "steered": b} for p, a, b in zip(prompt_list, plain, steered)]


# ---------------------------------------------------------------- sweeps


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
        total = 0.0
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            enc = model.tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left")
            device = next(model.parameters()).device
            with torch.no_grad():
                logits = model(enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                               return_type="logits")
            total += logits[:, -1].float().softmax(-1)[:, ids[0]].sum().item()
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
    alphas = [_check_alpha(a) for a in alphas]
    with torch.no_grad():
        baseline = float(metric(model))
    rows = []
    with progress_bar("steering sweep", total=len(settings) * len(alphas), enabled=progress) as advance:
        for setting in settings:
            sub = spec.at_layers(_check_layers(model, setting))
            for alpha in alphas:
                with steer(model, sub, alpha=alpha), torch.no_grad():
                    value = float(metric(model))
                rows.append({"layers": sub.layers, "alpha": alpha, "value": value})
                advance(1)
    return SweepResult(metric=getattr(metric, "__name__", "metric"), rows=rows, baseline=baseline, spec=spec.summary())
