"""Layer choice on validation data: a planted layer that wins on the test fold and loses on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.registry import make_probe
from probes.selection import inner_split, splits
from probes.sweep import SweepResult, sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def _planted(n: int = 400, d: int = 8, seed: int = 0):
    """Layer 0 reads truth weakly everywhere; layer 1 reads it perfectly except on the validation part, where it is reversed."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    sign = 2.0 * y - 1.0
    tr, te = splits(y, test_size=0.25, seed=seed)[0]
    fit, val = inner_split(y, tr, seed)
    weak = rng.normal(size=(n, d)); weak[:, 0] += 1.0 * sign
    strong = rng.normal(size=(n, d)); strong[:, 0] += 4.0 * sign
    strong[val, 0] -= 8.0 * sign[val]
    acts = torch.tensor(np.stack([weak, strong], 1), dtype=torch.float32)
    return acts, y, te, val


def test_the_reported_layer_is_the_validation_choice_not_the_test_best():
    acts, y, te, val = _planted()
    res = sweep(acts, y, layers=[4, 7], methods=["lr", "mass-mean"], seed=0)
    for m in ("lr", "mass-mean"):
        table = {r["layer"]: r for r in res.table() if r["method"] == m}
        assert table[7]["accuracy"] > 0.97 and table[4]["accuracy"] < 0.9, table  # layer 7 wins on the test fold ...
        assert table[7]["val_accuracy"] < 0.1 and table[4]["val_accuracy"] > 0.75  # ... and loses on validation
        assert res.test_best_layer(m) == 7
        assert res.best_layer(m) == 4
        head = res.headline(m)
        assert head["layer"] == 4 and head["n_test"] == len(te) == 100
        # the chosen layer, refitted on the whole training part (fit + validation), scored on the test part
        tr = np.setdiff1d(np.arange(len(y)), te)
        refit = make_probe(m, seed=0).fit(acts[tr, 0], y[tr]).score(acts[te, 0], y[te])
        assert head["accuracy"] == pytest.approx(refit)
        assert head["accuracy_lo"] < head["accuracy"] < head["accuracy_hi"]
        assert head["accuracy_hi"] - head["accuracy_lo"] > 0.05  # 100 test statements cannot pin accuracy to 5 points
    method, layer, acc = res.best()
    assert layer == 4 and acc < 0.9
    assert "layers chosen on validation data" in res.summary()


def test_kfold_headline_pools_every_test_fold_and_interval_holds_the_estimate():
    acts, y, _, _ = _planted(n=300, seed=1)
    groups = np.repeat(np.arange(150), 2)
    res = sweep(acts[:, :1], y, layers=[4], methods=["lr", "random"], kfold=5, groups=groups, n_boot=300, seed=2)
    for m in ("lr", "random"):
        head = res.headline(m)
        assert head["n_test"] == 300 and head["fold_layers"] == [4] * 5 and head["n_boot"] == 300
        assert head["accuracy_lo"] <= head["accuracy"] <= head["accuracy_hi"]
    assert res.headline("lr")["accuracy"] > 0.75 and res.headline("random")["accuracy_lo"] < 0.6
    fit_val = [(r["n_train"], r["n_val"]) for r in res.rows if r["method"] == "lr"]
    assert all(abs(v / (t + v) - 0.25) < 0.06 for t, v in fit_val)


def test_saved_selection_survives_a_reload(tmp_path):
    acts, y, _, _ = _planted(n=200, seed=3)
    res = sweep(acts, y, layers=[4, 7], methods=["lr"], seed=3)
    res.save(tmp_path, plot=False)
    back = SweepResult.load(tmp_path)
    assert back.best_layer("lr") == res.best_layer("lr") == 4
    assert back.headline("lr")["accuracy_lo"] == pytest.approx(res.headline("lr")["accuracy_lo"])


def test_results_without_validation_say_their_layer_was_chosen_on_test():
    rows = [{"method": "lr", "layer": k, "fold": 0, "accuracy": a, "auroc": a, "ece": 0.0, "n_test": 10} for k, a in ((0, 0.6), (1, 0.8))]
    res = SweepResult(rows, ["lr"], [0, 1], 0.5)
    assert res.chosen_on == "test" and res.best_layer("lr") == 1
    assert "chosen on test data" in res.summary()


def _thirty_layer_result() -> SweepResult:
    methods = ["lr", "mass-mean", "mass-mean-iid", "lat", "lat-random", "ccs", "pca", "random"]
    rng = np.random.default_rng(0)
    rows = [{"method": m, "layer": k, "fold": 0, "accuracy": float(rng.uniform(0.4, 0.99)), "auroc": 0.5, "ece": 0.1,
             "val_accuracy": float(rng.uniform(0.4, 0.99)), "n_test": 150} for m in methods for k in range(30)]
    return SweepResult(rows, methods, list(range(30)), 0.5, {"n": 600})


def test_the_cli_tables_fit_80_columns_with_30_layers_and_wrap_no_number():
    from rich.console import Console

    from cli import sweep_choice_table, sweep_layer_table

    res = _thirty_layer_result()
    console = Console(width=80, record=True, color_system=None)
    console.print(sweep_layer_table(res, "test accuracy by layer (cities, chance 0.500)"))
    console.print(sweep_choice_table(res))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    acc = {(r["method"], r["layer"]): r["accuracy"] for r in res.rows}
    for layer in range(30):  # one row per layer holding all 8 numbers, each whole
        row = next(line for line in lines if line.split() and line.split()[0] == str(layer) and "." in line)
        numbers = [t.rstrip("*") for t in row.split()[1:]]
        assert numbers == [f"{acc[(m, layer)]:.3f}" for m in res.methods], row
    for m in res.methods:
        chosen = res.best_layer(m)
        val = {r["layer"]: r["val_accuracy"] for r in res.rows if r["method"] == m}
        assert chosen == max(val, key=val.get)
        row = next(line for line in lines if line.split() and line.split()[0] == m)
        assert row.split()[1:4] == [str(chosen), f"{val[chosen]:.3f}", f"{acc[(m, chosen)]:.3f}"]
    starred = sum(line.count("*") for line in lines if line.split() and line.split()[0].isdigit())
    assert starred == len(res.methods)


def test_sweep_plot_has_n_and_the_chosen_layers(tmp_path):
    res = _thirty_layer_result()
    path = res.plot(tmp_path / "sweep.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
