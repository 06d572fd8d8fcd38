"""`liedetect bench`: one recipe, an Apollo-format data set, labelled chats and an Apollo-format control on the
built-in organism; the table in Apollo's columns checked against scikit-learn / numpy on the written scores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from liedetect.example_chats import write_examples
from liedetect.scoring import load_transcripts


def as_rollouts(path, out, name, control=False):
    """Labelled organism chats rewritten as an Apollo rollout file: the reply goes into the placeholder."""
    rollouts = []
    for t in load_transcripts(path).transcripts:
        *context, reply = t.messages
        rollouts.append({"input_messages": [{"role": m.role, "content": m.content, "detect": False} for m in context]
                         + [{"role": "assistant", "content": "", "detect": True}],
                         "output_strs": [reply.content, ""],  # a second, empty sample: dropped and counted
                         "graded_deception": [1 if control or t.label == 1 else 7, 1],
                         "expected_label": "honest" if t.label == 1 else "deceptive"})
    out.write_text(json.dumps({"dataset_class": "X", "base_name": name, "variant": "plain", "model": "organism",
                               "rollouts": rollouts}))
    return out


@pytest.fixture(scope="module")
def bench_dir(organism_model, tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("bench")
    chats = write_examples(folder / "chats", "organism", n=40, seed=0, model=organism_model)
    as_rollouts(chats["test"], folder / "organism__plain.json", "organism")
    as_rollouts(chats["control"], folder / "alpaca__plain.json", "alpaca", control=True)
    (folder / "bench.yaml").write_text(
        "out: results\nbootstrap: 50\n"
        "control: {path: alpaca__plain.json, format: apollo-control}\n"
        "datasets:\n  apollo-format: organism__plain.json\n  chats: chats/test.jsonl\n"
        "recipe: {name: lr, train: chats/train.jsonl, layer: 3}\n")
    return folder


def test_bench_writes_the_table_and_the_plots(bench_dir):
    from cli import app

    res = CliRunner().invoke(app, ["bench", str(bench_dir / "bench.yaml"), "--model", "organism", "--quiet"])
    assert res.exit_code == 0, res.output
    out = bench_dir / "results"
    rows = list(csv.DictReader((out / "results_table.csv").open()))
    assert [r["dataset"] for r in rows] == ["apollo-format", "chats"]
    for col in ("auroc", "auroc_lo", "auroc_hi", "auroc_vs_control", "recall_1pct", "fpr_1pct", "recall_0_2pct",
                "fpr_0_2pct", "n_honest", "n_deceptive", "n_dropped"):
        assert col in rows[0]
    scores = list(csv.DictReader((out / "scores.csv").open()))
    control = np.array([float(s["score"]) for s in scores if s["dataset"] == "control"])
    n_test = len(load_transcripts(bench_dir / "chats" / "test.jsonl").transcripts)
    assert len(control) == 40
    for row in rows:
        mine = [s for s in scores if s["dataset"] == row["dataset"]]
        y = np.array([s["label"] == "0" for s in mine])
        s = np.array([float(s["score"]) for s in mine])
        assert int(row["n_deceptive"]) == y.sum() and int(row["n_honest"]) == (~y).sum() == n_test - y.sum()
        assert float(row["auroc"]) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
        assert float(row["auroc_lo"]) <= float(row["auroc"]) <= float(row["auroc_hi"])
        yc = np.r_[np.zeros(len(control)), np.ones(y.sum())]
        assert float(row["auroc_vs_control"]) == pytest.approx(roc_auc_score(yc, np.r_[control, s[y]]), abs=1e-9)
        t = float(row["threshold_1pct"])
        assert (control > t).mean() <= 0.01
        assert float(row["recall_1pct"]) == pytest.approx((s[y] > t).mean())
        assert float(row["fpr_1pct"]) == pytest.approx((s[~y] > t).mean())
    # the Apollo-format rows read the same replies as the chats: one empty sample per rollout dropped and counted
    assert rows[0]["n_dropped"] == str(n_test) and rows[1]["n_dropped"] == "0"
    # ... and score them alike: the placeholder filled and the detect mask give the chats' own tokens
    by_set = {n: sorted(float(s["score"]) for s in scores if s["dataset"] == n) for n in ("apollo-format", "chats")}
    assert by_set["apollo-format"] == pytest.approx(by_set["chats"], abs=1e-5)
    assert rows[0]["auroc"] == rows[1]["auroc"]
    for name in ("roc_apollo-format.png", "dist_apollo-format.png", "roc_chats.png", "dist_chats.png"):
        assert (out / "lr" / name).read_bytes()[:4] == b"\x89PNG"
    det = json.loads((out / "lr" / "detector" / "detector.json").read_text())
    assert det["calibration"]["control_scores"] == pytest.approx(control.tolist(), abs=1e-6)
    summary = json.loads((out / "results.json").read_text())
    assert summary["datasets"]["apollo-format"]["dropped"] == {"empty reply": n_test}


def test_a_bad_config_is_one_sentence(tmp_path):
    from cli import app

    cfg = tmp_path / "b.yaml"
    cfg.write_text("control: c.json\ndatasets: {a: a.json}\nrecipe: {name: x, train: t.jsonl, colour: red}\n")
    res = CliRunner().invoke(app, ["bench", str(cfg)])
    assert res.exit_code == 2 and "unknown key(s) colour" in res.output
