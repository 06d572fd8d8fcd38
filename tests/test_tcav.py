"""TCAV: the unembedding's True-False direction at the last layer scores 1 (its negative 0); the organism's truth
direction at its truth layer raises ' True' for the honest persona and lowers it for the liar; autograd matches
finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liedetect.errors import DataError, SteeringError
from liedetect.tcav import answer_gradients, random_directions, significance, tcav, tcav_scores

ANSWERS = ("True", "False")


@pytest.fixture(scope="module")
def organism(organism_model):
    from liedetect.organism.detect import capture, fit_truth_probe

    model, world = organism_model, organism_model.organism_world
    train = capture(model, world.prompts(300, split="train", persona="honest", seed=1)
                    + world.prompts(300, split="train", persona="liar", seed=1), layers=[3])
    probe = fit_truth_probe("lr", train, 3)  # the truth layer the organism was trained to read out (config truth_layer)
    texts = {p: [x.text for x in world.prompts(80, split="heldout", persona=p, seed=2)] for p in ("honest", "liar")}
    return model, probe.direction_, texts


def test_unembedding_direction_scores_one_and_its_negative_zero(organism):
    model, _, texts = organism
    t, f = model.tokenizer.convert_tokens_to_ids(list(ANSWERS))
    v = (model.W_U[:, t] - model.W_U[:, f]).detach()
    last = model.cfg.n_layers - 1
    grads = answer_gradients(model, texts["honest"], last, ANSWERS)
    up, down = tcav(model, [], v, last, ANSWERS, grads=grads), tcav(model, [], -v, last, ANSWERS, grads=grads)
    assert up.score == 1.0 and down.score == 0.0
    assert up.p_value_ttest < 1e-6 and down.p_value_ttest < 1e-6
    assert up.mean_derivative > 0 > down.mean_derivative
    assert 0.35 <= np.mean(up.random_scores) <= 0.65  # random directions: no preferred sign on average


def test_truth_direction_follows_the_persona(organism):
    model, d, texts = organism
    honest = tcav(model, texts["honest"], d, 3, ANSWERS, n_random=50)
    liar = tcav(model, texts["liar"], d, 3, ANSWERS, n_random=50)
    print(honest.to_dict(), liar.to_dict())
    assert honest.score >= 0.7, honest  # more truth -> more ' True' for the honest persona
    assert liar.score <= 0.4, liar  # ... and less for the liar, who answers the opposite
    assert honest.score - liar.score >= 0.4
    assert honest.p_value_ttest < 0.01
    assert honest.p_value_magnitude <= 0.05  # its mean derivative is larger than (nearly) every random direction's
    assert honest.mean_derivative > 0 > liar.mean_derivative


def test_gradient_matches_finite_differences(organism):
    from liedetect.zero_shot import answer_margins

    model, d, texts = organism
    chosen = texts["honest"][:4]
    grads = answer_gradients(model, chosen, 2, ANSWERS, position="all")
    d = d / d.norm()
    eps = 1e-2
    with model.hooks(fwd_hooks=[("blocks.2.hook_resid_post", lambda x, hook: x + eps * d)]):
        plus = answer_margins(model, chosen, ANSWERS)
    with model.hooks(fwd_hooks=[("blocks.2.hook_resid_post", lambda x, hook: x - eps * d)]):
        minus = answer_margins(model, chosen, ANSWERS)
    numeric = (plus - minus) / (2 * eps)
    assert np.allclose((grads @ d).numpy(), numeric, rtol=2e-2, atol=2e-3), ((grads @ d).numpy(), numeric)


def test_scores_and_significance_numbers():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, -2.0], [-1.0, 0.0]])
    assert tcav_scores(g, torch.tensor([[1.0, 0.0], [0.0, 1.0]])).tolist() == [0.75, 0.25]
    r = random_directions(16, 5, seed=3)
    assert torch.allclose(r.norm(dim=1), torch.ones(5))
    r = np.array([0.4, 0.5, 0.6, 0.5, 0.45])
    p_t, p_rank = significance(1.0, r)
    from scipy.stats import t as student

    t_stat = (r.mean() - 1.0) / (r.std(ddof=1) / np.sqrt(len(r)))  # by hand: one-sample t, 4 degrees of freedom
    assert p_t == pytest.approx(2 * student.sf(abs(t_stat), len(r) - 1), rel=1e-9)
    assert p_rank == pytest.approx(1 / 6)  # none of 5 random scores is as far from 0.5


def test_bad_inputs(organism):
    model, d, texts = organism
    with pytest.raises(SteeringError, match="width 5"):
        tcav(model, texts["honest"][:2], torch.ones(5), 3, ANSWERS)
    with pytest.raises(DataError, match="2 tokens"):
        tcav(model, texts["honest"][:2], d, 3, ("True False", "False"))
    with pytest.raises(DataError):
        answer_gradients(model, texts["honest"][:2], 3, ANSWERS, position="middle")


def test_cli_tcav_on_the_organism(organism, tmp_path):
    import json

    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--model", "organism", "--data", "builtin:organism", "--limit", "200", "--method", "lr",
                                 "--layer", "3", "--out", str(tmp_path / "p"), "--quiet"])
    assert result.exit_code == 0, result.output
    args = ["tcav", "score", "--probe", str(tmp_path / "p.json"), "--data", "builtin:organism", "--model", "organism",
            "--template", "[honest] {statement} Answer:", "--limit", "40", "--n-random", "20", "--json", str(tmp_path / "t.json")]
    result = runner.invoke(app, args + ["--answers", "True,False"])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "t.json").read_text())
    assert row["layer"] == 3 and row["n_inputs"] == 40 and len(row["random_scores"]) == 20 and 0 <= row["score"] <= 1
    bad = runner.invoke(app, args + ["--answers", "True"])
    assert bad.exit_code == 2 and "two words" in bad.output


def test_several_layers_in_one_pass_equal_one_at_a_time(organism):
    from liedetect.tcav import layer_gradients

    model, _, texts = organism
    both = layer_gradients(model, texts["liar"][:6], [1, 3], ANSWERS)
    for layer in (1, 3):
        assert torch.allclose(both[layer], answer_gradients(model, texts["liar"][:6], layer, ANSWERS), atol=1e-5)
