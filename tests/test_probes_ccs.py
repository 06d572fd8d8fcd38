"""CCS specifics: exact gradients, batched restarts, per-side normalisation, sign calibration."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cos
import torch

from probes import CCSProbe
from probes.ccs import ccs_grad, ccs_loss, train_ccs
from probes.synthetic import planted_pairs



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def q():
    return planted_pairs(n=600, d=64, signal=2.0, distractor_std=5.0, side_offset=10.0, seed=0)


@pytest.fixture(scope="module")
def held():
    return planted_pairs(n=400, d=64, signal=2.0, distractor_std=5.0, side_offset=10.0, seed=0, sample_seed=7)


def test_hand_written_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    zp, zn = torch.randn(50, 8, generator=g, dtype=torch.float64), torch.randn(50, 8, generator=g, dtype=torch.float64)
    W = torch.randn(3, 8, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_(True)
    loss = ccs_loss(zp, zn, W, b)
    loss.sum().backward()
    mine, gW, gb = ccs_grad(torch.cat([zp, zn]), 50, W.detach(), b.detach())
    torch.testing.assert_close(mine, loss.detach())
    torch.testing.assert_close(gW, W.grad)
    torch.testing.assert_close(gb, b.grad)


def test_hand_written_adamw_matches_torch_adamw():
    g = torch.Generator().manual_seed(1)
    zp, zn = torch.randn(40, 6, generator=g), torch.randn(40, 6, generator=g)
    W0, b0 = torch.randn(2, 6, generator=g), torch.zeros(2)
    W, b, _ = train_ccs(zp, zn, W0, b0, n_steps=25, lr=1e-2, weight_decay=0.1)
    Wt, bt = W0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([Wt, bt], lr=1e-2, weight_decay=0.1)
    for _ in range(25):
        opt.zero_grad()
        ccs_loss(zp, zn, Wt, bt).sum().backward()
        opt.step()
    torch.testing.assert_close(W, Wt.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b, bt.detach(), rtol=1e-4, atol=1e-5)


def test_batched_restarts_equal_one_at_a_time(q):
    kw = dict(n_restarts=4, n_steps=150, seed=3)
    batched = CCSProbe(batched=True, **kw).fit(q.X, q.X_neg, q.y)
    looped = CCSProbe(batched=False, **kw).fit(q.X, q.X_neg, q.y)
    assert batched.fit_info_["chosen_restart"] == looped.fit_info_["chosen_restart"]
    torch.testing.assert_close(batched.restart_losses_, looped.restart_losses_, rtol=1e-4, atol=1e-6)
    assert cos(batched.direction_, looped.direction_) > 0.9999


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_lowest_loss_restart_is_kept_and_its_curve_stored(q, optimizer):
    probe = CCSProbe(n_restarts=5, n_steps=200, seed=0, optimizer=optimizer).fit(q.X, q.X_neg, q.y)
    losses = probe.restart_losses_
    assert probe.fit_info_["chosen_restart"] == int(torch.argmin(losses))
    if optimizer == "adam":
        assert probe.loss_curve_.shape == (200,)
    else:  # L-BFGS stops when it has converged: the initial loss plus at most n_steps iterations
        assert 2 <= probe.loss_curve_.shape[0] <= 201
    assert float(probe.loss_curve_[-1]) < float(probe.loss_curve_[0])
    assert len(set(np.round(losses.numpy(), 6))) > 1  # the restarts really started from different points


def test_per_side_normalisation_removes_the_true_false_token_offset(q, held):
    """Without it, CCS latches onto what separates "... True" from "... False", not onto truth."""
    full = CCSProbe(n_steps=400, normalize="full").fit(q.X, q.X_neg, q.y)
    none = CCSProbe(n_steps=400, normalize="none").fit(q.X, q.X_neg, q.y)
    assert abs(cos(none.direction_, q.side_offset)) > 0.5
    assert abs(cos(none.direction_, q.truth)) < 0.3
    assert none.score_pairs(held.X, held.X_neg, held.y) < 0.65
    assert abs(cos(full.direction_, q.side_offset)) < 0.2
    assert full.score_pairs(held.X, held.X_neg, held.y) > 0.95
    torch.testing.assert_close(full.mean_pos_, q.X.mean(0))
    torch.testing.assert_close(full.std_neg_, q.X_neg.std(0, unbiased=False))


def test_evaluation_reuses_the_training_normalisation(q, held):
    probe = CCSProbe(n_steps=300).fit(q.X, q.X_neg, q.y)
    together = probe.predict_proba_pairs(held.X, held.X_neg)
    one_by_one = torch.cat([probe.predict_proba_pairs(held.X[i:i + 1], held.X_neg[i:i + 1]) for i in range(20)])
    torch.testing.assert_close(one_by_one, together[:20])  # a batch's own statistics are never used
    shifted = probe.predict_proba_pairs(held.X + 3.0, held.X_neg + 3.0)
    assert not torch.allclose(shifted, together)


def test_sign_is_calibrated_from_a_handful_of_labels(q, held):
    right = CCSProbe(n_steps=300, n_calibration=16).fit(q.X, q.X_neg, q.y)
    flipped_labels = CCSProbe(n_steps=300, n_calibration=16).fit(q.X, q.X_neg, 1 - q.y)
    assert right.calibrated_ and right.fit_info_["sign"]["n_labels"] == 16
    assert cos(right.direction_, flipped_labels.direction_) < -0.999
    assert right.score_pairs(held.X, held.X_neg, held.y) > 0.95
    assert flipped_labels.score_pairs(held.X, held.X_neg, held.y) < 0.05
    # exactly one of the two runs had to flip the unsupervised solution
    assert right.fit_info_["sign"]["flipped"] != flipped_labels.fit_info_["sign"]["flipped"]


def test_uncalibrated_probe_says_so_and_is_right_up_to_sign(q, held):
    for probe in (CCSProbe(n_steps=300, calibration="none").fit(q.X, q.X_neg, q.y),
                  CCSProbe(n_steps=300).fit(q.X, q.X_neg)):
        assert not probe.calibrated_
        assert probe.fit_info_["sign"]["method"] == "none"
        acc = probe.score_pairs(held.X, held.X_neg, held.y)
        assert max(acc, 1 - acc) > 0.95


def test_lbfgs_and_adam_find_the_same_direction(q, held):
    lbfgs = CCSProbe(n_restarts=4, seed=1).fit(q.X, q.X_neg, q.y)
    adam = CCSProbe(n_restarts=4, seed=1, optimizer="adam").fit(q.X, q.X_neg, q.y)
    assert lbfgs.fit_info_["optimizer"] == "lbfgs" and adam.fit_info_["optimizer"] == "adam"
    assert cos(lbfgs.direction_, adam.direction_) > 0.95
    assert cos(lbfgs.direction_, q.truth) > 0.9
    assert lbfgs.score_pairs(held.X, held.X_neg, held.y) > 0.95


def test_platt_scaling_calibrates_pair_probabilities(q, held):
    """CCS's raw pair probabilities are over-confident; Platt on the 32 sign labels brings ECE down."""
    from probes.metrics import evaluate

    raw = CCSProbe(n_restarts=4, platt=False).fit(q.X, q.X_neg, q.y)
    scaled = CCSProbe(n_restarts=4).fit(q.X, q.X_neg, q.y)
    a, c = scaled.fit_info_["platt"]
    assert a > 0 and "platt" not in raw.fit_info_
    e_raw = evaluate(held.y, raw.predict_proba_pairs(held.X, held.X_neg))
    e_scaled = evaluate(held.y, scaled.predict_proba_pairs(held.X, held.X_neg))
    print(f"held-out ECE raw {e_raw['ece']:.3f} -> Platt {e_scaled['ece']:.3f}; accuracy {e_raw['accuracy']:.3f} / {e_scaled['accuracy']:.3f}")
    assert e_scaled["accuracy"] == pytest.approx(e_raw["accuracy"], abs=0.01)  # a monotone rescaling
    assert e_scaled["ece"] < e_raw["ece"]
    from probes.sign import flip

    flip(scaled)  # a flipped probe predicts exactly the complement, Platt included
    torch.testing.assert_close(scaled.predict_proba_pairs(held.X, held.X_neg),
                               1 - CCSProbe(n_restarts=4).fit(q.X, q.X_neg, q.y).predict_proba_pairs(held.X, held.X_neg))


