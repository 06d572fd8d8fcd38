"""Fitting every layer in one batched program gives what fitting each layer alone gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import make_probe
from probes.sweep import sweep
from probes.synthetic import planted_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
CCS = {"n_steps": 300, "n_restarts": 4}


@pytest.fixture(scope="module")
def layers():
    y = np.random.default_rng(0).permutation(np.arange(160) % 2)
    qs = [planted_pairs(n=160, d=32, signal=s, distractor_std=3.0, side_offset=2.0, seed=i, labels=y)
          for i, s in enumerate((0.0, 1.0, 2.5))]
    return torch.stack([q.X for q in qs], 1), torch.stack([q.X_neg for q in qs], 1), y


def test_ccs_fit_layers_equals_one_fit_per_layer(layers):
    pos, neg, y = layers
    batched = make_probe("ccs", seed=3, **CCS).fit_layers(pos, neg, y)
    assert len(batched) == 3
    for li, probe in enumerate(batched):
        alone = make_probe("ccs", seed=3, **CCS).fit(pos[:, li], neg[:, li], y)
        assert probe.fit_info_["chosen_restart"] == alone.fit_info_["chosen_restart"]
        torch.testing.assert_close(probe.weight_, alone.weight_, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(probe.loss_curve_, alone.loss_curve_, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(probe.predict_proba_pairs(pos[:, li], neg[:, li]),
                                   alone.predict_proba_pairs(pos[:, li], neg[:, li]), atol=1e-5)
    assert batched[2].fit_info_["train_pair_accuracy"] > 0.85 > batched[0].fit_info_["train_pair_accuracy"]


@pytest.mark.parametrize("optimizer, tol", [("adam", 1e-9), ("lbfgs", 0.04)])
def test_sweep_with_batched_ccs_equals_the_per_layer_path(layers, optimizer, tol):
    """AdamW is element-wise, so batching changes nothing; L-BFGS's line search compares float32 losses, so a
    restart's path can part from its unbatched twin by rounding: rows agree to a test example or two."""
    pos, neg, y = layers
    ccs = {**CCS, "optimizer": optimizer}
    fast = sweep(None, y, methods=["ccs"], pairs=(pos, neg), params={"ccs": ccs}, kfold=3, seed=1, n_boot=0)
    slow = sweep(None, y, methods=["ccs"], pairs=(pos, neg), params={"ccs": {**ccs, "batched": False}}, kfold=3, seed=1, n_boot=0)
    assert [(r["layer"], r["fold"]) for r in fast.rows] == [(r["layer"], r["fold"]) for r in slow.rows]
    for a, b in zip(fast.rows, slow.rows):
        for key in ("accuracy", "val_accuracy", "auroc"):
            assert a[key] == pytest.approx(b[key], abs=tol), (a, b)
    assert fast.best_layer("ccs") == slow.best_layer("ccs") == 2
