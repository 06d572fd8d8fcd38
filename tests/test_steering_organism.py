"""Acceptance on the built-in model organism: steering with probe-found directions, checked against ground truth."""

from __future__ import annotations

import pytest
from conftest import load_experiment


def _experiment():
    return load_experiment("steering_organism")


@pytest.fixture(scope="module")
def organism(organism_model):
    return organism_model, organism_model.organism_world


@pytest.fixture(scope="module")
def experiment():
    return _experiment()


@pytest.mark.slow
def test_adding_the_probe_honesty_direction_makes_the_liar_truthful(organism, experiment):
    model, world = organism
    # all three placements, at the natural strengths (1x and 1.5x the probe's honest-liar gap); chosen on train entities
    result = experiment.honesty_experiment(model, world, n=120, seed=0, alphas=(1.0, 1.5, 2.0))
    before, after = result["heldout_unsteered"], result["heldout_steered"]
    assert before["liar_truthful"] <= 0.05 and before["honest_accuracy"] >= experiment.HONEST_FLOOR, before  # the organism's spec
    assert after["liar_truthful"] >= experiment.LIAR_TARGET, result["best_on_train"]
    assert after["honest_accuracy"] >= experiment.HONEST_FLOOR


@pytest.mark.slow
def test_ablating_the_probe_truth_directions_leaves_answers_at_chance(organism, experiment):
    model, world = organism
    result = experiment.ablation_experiment(model, world, n=150, seed=0)
    assert result["truth_dependent_accuracy_before"] >= experiment.CHANCE_BAND[1] + 0.1  # clearly above chance first
    assert 0.45 <= result["truth_dependent_accuracy_after"] <= 0.55, result
    assert result["knowledge_lm_loss_after"] - result["knowledge_lm_loss_before"] < experiment.LM_LOSS_MARGIN, result


def test_steering_is_restored_on_the_organism(organism):
    import torch

    from liedetect.steering import SteeringSpec, steer

    model, world = organism
    texts = [p.text for p in world.prompts(8, split="heldout", persona="liar", seed=3)]
    enc = model.tokenizer(texts, padding=True, return_tensors="pt")
    before = model(enc["input_ids"], attention_mask=enc["attention_mask"])
    d = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    with steer(model, SteeringSpec.from_tensor(d, [1], alpha=5.0)):
        model(enc["input_ids"], attention_mask=enc["attention_mask"])
    assert torch.equal(model(enc["input_ids"], attention_mask=enc["attention_mask"]), before)
