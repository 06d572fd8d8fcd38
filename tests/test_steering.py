"""Steering on small random models: restoration, KV-cache generation, operations, orthogonalisation, GGUF, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liedetect.errors import LayerError, SteeringError
from liedetect.steering import SteeringSpec, contrast_directions, steer, steering_sweep

TEXT = "The capital of France is Paris and the capital of Spain is"


def _unit(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _resid(model, tokens, layer, hook="resid_post"):
    _, cache = model.run_with_cache(tokens, names_filter=[f"blocks.{layer}.hook_{hook}"])
    return cache[f"blocks.{layer}.hook_{hook}"]


# ---------------------------------------------------------------- restoration and nesting


def test_restores_bit_identical_logits_after_use_and_after_exception(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    before = tiny_model(toks)
    spec = SteeringSpec.from_tensor(_unit(64, 0), [0, 1, 2], alpha=10.0)
    with steer(tiny_model, spec):
        steered = tiny_model(toks)
    assert (steered - before).abs().max() > 0.1  # steering did something
    assert torch.equal(tiny_model(toks), before)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(tiny_model, spec):
            raise RuntimeError("boom")
    assert torch.equal(tiny_model(toks), before)
    assert all(not hp.fwd_hooks for hp in tiny_model.hook_dict.values())
    assert not tiny_model._forward_pre_hooks


def test_nesting_composes_and_unwinds(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    a = SteeringSpec.from_tensor(_unit(64, 1), [1], alpha=5.0)
    b = SteeringSpec.from_tensor(_unit(64, 2), [1], alpha=-3.0)
    both_at_once = SteeringSpec(directions={1: (5.0 * a.directions[1] - 3.0 * b.directions[1])}, alpha=1.0)
    scale = float((5.0 * a.directions[1] - 3.0 * b.directions[1]).norm())
    with steer(tiny_model, a):
        only_a = tiny_model(toks)
        with steer(tiny_model, b):
            nested = tiny_model(toks)
        after_inner = tiny_model(toks)
    with steer(tiny_model, both_at_once, alpha=scale):
        combined = tiny_model(toks)
    assert torch.allclose(nested, combined, atol=1e-4)
    assert torch.equal(after_inner, only_a)


# ---------------------------------------------------------------- operations


def test_add_ablate_set_move_the_projection_exactly(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    d = _unit(64, 3)
    base = _resid(tiny_model, toks, 1) @ d
    with steer(tiny_model, SteeringSpec.from_tensor(d, [1], op="add", alpha=2.5)):
        added = _resid(tiny_model, toks, 1) @ d
    with steer(tiny_model, SteeringSpec.from_tensor(d, [1], op="ablate")):
        ablated = _resid(tiny_model, toks, 1)
    with steer(tiny_model, SteeringSpec.from_tensor(d, [1], op="set", alpha=-7.0)):
        set_ = _resid(tiny_model, toks, 1) @ d
    assert torch.allclose(added - base, torch.full_like(base, 2.5), atol=1e-4)
    assert (ablated @ d).abs().max() < 1e-4
    assert torch.allclose(set_, torch.full_like(set_, -7.0), atol=1e-4)
    # ablation leaves the orthogonal complement alone
    plain = _resid(tiny_model, toks, 1)
    assert torch.allclose(ablated, plain - (plain @ d)[..., None] * d, atol=1e-4)


def test_ablating_two_directions_removes_their_span(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    u, v = _unit(64, 4), _unit(64, 5)
    with steer(tiny_model, SteeringSpec.from_tensor(torch.stack([u, v]), [2], op="ablate")):
        r = _resid(tiny_model, toks, 2)
    assert (r @ u).abs().max() < 1e-4 and (r @ v).abs().max() < 1e-4
    assert (r @ ((u + v) / (u + v).norm())).abs().max() < 1e-4


def test_position_mask_steers_only_the_masked_tokens(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    seq = toks.shape[1]
    mask = torch.zeros(seq, dtype=torch.bool)
    mask[5] = True
    before = tiny_model(toks)
    with steer(tiny_model, SteeringSpec.from_tensor(_unit(64, 6), [0], alpha=20.0, positions=mask)):
        after = tiny_model(toks)
    assert torch.equal(after[:, :5], before[:, :5])  # causal: earlier positions cannot see it
    assert (after[:, 5] - before[:, 5]).abs().max() > 0.1
    with steer(tiny_model, SteeringSpec.from_tensor(_unit(64, 6), [0], alpha=20.0, positions="prompt"), prompt_len=4):
        prompt_only = tiny_model(toks)
    with steer(tiny_model, SteeringSpec.from_tensor(_unit(64, 6), [0], alpha=20.0, positions="generated"), prompt_len=4):
        gen_only = tiny_model(toks)
    assert torch.equal(gen_only[:, :4], before[:, :4]) and not torch.equal(prompt_only[:, :4], before[:, :4])


def test_norm_scale_uses_the_measured_residual_norm(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    d = _unit(64, 7)
    spec = SteeringSpec.from_tensor(d, [2], alpha=0.5, scale="norm")
    base = _resid(tiny_model, toks, 2) @ d
    with steer(tiny_model, spec):
        moved = _resid(tiny_model, toks, 2) @ d
    norm = spec.norms[2]
    typical = _resid(tiny_model, toks, 2).norm(dim=-1).median().item()
    assert 0.5 * typical < norm < 2 * typical
    assert torch.allclose(moved - base, torch.full_like(base, 0.5 * norm), atol=1e-3)


# ---------------------------------------------------------------- generation with the KV cache


def _reforward_greedy(model, spec, toks, steps):
    cur, logits = toks, []
    with steer(model, spec):  # prompt length detected from the growing sequence, no hint given
        for _ in range(steps):
            last = model(cur)[:, -1]
            logits.append(last)
            cur = torch.cat([cur, last.argmax(-1, keepdim=True)], dim=1)
    return cur, logits


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_generate_with_kv_cache_equals_full_reforward(gpt2_small, positions):
    model = gpt2_small
    toks = model.to_tokens(TEXT)
    spec = SteeringSpec.from_tensor(_unit(64, 8), [1], alpha=30.0, positions=positions)
    with steer(model, spec):
        out = model.generate(toks, max_new_tokens=6, do_sample=False, verbose=False, use_past_kv_cache=True,
                             stop_at_eos=False, output_logits=True)
    ref_tokens, ref_logits = _reforward_greedy(model, spec, toks, 6)
    assert torch.equal(out.sequences, ref_tokens)
    assert max((a - b).abs().max().item() for a, b in zip(out.logits, ref_logits)) < 1e-4
    plain = model.generate(toks, max_new_tokens=6, do_sample=False, verbose=False, stop_at_eos=False,
                           output_logits=True)
    assert max((a - b).abs().max().item() for a, b in zip(plain.logits, out.logits)) > 1e-2  # steering acted


def test_generated_positions_are_steered_on_a_model_without_kv_cache(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    spec = SteeringSpec.from_tensor(_unit(64, 9), [1], alpha=30.0, positions="generated")
    with steer(tiny_model, spec):
        out = tiny_model.generate(toks, max_new_tokens=5, do_sample=False, verbose=False, stop_at_eos=False,
                                  output_logits=True)
    ref_tokens, ref_logits = _reforward_greedy(tiny_model, spec, toks, 5)
    assert torch.equal(out.sequences, ref_tokens)
    assert max((a - b).abs().max().item() for a, b in zip(out.logits, ref_logits)) < 1e-4
    plain = tiny_model.generate(toks, max_new_tokens=5, do_sample=False, verbose=False, stop_at_eos=False,
                                output_logits=True)
    assert torch.equal(plain.logits[0], out.logits[0])  # first new token comes from the unsteered prompt
    assert (plain.logits[1] - out.logits[1]).abs().max() > 1e-2  # later ones read a steered token


# ---------------------------------------------------------------- directions from data


def test_contrast_direction_recovers_a_planted_shift(tiny_model):
    from liedetect.activations import extract

    texts = ["The sky is blue.", "Dogs bark at night.", "Ice is cold.", "Bread is baked in an oven."]
    planted = _unit(64, 10)
    with steer(tiny_model, SteeringSpec.from_tensor(planted, [0], alpha=3.0)):
        shifted = extract(tiny_model, texts, layers=[0, 1], progress=False)
    plain = extract(tiny_model, texts, layers=[0, 1], progress=False)
    diff = shifted.layer(0).mean(0) - plain.layer(0).mean(0)
    assert torch.nn.functional.cosine_similarity(diff, planted, dim=0) > 0.999
    dirs = contrast_directions(tiny_model, ["Yes, " + t for t in texts], ["No, " + t for t in texts], layers=[1])
    pos = extract(tiny_model, ["Yes, " + t for t in texts], layers=[1], progress=False).layer(1)
    neg = extract(tiny_model, ["No, " + t for t in texts], layers=[1], progress=False).layer(1)
    gap = pos.mean(0) - neg.mean(0)
    assert torch.allclose(dirs[1], gap / gap.norm(), atol=1e-5)
    # adding |gap| * d at that layer moves the negative texts' mean exactly onto the positive mean
    with steer(tiny_model, SteeringSpec(directions=dirs, alpha=float(gap.norm()))):
        moved = extract(tiny_model, ["No, " + t for t in texts], layers=[1], progress=False).layer(1)
    assert torch.allclose(moved.mean(0), pos.mean(0), atol=1e-4)


def test_spec_from_saved_probe(tiny_model, tmp_path):
    from probes import MassMeanProbe

    g = torch.Generator().manual_seed(11)
    truth = _unit(64, 12)
    x = torch.randn(200, 64, generator=g)
    y = (torch.rand(200, generator=g) > 0.5).long()
    x = x + 4.0 * (2 * y[:, None] - 1) * truth
    probe = MassMeanProbe().fit(x, y)
    path = probe.save(tmp_path / "p", meta={"model_id": "x", "hook": "resid_post", "layer": 2, "position": "last",
                                            "d_model": 64})
    spec = SteeringSpec.from_probe(path, model=tiny_model, alpha=3.0)
    assert spec.layers == [2]
    assert torch.nn.functional.cosine_similarity(spec.directions[2][0], truth, dim=0) > 0.95
    spec.save(tmp_path / "spec")
    again = SteeringSpec.load(tmp_path / "spec")
    assert again.layers == [2] and again.alpha == 3.0 and torch.equal(again.directions[2], spec.directions[2])


# ---------------------------------------------------------------- weight orthogonalisation


def _orth_check(model, d, toks):
    from liedetect.steering.orthogonalize import ablation_spec, orthogonalize

    before = model(toks)
    with steer(model, ablation_spec(d, model)):
        hooked = model(toks)
    with steer(model, SteeringSpec.from_tensor(d, list(range(model.cfg.n_layers)), op="ablate")):
        post_only = model(toks)
    edited = orthogonalize(model, d)
    baked = edited(toks)
    assert torch.equal(model(toks), before)  # the original is untouched
    for layer in range(model.cfg.n_layers):
        for hook in ("resid_pre", "resid_mid", "resid_post"):
            assert (_resid(edited, toks, layer, hook) @ d).abs().max() < 1e-3
    return (baked - hooked).abs().max().item(), (baked - post_only).abs().max().item()


def test_orthogonalised_weights_equal_hook_ablation(tiny_model):
    err, post_only_err = _orth_check(tiny_model, _unit(64, 13), tiny_model.to_tokens(TEXT))
    assert err < 1e-4
    assert post_only_err > 1e-2  # resid_post alone is not enough: attention output leaks into resid_mid


def test_orthogonalisation_unties_gpt2_embeddings(gpt2_small):
    err, _ = _orth_check(gpt2_small, _unit(64, 14), gpt2_small.to_tokens(TEXT))
    assert err < 1e-4


def test_orthogonalised_native_model_saves_and_loads(tiny_model, tmp_path):
    from liedetect.steering.orthogonalize import load_orthogonalized, orthogonalize, save_orthogonalized

    d = _unit(64, 15)
    toks = tiny_model.to_tokens(TEXT)
    save_orthogonalized(tiny_model, d, tmp_path / "orth")
    loaded = load_orthogonalized(tmp_path / "orth")
    assert torch.allclose(loaded(toks), orthogonalize(tiny_model, d)(toks), atol=1e-5)


# ---------------------------------------------------------------- sweep


def test_sweep_on_the_unembedding_direction_raises_p_true(tiny_model, tmp_path):
    true_id = tiny_model.tokenizer(" True", add_special_tokens=False)["input_ids"][0]
    w_u = tiny_model.unembed.original_component.weight  # [vocab, d]
    d = (w_u[true_id] - w_u.mean(0)).detach()
    spec = SteeringSpec.from_tensor(d, [2], scale="norm")
    prompts = ["Paris is in France. This is", "Ice is hot. This is", "Two plus two is four. This is"]
    result = steering_sweep(tiny_model, spec, alphas=[0.0, 1.0, 2.0, 4.0], layers=[1, 2], prompts=prompts,
                            progress=False)
    values = {(tuple(r["layers"]), r["alpha"]): r["value"] for r in result.rows}
    assert abs(values[((2,), 0.0)] - result.baseline) < 1e-6
    assert values[((2,), 0.0)] < values[((2,), 1.0)] < values[((2,), 2.0)] < values[((2,), 4.0)]
    assert values[((2,), 4.0)] > 50 * result.baseline  # from ~1/vocab to orders of magnitude above it
    assert result.best()["alpha"] == 4.0
    saved = json.loads(result.save(tmp_path / "sweep.json").read_text())
    assert len(saved["rows"]) == 8
    assert result.plot(tmp_path / "sweep.png").stat().st_size > 1000


# ---------------------------------------------------------------- GGUF control vectors


def test_gguf_control_vector_reads_back(tmp_path):
    from liedetect.steering.gguf_export import export_gguf, read_gguf

    d = _unit(64, 16)
    spec = SteeringSpec.from_tensor(d, [1, 2], alpha=3.0)
    path = export_gguf(spec, tmp_path / "truth.gguf", model_hint="tiny")
    back = read_gguf(path)
    assert back["arch"] == "controlvector" and back["model_hint"] == "tiny" and back["layer_count"] == 2
    assert sorted(back["directions"]) == [1, 2]
    assert np.allclose(back["directions"][2], 3.0 * d.numpy(), atol=1e-6)
    import gguf

    reader = gguf.GGUFReader(str(path))
    assert {t.name for t in reader.tensors} == {"direction.1", "direction.2"}
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 and list(t.shape) == [64] for t in reader.tensors)
    with pytest.raises(SteeringError, match="layer 0"):
        export_gguf(SteeringSpec.from_tensor(d, [0]), tmp_path / "bad.gguf")
    with pytest.raises(SteeringError, match="only add"):
        export_gguf(SteeringSpec.from_tensor(d, [1], op="ablate"), tmp_path / "bad.gguf")


# ---------------------------------------------------------------- bad input


def test_bad_inputs_give_one_clear_sentence(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    with pytest.raises(SteeringError, match=r"width 32 .* has 64"):
        with steer(tiny_model, SteeringSpec.from_tensor(torch.ones(32), [1])):
            tiny_model(toks)
    with pytest.raises(LayerError, match=r"Layer 7 does not exist.*3 layers"):
        with steer(tiny_model, SteeringSpec.from_tensor(torch.ones(64), [7])):
            tiny_model(toks)
    with pytest.raises(SteeringError, match="finite"):
        SteeringSpec.from_tensor(torch.ones(64), [1], alpha=float("nan"))
    with pytest.raises(SteeringError, match="finite"):
        SteeringSpec.from_tensor(torch.ones(64), [1]).apply(tiny_model, alpha=float("inf"))
    with pytest.raises(SteeringError, match="NaN"):
        SteeringSpec.from_tensor(torch.full((64,), float("nan")), [1])
    with pytest.raises(SteeringError, match="zero vector"):
        SteeringSpec.from_tensor(torch.zeros(64), [1])
    with pytest.raises(SteeringError, match="operation"):
        SteeringSpec.from_tensor(torch.ones(64), [1], op="multiply")
    assert all(not hp.fwd_hooks for hp in tiny_model.hook_dict.values())  # failed entries leave nothing behind


def test_negative_layers_count_from_the_end(tiny_model):
    toks = tiny_model.to_tokens(TEXT)
    d = _unit(64, 17)
    with steer(tiny_model, SteeringSpec.from_tensor(d, [-1], alpha=3.0)):
        from_end = tiny_model(toks)
    with steer(tiny_model, SteeringSpec.from_tensor(d, [2], alpha=3.0)):
        explicit = tiny_model(toks)
    assert torch.equal(from_end, explicit)


def test_cli_steer_prints_both_generations_and_rejects_nan(tiny_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli
    import liedetect.models
    from liedetect.models import model_id
    from probes import MassMeanProbe

    monkeypatch.setattr(liedetect.models, "load_model", lambda spec, device=None, dtype=None: tiny_model)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 64, generator=g), torch.arange(40) % 2
    probe = MassMeanProbe().fit(x + 3.0 * y[:, None] * _unit(64, 18), y)
    path = probe.save(tmp_path / "p", meta={"model_id": model_id(tiny_model), "hook": "resid_post", "layer": 1,
                                            "position": "last", "d_model": 64})
    runner = CliRunner()
    ok = runner.invoke(cli.app, ["steer", "--model", "tiny", "--probe", str(path), "--alpha", "8", "--prompt",
                                 "Hello there", "--max-new-tokens", "4"])
    assert ok.exit_code == 0, ok.output
    assert "unsteered" in ok.output and "steered" in ok.output and "Hello there" in ok.output
    swept = runner.invoke(cli.app, ["steer", "--model", "tiny", "--probe", str(path), "--sweep", "--alphas", "0,4",
                                    "--prompt", "Hello there", "--out", str(tmp_path / "sw"), "-q"])
    assert swept.exit_code == 0, swept.output
    assert (tmp_path / "sw" / "steering_sweep.json").exists() and (tmp_path / "sw" / "steering_sweep.png").exists()
    bad = runner.invoke(cli.app, ["steer", "--model", "tiny", "--probe", str(path), "--alpha", "nan"])
    assert bad.exit_code == 2 and "finite" in bad.output


def test_a_probe_file_with_nan_weights_is_refused_before_steering(tmp_path):
    """Python callers get the same probe-file checks as the CLI: a NaN direction is one error, not NaN steering."""
    from safetensors.torch import load_file, save_file

    from liedetect.errors import CheckpointError
    from liedetect.steering import direction_from_probe
    from probes import MassMeanProbe

    x, y = torch.randn(40, 16, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 2
    path = MassMeanProbe().fit(x + 2.0 * y[:, None] * _unit(16, 3), y).save(tmp_path / "p", meta={"layer": 1})
    assert torch.isfinite(direction_from_probe(path)[0]).all()
    weights = tmp_path / "p.safetensors"
    tensors = load_file(weights)
    tensors["direction"] = torch.full_like(tensors["direction"], float("nan"))
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match="(?i)finite|nan"):
        direction_from_probe(path)
