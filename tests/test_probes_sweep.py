"""Metrics, layer sweeps, cross-dataset generalisation and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes import ProbeError
from probes.metrics import accuracy, auroc, bootstrap_ci, ece, evaluate
from probes.plots import plot_projection, projection_coordinates
from probes.selection import splits
from probes.generalization import generalization
from probes.sweep import SweepResult, sweep
from probes.synthetic import planted_pairs

FAST = {"ccs": {"n_steps": 150, "n_restarts": 3}}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_metrics_on_known_values():
    y = np.array([0, 0, 1, 1])
    assert accuracy(y, [0.1, 0.6, 0.7, 0.9]) == 0.75
    assert auroc(y, [0.1, 0.6, 0.7, 0.9]) == 1.0
    assert auroc(y, [0.9, 0.7, 0.6, 0.1]) == 0.0
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))
    assert ece(np.array([1] * 9 + [0]), [0.9] * 10) == pytest.approx(0.0, abs=1e-12)
    assert ece(np.array([1, 0] * 5), [1.0] * 10) == pytest.approx(0.5)
    with pytest.raises(ProbeError, match="one probability per label"):
        accuracy([0, 1], [0.5])


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small_y = rng.integers(0, 2, 100); small_p = np.where(rng.random(100) < 0.8, small_y, 1 - small_y)
    big_y = rng.integers(0, 2, 2000); big_p = np.where(rng.random(2000) < 0.8, big_y, 1 - big_y)
    lo, hi = bootstrap_ci(accuracy, small_y, small_p, n_boot=300)
    assert lo <= accuracy(small_y, small_p) <= hi
    blo, bhi = bootstrap_ci(accuracy, big_y, big_p, n_boot=300)
    assert (bhi - blo) < (hi - lo) / 2
    assert bootstrap_ci(accuracy, big_y, big_p, n_boot=50, seed=3) == bootstrap_ci(accuracy, big_y, big_p, n_boot=50, seed=3)
    m = evaluate(big_y, big_p, n_boot=50)
    assert m["accuracy_lo"] <= m["accuracy"] <= m["accuracy_hi"]


@pytest.fixture(scope="module")
def stack():
    """Four 'layers' of contrast pairs; truth is planted only from layer index 2 on (strongest at 2)."""
    signals = (0.0, 0.0, 2.0, 1.0)
    y = np.random.default_rng(0).permutation(np.arange(240) % 2)
    qs = [planted_pairs(n=240, d=24, signal=s, distractor_std=4.0, side_offset=3.0, seed=i, labels=y) for i, s in enumerate(signals)]
    pos = torch.stack([q.X for q in qs], 1)
    neg = torch.stack([q.X_neg for q in qs], 1)
    statements = torch.stack([q.X - q.side_offset * 3.0 for q in qs], 1)  # the statement alone: the "True" side minus its token offset
    return statements, pos, neg, y


def test_sweep_finds_the_layer_with_the_signal(stack):
    acts, pos, neg, y = stack
    res = sweep(acts, y, layers=[3, 6, 9, 12], pairs=(pos, neg), params=FAST, seed=0)
    assert res.layers == [3, 6, 9, 12] and len(res.methods) == 8
    assert len(res.rows) == 8 * 4
    for m in ("lr", "mass-mean-iid", "lat", "ccs"):
        assert res.best_layer(m) == 9, m
        best = next(r for r in res.table() if r["method"] == m and r["layer"] == 9)
        assert best["accuracy"] > 0.8  # Bayes rate of a single statement here: Phi(2 / sqrt(2)) = 0.92
    chance_rows = [r["accuracy"] for r in res.rows if r["layer"] in (3, 6)]
    assert np.mean(chance_rows) < 0.62  # no method finds truth where none was planted
    assert res.chance == pytest.approx(0.5)
    ccs_row = next(r for r in res.rows if r["method"] == "ccs" and r["layer"] == 9)
    assert ccs_row["input"] == "pairs" and ccs_row["accuracy_single"] is not None
    assert "best layer" in res.summary()


def test_sweep_saves_json_csv_plot_and_reloads(stack, tmp_path):
    acts, pos, neg, y = stack
    res = sweep(acts[:, 1:3], y, layers=[6, 9], methods=["lr", "random"], kfold=3, seed=1)
    assert {r["fold"] for r in res.rows} == {0, 1, 2}
    paths = res.save(tmp_path)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(paths["json"].read_text())
    assert doc["best_layer"]["lr"] == 9 and doc["config"]["kfold"] == 3
    header = paths["csv"].read_text().splitlines()[0]
    assert header.startswith("method,layer,fold,input,accuracy,auroc")
    again = SweepResult.load(tmp_path)
    assert again.best_layer("lr") == res.best_layer("lr") and again.table() == res.table()
    rows = res.to_rows()
    rows[0]["accuracy"] = -1
    assert res.rows[0]["accuracy"] != -1


def test_sweep_rejects_what_it_cannot_run(stack):
    acts, pos, neg, y = stack
    with pytest.raises(ProbeError, match="needs contrast pairs"):
        sweep(acts, y, methods=["ccs"])
    with pytest.raises(ProbeError, match="one layer number per slice"):
        sweep(acts, y, layers=[1, 2], methods=["lr"])
    with pytest.raises(ProbeError, match="n_examples, n_layers, d_model"):
        sweep(acts[:, 0], y, methods=["lr"])


def _subject_pairs(n_subjects: int = 200, d: int = 32, seed: int = 0):
    """A true and a false statement per subject, whose activations carry the subject and no truth at all."""
    g = torch.Generator().manual_seed(seed)
    subjects = torch.randn(n_subjects, d, generator=g) * 3.0
    acts = subjects.repeat_interleave(2, 0) + 0.3 * torch.randn(2 * n_subjects, d, generator=g)
    y = np.tile([1, 0], n_subjects)
    groups = np.repeat(np.arange(n_subjects), 2)
    return acts[:, None, :], y, groups


def test_grouped_splits_keep_each_group_on_one_side_and_stay_balanced():
    _, y, groups = _subject_pairs()
    for tr, te in splits(y, kfold=5, groups=groups) + splits(y, test_size=0.25, groups=groups):
        assert not set(groups[tr]) & set(groups[te])
        assert abs(y[te].mean() - 0.5) < 0.05
    assert sorted(np.concatenate([te for _, te in splits(y, kfold=5, groups=groups)]).tolist()) == list(range(len(y)))
    with pytest.raises(ProbeError, match="one group key per example"):
        splits(y, kfold=5, groups=groups[:-1])
    with pytest.raises(ProbeError, match="distinct groups"):
        splits(y[:6], kfold=5, groups=groups[:6])


def test_random_splits_of_paired_data_score_below_chance_and_grouped_splits_do_not():
    # Why --group-by exists: a test statement's partner about the same subject sits in the training
    # set with the opposite label, so a probe that keys on the subject is reliably wrong. Probes fit on
    # the 75% of each training part not held for validation, so ~60% of test statements (0.8 x 0.75)
    # have their partner in the fit set: accuracy near 0.5 - 0.6 * (0.5 - wrong) ~ 0.4, not the 0.3 seen
    # when probes fit on the whole training part.
    acts, y, groups = _subject_pairs()
    random_acc = np.mean([r["accuracy"] for r in sweep(acts, y, methods=["lr"], kfold=5).rows])
    grouped_acc = np.mean([r["accuracy"] for r in sweep(acts, y, methods=["lr"], kfold=5, groups=groups).rows])
    assert random_acc < 0.43 and random_acc < grouped_acc - 0.07, (random_acc, grouped_acc)
    assert abs(grouped_acc - 0.5) < 0.1, grouped_acc


def test_generalization_matrix_shows_which_datasets_share_a_direction():
    a = planted_pairs(n=400, d=24, signal=3.0, seed=5)
    b = planted_pairs(n=400, d=24, signal=3.0, seed=5, sample_seed=1)  # same geometry, new examples
    c = planted_pairs(n=400, d=24, signal=3.0, seed=6)  # a different truth direction
    data = {"a": (a.X, a.y), "b": (b.X, b.y), "c": (c.X, c.y)}
    res = generalization(data, "mass-mean-iid")
    acc = np.array(res.accuracy)
    assert acc[0, 1] > 0.9 and acc[1, 0] > 0.9 and acc[2, 2] > 0.9
    assert acc[0, 2] < 0.7 and acc[2, 0] < 0.7
    paired = generalization({"a": (a.X, a.X_neg, a.y), "c": (c.X, c.X_neg, c.y)}, "lat")
    assert paired.accuracy[0][0] > 0.9 and paired.accuracy[0][1] < 0.7
    assert "trained on" in res.summary()
    with pytest.raises(ProbeError, match=r"\(X_pos, X_neg, y\)"):
        generalization({"a": (a.X, a.y)}, "ccs")


def test_generalization_heatmap_and_projection_scatter(tmp_path):
    a = planted_pairs(n=200, d=16, seed=1)
    res = generalization({"a": (a.X, a.y), "b": (a.X_neg, 1 - a.y)}, "lr")
    assert res.save(tmp_path)["png"].stat().st_size > 1000
    along, across = projection_coordinates(a.X, a.truth * 5)
    np.testing.assert_allclose(along, ((a.X - a.X.mean(0)) @ a.truth).numpy(), rtol=1e-4, atol=1e-4)
    shifts = torch.randn(200, 1) * a.truth  # moving rows along the direction changes only the first coordinate
    along2, across2 = projection_coordinates(a.X + shifts, a.truth)
    np.testing.assert_allclose(across2, across, rtol=1e-3, atol=1e-3)
    assert not np.allclose(along2, along, atol=1e-2)
    path = plot_projection(a.X, a.y, a.truth, tmp_path / "proj.png", title="planted")
    assert path.read_bytes()[:4] == b"\x89PNG"
