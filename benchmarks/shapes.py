"""Real model shapes with random weights, built from a config in code (no download): Llama-3.2-1B and Llama-3.1-8B.

Used by benchmarks/bench_scale.py and benchmarks/gpu_check.py. The tokenizer is GPT-2's (../shared/tokenizers/gpt2,
or a folder passed in); the 1B shape takes its vocabulary size from it (the SmolLM2 tokenizer is not on disk here),
the 8B shape keeps Llama-3.1's 128,256 rows so its parameter count is the real one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Tuple

import torch

ROOT = Path(__file__).resolve().parent.parent
GPT2_DIR = ROOT.parent / "shared" / "tokenizers" / "gpt2"

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, tie_word_embeddings=True, max_position_embeddings=131072,
               rms_norm_eps=1e-5, rope_parameters={**LLAMA3_ROPE, "factor": 32.0}),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, tie_word_embeddings=False, max_position_embeddings=131072,
               rms_norm_eps=1e-5, rope_parameters={**LLAMA3_ROPE, "factor": 8.0}, vocab_size=128256),
}


def tokenizer(folder: Path = GPT2_DIR) -> Any:
    """GPT-2's fast tokenizer with a padding token."""
    from liedetect.models import gpt2_tokenizer

    return gpt2_tokenizer(folder)


def llama_config(shape: str, vocab_size: int) -> Any:
    """A LlamaConfig at one of SHAPES (vocabulary from the tokenizer unless the shape fixes it)."""
    from transformers import LlamaConfig

    fields = dict(SHAPES[shape])
    fields.setdefault("vocab_size", vocab_size)
    return LlamaConfig(**fields, bos_token_id=None, eos_token_id=None)


def random_llama(shape: str, dtype: torch.dtype, device: str, tok: Any, seed: int = 0) -> Any:
    """A LlamaForCausalLM at `shape` with N(0, 0.02) weights, made directly in `dtype` on `device`, eval mode."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = llama_config(shape, len(tok))
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    return model.eval()


def bridge_and_bare(shape: str, dtype: torch.dtype, device: str, tok: Any, seed: int = 0) -> Tuple[Any, Any]:
    """(liedetect bridge, a separate plain transformers copy with the same weights and eager attention).

    The bridge forces eager attention (its attention hooks need it); the bare copy uses it too, so the two
    forwards do the same arithmetic and the ratio measures liedetect and TransformerLens alone.
    """
    from transformer_lens.model_bridge import TransformerBridge

    from liedetect.models import _finish

    hf = random_llama(shape, dtype, device, tok, seed)
    bare = copy.deepcopy(hf)
    bare.set_attn_implementation("eager")
    bridge = TransformerBridge.boot_transformers("LlamaForCausalLM", hf_model=hf, tokenizer=tok, device=device)
    return _finish(bridge, f"random-llama-{shape}"), bare.eval()


def param_count(model: Any) -> int:
    """Parameters of a module, tied weights counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
