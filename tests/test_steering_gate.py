"""Conditional steering through the public API: a SteeringGate on a SteeringSpec, on TransformerBridge models."""

from __future__ import annotations

import pytest
import torch

from liedetect.errors import SteeringError
from liedetect.steering import SteeringGate, SteeringSpec, steer

STEER = "The capital of France is Paris and the capital of Spain is"
LEAVE = "Seven plus eight equals fifteen, and nine plus one equals"


def _unit(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _spec(layers=(1,), alpha=10.0) -> SteeringSpec:
    return SteeringSpec.from_tensor(_unit(64, 3), list(layers), alpha=alpha)


def test_gate_between_examples_opens_on_the_steer_side_with_the_threshold_midway(tiny_model):
    gate = SteeringGate.between(tiny_model, [STEER], [LEAVE], layer=0)
    scores = gate.scores(tiny_model, [STEER, LEAVE])
    assert gate.opens(tiny_model, [STEER, LEAVE]).tolist() == [True, False]
    assert gate.threshold == pytest.approx(float(scores.mean()), abs=1e-4)
    flipped = SteeringGate(gate.layer, gate.direction, gate.threshold, side="below")
    assert flipped.opens(tiny_model, [STEER, LEAVE]).tolist() == [False, True]


@pytest.mark.parametrize("gate_layer", [0, 1])  # 1: the gate reads the very hook it steers, before the steering
def test_gated_spec_steers_the_opened_prompt_exactly_and_leaves_the_other_untouched(tiny_model, gate_layer):
    gate = SteeringGate.between(tiny_model, [STEER], [LEAVE], layer=gate_layer)
    # steering along the gate's own direction, hard enough to open the gate if it read the steered state
    spec = SteeringSpec.from_tensor(gate.direction, [1, 2], alpha=50.0)
    gated = spec.with_gate(gate)
    for text, opens in ((STEER, True), (LEAVE, False)):
        toks = tiny_model.to_tokens(text)
        plain = tiny_model(toks)
        with steer(tiny_model, spec):
            full = tiny_model(toks)
        with steer(tiny_model, gated) as s:
            got = tiny_model(toks)
        assert s.opened.tolist() == [opens]
        assert torch.equal(got, full if opens else plain)
        assert (full - plain).abs().max() > 0.1  # the ungated steering does change this prompt
    assert all(not hp.fwd_hooks for hp in tiny_model.hook_dict.values())


def test_batch_rows_are_decided_one_by_one(tiny_model):
    a, b = tiny_model.to_tokens(STEER), tiny_model.to_tokens(LEAVE)
    n = min(a.shape[1], b.shape[1])
    batch = torch.cat([a[:, :n], b[:, :n]])
    _, cache = tiny_model.run_with_cache(batch, names_filter=["blocks.0.hook_resid_post"])
    u = _unit(64, 5)
    s = cache["blocks.0.hook_resid_post"][:, -1] @ u
    gate = SteeringGate(0, u, float(s.mean()), side="above")
    spec = _spec()
    with steer(tiny_model, spec.with_gate(gate)) as st:
        got = tiny_model(batch)
    assert st.opened.tolist() == (s > s.mean()).tolist()
    with steer(tiny_model, spec):
        full = tiny_model(batch)
    plain = tiny_model(batch)
    for row, opened in enumerate(st.opened.tolist()):
        assert torch.equal(got[row], (full if opened else plain)[row])


@pytest.mark.parametrize("fixture", ["gpt2_small", "tiny_model"])  # with a KV cache, and re-fed without one
def test_gate_decision_holds_while_generating(fixture, request):
    model = request.getfixturevalue(fixture)
    gate = SteeringGate.between(model, [STEER], [LEAVE], layer=0)
    spec = _spec(alpha=30.0)

    def run(text, s):
        toks = model.to_tokens(text)
        with steer(model, s) as st:
            out = model.generate(toks, max_new_tokens=5, do_sample=False, verbose=False, stop_at_eos=False,
                                 use_past_kv_cache=fixture == "gpt2_small")
        return out[0, toks.shape[1]:].tolist(), st.opened

    steered, _ = run(STEER, spec)
    plain = model.generate(model.to_tokens(LEAVE), max_new_tokens=5, do_sample=False, verbose=False,
                           stop_at_eos=False)[0, -5:].tolist()
    got_steer, opened_steer = run(STEER, spec.with_gate(gate))
    got_leave, opened_leave = run(LEAVE, spec.with_gate(gate))
    assert (got_steer, opened_steer.tolist()) == (steered, [True])
    assert (got_leave, opened_leave.tolist()) == (plain, [False])
    unsteered = model.generate(model.to_tokens(STEER), max_new_tokens=5, do_sample=False, verbose=False,
                               stop_at_eos=False)[0, -5:].tolist()
    assert steered != unsteered  # the steering changes what the opened prompt generates


def test_gated_spec_saves_and_loads(tiny_model, tmp_path):
    gate = SteeringGate.between(tiny_model, [STEER], [LEAVE], layer=0)
    path = _spec().with_gate(gate).save(tmp_path / "gated")
    back = SteeringSpec.load(path)
    assert torch.allclose(back.gate.direction, gate.direction)
    assert back.gate.meta() == gate.meta()
    assert "gated at layer 0" in back.summary()
    assert SteeringSpec.load(_spec().save(tmp_path / "plain")).gate is None


def test_gate_misuse_is_refused_with_a_clear_error(tiny_model, tmp_path):
    late = SteeringGate(2, _unit(64, 1), 0.0)
    with pytest.raises(SteeringError, match="after the first steered hook"):
        with steer(tiny_model, _spec().with_gate(late)):
            pass
    with pytest.raises(SteeringError, match="width 32"):
        _spec().with_gate(SteeringGate(0, _unit(32, 1), 0.0))
    with pytest.raises(SteeringError, match="side"):
        SteeringGate(0, _unit(64, 1), 0.0, side="left")
    with pytest.raises(SteeringError, match="finite"):
        SteeringGate(0, _unit(64, 1), float("nan"))
    with pytest.raises(SteeringError, match="both sides"):
        SteeringGate.between(tiny_model, [STEER], [], layer=0)
    path = _spec().with_gate(SteeringGate(0, _unit(64, 1), 0.0)).save(tmp_path / "g")
    meta = path.with_suffix(".json")
    meta.write_text(meta.read_text().replace('"gate": {', '"gate": null, "was": {'))
    with pytest.raises(SteeringError, match="half a gate"):
        SteeringSpec.load(path)
