"""CLI parity with the evaluation core: `train --method ttpd`, `sweep --methods ...,ttpd,multi-layer`, and too few
groups refused before anything loads (the real MiniLM encoder, offline)."""

from __future__ import annotations

import csv
import json
import random

import pytest
from typer.testing import CliRunner

from cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
PLACES = ["Paris", "Rome", "Madrid", "Berlin", "Lisbon", "Vienna", "Prague", "Dublin", "Oslo", "Athens", "Warsaw", "Sofia"]
COUNTRIES = ["France", "Italy", "Spain", "Germany", "Portugal", "Austria", "Czechia", "Ireland", "Norway", "Greece",
             "Poland", "Bulgaria"]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def write_pair(folder, n_cities: int = 12):
    """cities.csv and neg_cities.csv in the Truth_is_Universal layout (statement,label,city)."""
    rng = random.Random(0)
    for negated in (False, True):
        rows = []
        for i, (city, country) in enumerate(zip(PLACES[:n_cities], COUNTRIES[:n_cities])):
            wrong = COUNTRIES[(i + 1 + rng.randrange(n_cities - 1)) % n_cities]
            for where, true in ((country, True), (wrong, False)):
                verb = "is not" if negated else "is"
                rows.append({"statement": f"The city of {city} {verb} in {where}.", "label": int(true != negated),
                             "city": city})
        path = folder / f"{'neg_' if negated else ''}cities.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["statement", "label", "city"])
            writer.writeheader()
            writer.writerows(rows)
    return folder / "cities.csv"


def test_train_ttpd_reads_the_neg_twin_and_records_both_polarities(tmp_path, minilm_path):
    data = write_pair(tmp_path)
    code, out = run("train", data, "--model", minilm_path, "--method", "ttpd", "--layer", "2", "--test-size", "0",
                    "--out", tmp_path / "ttpd", "--quiet")
    assert code == 0, out
    side = json.loads((tmp_path / "ttpd.json").read_text())
    assert side["method"] == "ttpd" and side["fit_info"]["polarity"] == "both"
    assert side["meta"]["dataset"] == "cities+neg_cities" and side["meta"]["n_train"] == 48
    assert len(side["fit_info"]["weights_tG_polarity"]) == 2
    assert side["meta"]["bos_added"] in (True, False) and "bos_token" in side["meta"]


def test_ttpd_without_polarity_is_refused_before_the_model_loads(tmp_path):
    lone = tmp_path / "facts.csv"
    lone.write_text("statement,label\nThe sky is blue.,1\nThe sky is green.,0\nWater is wet.,1\nFire is cold.,0\n")
    code, out = run("train", lone, "--model", tmp_path / "no-such-model", "--method", "ttpd", "--layer", "0",
                    "--test-size", "0", "--out", tmp_path / "p", "--quiet")
    assert code == 2 and "no 'polarity' column and no negated twin neg_facts.csv" in out, out
    assert not (tmp_path / "p.json").exists()


def test_sweep_runs_ttpd_and_multi_layer_and_prints_the_layer_table(tmp_path, minilm_path):
    data = write_pair(tmp_path)
    code, out = run("sweep", data, "--model", minilm_path, "--methods", "lr,ttpd,multi-layer", "--layers", "1-3",
                    "--kfold", "3", "--group-by", "city", "--n-boot", "0", "--out", tmp_path / "sw", "--quiet")
    assert code == 0, out
    doc = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert doc["methods"] == ["lr", "ttpd", "multi-layer"]
    assert doc["selection"]["multi-layer"]["layer"] == -1 and doc["selection"]["multi-layer"]["n_test"] == 48
    assert doc["config"]["groups"] == {"column": "city", "n_groups": 12}
    assert doc["config"]["bos_added"] in (True, False)
    assert "*" in out and "all" in out  # the per-layer table marks the chosen layers; multi-layer reads them all


def test_too_few_groups_are_refused_before_the_model_loads(tmp_path):
    data = write_pair(tmp_path, n_cities=4)
    code, out = run("sweep", data, "--model", tmp_path / "no-such-model", "--methods", "lr", "--kfold", "5",
                    "--group-by", "city", "--out", tmp_path / "sw", "--quiet")
    assert code == 2, out
    assert "Only 4 distinct group(s)" in out and "needs at least 5" in out and "Traceback" not in out
    assert not (tmp_path / "sw").exists()
