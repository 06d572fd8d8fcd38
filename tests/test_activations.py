"""Capture equals TransformerLens' own caching, is padding-invariant, stops early, and resumes after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import GPT2_DIR
from liedetect.activations import Activations, Marker, Span, encode, extract, token_activations
from liedetect.errors import CheckpointError, DataError, LayerError

TEXTS = [
    "The capital of France is Paris. Answer: True",
    "Seven is smaller than three.",
    "Hi",
    "A much longer statement about rivers, mountains and the cities that grew along them. Answer: False",
    "Water boils at one hundred degrees.",
]


def reference(model, texts, layers, hook="resid_post"):
    """Last-token vectors from run_with_cache of each text alone (no padding, full forward)."""
    names = [f"blocks.{layer}.hook_{hook}" for layer in layers]
    rows = []
    for text in texts:
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])
        _, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
        rows.append(torch.stack([cache[n][0, -1] for n in names]))
    return torch.stack(rows)


def test_capture_matches_run_with_cache(tiny_model):
    acts = extract(tiny_model, TEXTS, layers=[0, 2], batch_size=2, progress=False)
    assert acts.acts.shape == (5, 2, 64)
    assert torch.allclose(acts.acts, reference(tiny_model, TEXTS, [0, 2]), atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side_does_not_change_vectors(tiny_model, side):
    alone = torch.cat([extract(tiny_model, [t], layers=[1], progress=False).acts for t in TEXTS])
    for position in ("last", "mean", 0, -2):
        batched = extract(tiny_model, TEXTS, layers=[1], position=position, batch_size=5, padding_side=side, progress=False)
        single = torch.cat([extract(tiny_model, [t], layers=[1], position=position, progress=False).acts for t in TEXTS])
        assert torch.allclose(batched.acts, single, atol=1e-5), position
    assert torch.allclose(extract(tiny_model, TEXTS, layers=[1], padding_side=side, progress=False).acts, alone, atol=1e-5)


def test_mean_and_all_positions_agree(tiny_model):
    every = extract(tiny_model, TEXTS, layers=[0, 2], position="all", batch_size=3, progress=False)
    mean = extract(tiny_model, TEXTS, layers=[0, 2], position="mean", batch_size=2, progress=False)
    lengths = [len(tiny_model.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert every.lengths.tolist() == lengths
    off = every.offsets
    rebuilt = torch.stack([every.acts[off[i]:off[i + 1]].mean(0) for i in range(len(TEXTS))])
    assert torch.allclose(rebuilt, mean.acts, atol=1e-5)
    last = extract(tiny_model, TEXTS, layers=[0, 2], progress=False)
    assert torch.allclose(torch.stack([every.acts[off[i + 1] - 1] for i in range(len(TEXTS))]), last.acts, atol=1e-5)


def test_marker_and_span_pick_the_answer_token(tiny_model):
    texts = [TEXTS[0], TEXTS[3]]
    every = extract(tiny_model, texts, layers=[2], position="all", progress=False)
    marker = extract(tiny_model, texts, layers=[2], position=Marker("Answer"), progress=False)
    enc = encode(tiny_model, texts)
    for i, text in enumerate(texts):
        at = text.rfind("Answer")
        k = max(j for j, (s, e) in enumerate(enc.offsets[i]) if s < at + len("Answer") and e > at)
        assert torch.allclose(marker.acts[i], every.acts[every.offsets[i] + k], atol=1e-6)
        span = extract(tiny_model, [text], layers=[2], position=Span(at, at + 6, "last"), progress=False)
        assert torch.allclose(span.acts[0], marker.acts[i], atol=1e-6)
    with pytest.raises(DataError, match="does not occur"):
        extract(tiny_model, ["no marker here"], layers=[2], position=Marker("Answer"), progress=False)


def test_capture_stops_inside_the_deepest_layer_and_agrees_with_a_full_forward(tiny_model):
    ids, mask = torch.tensor([tiny_model.tokenizer(TEXTS[3])["input_ids"]]), None
    early = token_activations(tiny_model, ids, mask, [0], "resid_post")[0]
    full = token_activations(tiny_model, ids, mask, [0, 2], "resid_post")[0]
    assert torch.allclose(early, full, atol=1e-6)
    calls = []
    handles = [tiny_model.blocks[2].register_forward_pre_hook(lambda *a: calls.append("block 2")),
               tiny_model.ln_final.register_forward_pre_hook(lambda *a: calls.append("final norm")),
               tiny_model.unembed.register_forward_pre_hook(lambda *a: calls.append("unembed"))]
    try:
        token_activations(tiny_model, ids, mask, [1], "resid_post")
        assert calls == [], "block 2 ran although only layer 1 was asked for"
        token_activations(tiny_model, ids, mask, [2], "resid_post")
        assert calls == ["block 2"], "the last block was asked for: the final norm and unembedding must not run"
        with torch.inference_mode():
            tiny_model(ids)
        assert calls == ["block 2", "block 2", "final norm", "unembed"]
    finally:
        for handle in handles:
            handle.remove()


def test_save_load_roundtrip(tiny_model, tmp_path):
    acts = extract(tiny_model, TEXTS, layers="all", position="all", labels=[1, 0, 1, 0, 1], progress=False)
    acts.save(tmp_path / "a")
    back = Activations.load(tmp_path / "a")
    assert torch.equal(back.acts, acts.acts) and torch.equal(back.lengths, acts.lengths)
    assert back.labels.tolist() == [1, 0, 1, 0, 1]
    assert (back.layers, back.hook, back.model_id, back.texts_hash) == (acts.layers, acts.hook, acts.model_id, acts.texts_hash)


def test_bad_requests_are_clear(tiny_model, tmp_path):
    with pytest.raises(LayerError, match="has 3 layers"):
        extract(tiny_model, TEXTS, layers=[5], progress=False)
    with pytest.raises(DataError, match="empty"):
        extract(tiny_model, [], layers=[0], progress=False)
    with pytest.raises(DataError, match="at most 256"):
        extract(tiny_model, ["word " * 400], layers=[0], progress=False)
    assert extract(tiny_model, ["word " * 400], layers=[0], truncate=True, progress=False).n == 1
    with pytest.raises(CheckpointError, match="not an activations folder"):
        Activations.load(tmp_path)


CHILD = textwrap.dedent(
    """
    import sys, time
    from liedetect.models import tiny_native
    from liedetect.activations import extract
    model = tiny_native(sys.argv[2], seed=0)
    model.blocks[0].register_forward_hook(lambda *a: time.sleep(0.05))
    texts = [f"statement number {i} is {'true' if i % 3 else 'false'}" for i in range(60)]
    extract(model, texts, layers=[0, 2], out=sys.argv[1], shard_size=6, batch_size=2, progress=False)
    """
)


def test_killed_sharded_run_resumes_to_identical_result(tiny_model, tmp_path):
    out = tmp_path / "acts"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(GPT2_DIR)], env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("shard-*.safetensors"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(out.glob("shard-*.safetensors"))
    assert 3 <= len(finished) < 10, "the child should have been killed midway"
    mtimes = {p.name: p.stat().st_mtime_ns for p in finished}
    with pytest.raises(CheckpointError, match="unfinished"):
        Activations.load(out)
    texts = [f"statement number {i} is {'true' if i % 3 else 'false'}" for i in range(60)]
    resumed = extract(tiny_model, texts, layers=[0, 2], out=out, shard_size=6, batch_size=2, progress=False)
    for p in finished:
        assert p.stat().st_mtime_ns == mtimes[p.name], f"{p.name} was recomputed"
    assert not list(out.glob("*.tmp"))
    whole = extract(tiny_model, texts, layers=[0, 2], batch_size=7, progress=False)
    assert torch.allclose(resumed.acts, whole.acts, atol=1e-5)
    with pytest.raises(CheckpointError, match="different capture"):
        extract(tiny_model, texts[:30], layers=[0, 2], out=out, shard_size=6, progress=False)


def test_minilm_encoder_boots_offline_and_captures(minilm_path, monkeypatch):
    from liedetect.models import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model(str(minilm_path), device="cpu")
    assert (model.cfg.n_layers, model.cfg.d_model) == (6, 384)
    texts = ["Paris is a city in France.", "Paris is a city in Japan.", "The dog barked."]
    acts = extract(model, texts, layers=[2, 5], position="mean", hook="out", batch_size=2, padding_side="left", progress=False)
    single = torch.cat([extract(model, [t], layers=[2, 5], position="mean", hook="out", progress=False).acts for t in texts])
    assert torch.allclose(acts.acts, single, atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(acts.acts[0, 1], acts.acts[1, 1], dim=0)
    far = torch.nn.functional.cosine_similarity(acts.acts[0, 1], acts.acts[2, 1], dim=0)
    assert cos > far, "a pretrained encoder puts the two Paris sentences closer than an unrelated one"


def test_bfloat16_capture_agrees_with_float32_to_bf16_precision():
    from conftest import cos
    from liedetect.models import tiny_native

    wide = extract(tiny_native(GPT2_DIR, seed=0), TEXTS, layers=[0, 2], position="mean", progress=False)
    half_model = tiny_native(GPT2_DIR, seed=0).to(torch.bfloat16)
    half = extract(half_model, TEXTS, layers=[0, 2], position="mean", progress=False)
    assert half.acts.dtype == torch.float32 and (wide.meta["dtype"], half.meta["dtype"]) == ("float32", "bfloat16")
    assert not torch.equal(half.acts, wide.acts), "the bf16 model computed in float32"
    rel = (half.acts - wide.acts).norm(dim=-1) / wide.acts.norm(dim=-1)
    assert rel.max() < 2e-2, f"relative error {rel.max():.3g} (bf16 keeps 8 bits: ~4e-3 per rounding)"
    assert min(cos(a, b) for a, b in zip(half.acts.flatten(0, 1), wide.acts.flatten(0, 1))) > 0.999