def test_batched_lbfgs_solves_each_logistic_regression_like_sklearn():
    from sklearn.linear_model import LogisticRegression

    from probes.lbfgs import minimize

    rng = np.random.default_rng(0)
    n, d, Cs = 300, 40, [1e-2, 1.0, 100.0]
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=d) + 3 * rng.normal(size=n) > 0).astype(float)
    Xb, yt, lam = torch.tensor(np.c_[X, np.ones(n)]), torch.tensor(y), torch.tensor([1 / C for C in Cs])

    def f(theta):
        z = theta @ Xb.T
        g = (torch.sigmoid(z) - yt) @ Xb
        g[:, :-1] += lam[:, None] * theta[:, :-1]
        return torch.nn.functional.softplus(z).sum(-1) - (z * yt).sum(-1) + 0.5 * lam * theta[:, :-1].square().sum(-1), g

    res = minimize(f, torch.zeros(len(Cs), d + 1, dtype=torch.float64), max_iter=500, gtol=1e-8, ftol=1e-14)
    for i, C in enumerate(Cs):
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y)
        assert np.abs(res.x[i, :-1].numpy() - ref.coef_[0]).max() < 1e-4 * np.abs(ref.coef_[0]).max()
        assert float(res.x[i, -1]) == pytest.approx(float(ref.intercept_[0]), abs=1e-4)
