"""Bake a directional ablation into the weights: every matrix that writes to the residual stream loses its component on d."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import torch

from liedetect.errors import SteeringError
from liedetect.steering.checks import as_rows
from liedetect.steering.spec import SteeringSpec

# The hook placement that the weight edit reproduces: the residual stream after every write.
ABLATION_HOOKS = ("resid_pre", "resid_mid", "resid_post")


def _basis(directions: Any, d_model: int) -> torch.Tensor:
    """Orthonormal rows [k, d] spanning the given direction(s) or a spec's directions (all layers pooled)."""
    if isinstance(directions, SteeringSpec):
        rows = torch.cat([directions.directions[layer] for layer in directions.layers])
    else:
        rows = as_rows(directions, "orthogonalisation")
    if rows.shape[-1] != d_model:
        raise SteeringError(f"The direction has width {rows.shape[-1]} but this model's residual stream has {d_model}; "
                            f"use a direction found on this model.")
    q, r = torch.linalg.qr(rows.T.double())
    keep = r.diagonal().abs() > 1e-8 * r.diagonal().abs().max()
    return q.T[keep]


def _writers(model: Any) -> List[Tuple[str, torch.nn.Module, str]]:
    """(name, module, layout) for each module whose output is added to the residual stream.

    layout 'rows': the residual width is the last dim of the weight (embeddings, Conv1D: x @ W).
    layout 'out':  the residual width is the first dim (nn.Linear: x @ W.T).
    """
    out: List[Tuple[str, torch.nn.Module, str]] = []

    def add(name: str, bridge_part: Any) -> None:
        module = getattr(bridge_part, "original_component", None)
        if module is None or getattr(module, "weight", None) is None:
            raise SteeringError(f"Cannot find the weights of {name} in this model; orthogonalisation supports decoder "
                                f"models with embed, attn.o and mlp.out components.")
        if isinstance(module, torch.nn.Embedding) or type(module).__name__ == "Conv1D":
            out.append((name, module, "rows"))
        elif isinstance(module, torch.nn.Linear):
            out.append((name, module, "out"))
        else:
            raise SteeringError(f"{name} is a {type(module).__name__}, which orthogonalisation does not know how to edit.")

    add("embed", model.embed)
    if hasattr(model, "pos_embed"):
        add("pos_embed", model.pos_embed)
    for i, block in enumerate(model.blocks):
        add(f"blocks.{i}.attn.o", block.attn.o)
        if hasattr(block, "mlp"):
            add(f"blocks.{i}.mlp.out", block.mlp.out)
    return out


def _untie_unembedding(model: Any) -> None:
    """Give the unembedding its own weight when it shares storage with the embedding (GPT-2), so only inputs change."""
    unembed = getattr(getattr(model, "unembed", None), "original_component", None)
    embed = model.embed.original_component
    if unembed is not None and unembed.weight.data_ptr() == embed.weight.data_ptr():
        unembed.weight = torch.nn.Parameter(unembed.weight.detach().clone())
        config = getattr(getattr(model, "original_model", None), "config", None)
        if config is not None and hasattr(config, "tie_word_embeddings"):
            config.tie_word_embeddings = False


def _copy_model(model: Any) -> Any:
    """Deep copy a bridge; activations some components keep from their last forward (graph tensors) are copied detached."""
    memo = {id(model.tokenizer): model.tokenizer} if getattr(model, "tokenizer", None) is not None else {}
    for module in model.modules():
        for value in vars(module).values():
            items = value.values() if isinstance(value, dict) else [value]
            for item in items:
                if isinstance(item, torch.Tensor) and not item.is_leaf:
                    memo[id(item)] = item.detach().clone()
    return copy.deepcopy(model, memo)


@torch.no_grad()
def orthogonalize(model: Any, directions: Any, inplace: bool = False) -> Any:
    """A copy of `model` (or the model itself with inplace=True) whose residual stream never holds a component on `directions`.

    Equivalent to ablating the directions with hooks at resid_pre, resid_mid and resid_post of every
    layer (`ablation_spec`), without hooks.
    """
    target = model if inplace else _copy_model(model)
    basis = _basis(directions, target.cfg.d_model)
    _untie_unembedding(target)
    for _name, module, layout in _writers(target):
        w = module.weight
        q = basis.to(w.device, torch.float64)
        w64 = w.double()
        if layout == "rows":
            w.copy_(w64 - (w64 @ q.T) @ q)
        else:
            w.copy_(w64 - q.T @ (q @ w64))
        bias = getattr(module, "bias", None)
        if bias is not None:
            b64 = bias.double()
            bias.copy_(b64 - (b64 @ q.T) @ q)
    if hasattr(target, "liedetect_id"):
        target.liedetect_id = f"{target.liedetect_id}+orth{basis.shape[0]}"
    return target


def ablation_spec(directions: Any, model: Any) -> SteeringSpec:
    """The hook-based ablation that `orthogonalize` reproduces: every layer, after every residual write."""
    basis = _basis(directions, model.cfg.d_model).float()
    return SteeringSpec(directions={layer: basis for layer in range(model.cfg.n_layers)}, op="ablate",
                        hook=ABLATION_HOOKS, source={"kind": "orthogonalisation"})


def save_orthogonalized(model: Any, directions: Any, out: Union[str, Path]) -> Path:
    """Write an orthogonalised copy to `out`: a Hugging Face folder (HF-backed models) or safetensors + config (TL-native)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    edited = orthogonalize(model, directions)
    inner = getattr(edited, "original_model", None)
    if inner is not None and hasattr(inner, "save_pretrained"):
        inner.save_pretrained(str(out))
        if edited.tokenizer is not None:
            edited.tokenizer.save_pretrained(str(out))
        return out
    from safetensors.torch import save_file

    state, seen = {}, set()
    for key, value in inner.state_dict().items():  # the bridge registers each weight under several aliases
        if value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            state[key] = value.detach().contiguous()
    save_file(state, str(out / "model.safetensors"))
    cfg = {k: v for k, v in vars(edited.cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}
    (out / "native_config.json").write_text(json.dumps(cfg, indent=2))
    if edited.tokenizer is not None:
        edited.tokenizer.save_pretrained(str(out))
    return out


def load_orthogonalized(path: Union[str, Path], device: Optional[str] = None) -> Any:
    """Load a TL-native copy written by `save_orthogonalized` (HF folders load with `liedetect.models.load_model`)."""
    from safetensors.torch import load_file
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "native_config.json").exists():
        from liedetect.models import load_model

        return load_model(str(path), device=device)
    cfg_dict = json.loads((path / "native_config.json").read_text())
    cfg_dict["tokenizer_name"] = str(path)
    cfg = TransformerBridgeConfig.from_dict(cfg_dict)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = TransformerBridge.boot_native(cfg, tokenizer=tok, device=device)
    missing, unexpected = model.original_model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
    if unexpected:
        raise SteeringError(f"{path} holds weights this model does not have ({unexpected[0]}, ...); it was saved from another architecture.")
    model.eval()
    return model
