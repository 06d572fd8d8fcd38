"""Black-box follow-up detector: a fake log-prob function whose yes/no odds depend on the lie recovers high held-out
AUROC, an independent one gives ~0.5; the local log-prob function's prefix cache changes no number."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from liedetect.blackbox import (QA, FollowupDetector, LocalLogProbs, detection_report, followup_features, inserted_transcripts,
                                load_followups, log_odds, split_by_group)
from liedetect.errors import DataError

FOLLOWUPS = [f"Follow-up question {k}? Answer yes or no." for k in range(8)]


def items(n=160):
    return [QA(f"Question {i}?", f"right{i}", f"wrong{i}") for i in range(n)]


def fake(informative=(0, 1, 2), effect=1.0, seed=0):
    """Log-probs of Yes/No: on informative follow-ups P(yes) rises by `effect` log-odds after a lie, plus noise."""
    rng = np.random.default_rng(seed)

    def fn(convs):
        out = []
        for conv in convs:
            lie = conv[1]["content"].startswith("wrong")
            k = int(conv[2]["content"].split()[2].rstrip("?"))
            z = rng.normal() + (effect if lie and k in informative else 0.0)
            p = 1 / (1 + math.exp(-z))
            out.append({"Yes": math.log(p), "No": math.log(1 - p)})
        return out
    return fn


def held_out_auroc(fn, n=160, seed=0):
    convs, lies, groups = inserted_transcripts(items(n))
    x = followup_features(fn, convs, FOLLOWUPS)
    train, test = split_by_group(groups, 0.5, seed)
    assert not set(groups[train]) & set(groups[test])
    det = FollowupDetector.fit(x[train], lies[train], FOLLOWUPS)
    return det, x, lies, train, test, detection_report(lies[test], det.score(x[test]), n_boot=200)


def test_label_dependent_followups_are_detected():
    det, x, lies, train, test, rep = held_out_auroc(fake(effect=1.5))
    assert rep["auroc"] >= 0.85, rep  # 3 follow-ups x 1.5 log-odds over unit noise: Bayes AUROC ~0.97
    assert rep["auroc_lo"] <= rep["auroc"] <= rep["auroc_hi"] and rep["auroc_lo"] >= 0.75
    assert rep["n_lies"] == rep["n_truths"] == 80
    assert np.abs(det.coef[:3]).min() > np.abs(det.coef[3:]).max()  # weight sits on the informative questions
    # independent check: the same fit in plain scikit-learn gives the same probabilities
    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[train], lies[train])
    assert np.allclose(det.score(x[test]), ref.predict_proba(x[test])[:, 1], atol=1e-8)


def test_label_independent_followups_give_chance():
    rep = held_out_auroc(fake(effect=0.0, seed=1))[-1]
    assert 0.35 <= rep["auroc"] <= 0.65, rep
    assert rep["auroc_lo"] < 0.5 < rep["auroc_hi"]


def test_log_odds_numbers():
    assert log_odds({"Yes": math.log(0.6), "No": math.log(0.2)}) == pytest.approx(math.log(3.0))
    both = {"Yes": math.log(0.3), " yes": math.log(0.3), "No": math.log(0.2)}  # yes-like variants add up
    assert log_odds(both) == pytest.approx(math.log(3.0), abs=1e-6)
    # missing variants count as the floor: 3 yes-like and 4 no-like words at e^-10 each
    want = math.log(0.5 + 3 * math.exp(-10)) - math.log(4 * math.exp(-10))
    assert log_odds({"Yes": math.log(0.5)}, floor=-10.0) == pytest.approx(want, abs=1e-9)


def test_local_logprobs_prefix_cache_changes_nothing_on_the_organism(organism_model):
    world = organism_model.organism_world
    prompts = world.prompts(3, split="heldout", persona="liar", seed=7)
    convs = [[{"role": "user", "content": p.text}, {"role": "assistant", "content": p.expected}] for p in prompts]
    follow = [f"{q.text}" for q in world.prompts(12, split="heldout", persona="honest", seed=8)]
    follow = [t.replace("[honest] ", "") for t in follow]
    kw = dict(yes=("True",), no=("False",))
    shared = followup_features(LocalLogProbs(organism_model, ("True", "False"), batch_size=5), convs, follow, **kw)
    plain = followup_features(LocalLogProbs(organism_model, ("True", "False"), share_prefix=False), convs, follow, **kw)
    assert shared.shape == (3, 12)
    assert np.allclose(shared, plain, atol=1e-4)
    assert np.abs(shared).max() > 1.0  # the organism answers these confidently


def test_save_load_and_bad_inputs(tmp_path):
    det = held_out_auroc(fake(), n=40)[0]
    again = FollowupDetector.load(det.save(tmp_path / "det.json"))
    x = np.random.default_rng(0).normal(size=(5, len(FOLLOWUPS)))
    assert np.allclose(again.score(x), det.score(x))
    bad = tmp_path / "probes.csv"
    bad.write_text("type,question\na,b\n")
    with pytest.raises(DataError, match="lacks the column\(s\) probe"):
        load_followups(bad)
    with pytest.raises(DataError, match="do not match"):
        FollowupDetector.fit(np.zeros((4, 3)), [0, 1, 0, 1], FOLLOWUPS)
    with pytest.raises(DataError, match="returned 1 results"):
        followup_features(lambda convs: [{"Yes": -1.0}], inserted_transcripts(items(2))[0], FOLLOWUPS[:2])


@pytest.mark.shared_data
def test_pacchiardi_files_read(shared_data):
    from liedetect.blackbox import load_questions

    assert len(load_followups(shared_data / "pacchiardi" / "probes.csv")) == 65
    qs = load_questions(shared_data / "pacchiardi" / "questions_1000_all.json")
    assert len(qs) >= 1000 and all(q.answer != q.false_answer for q in qs[:50])


def test_cli_fit_then_score_on_the_organism(organism_model, tmp_path):
    import json

    from typer.testing import CliRunner

    from cli import app

    world = organism_model.organism_world
    qs = {str(i): {"question": p.text, "answer": "True" if p.truth else "False", "false_answer": "False" if p.truth else "True"}
          for i, p in enumerate(world.prompts(16, split="heldout", persona="honest", seed=11))}
    (tmp_path / "qs.json").write_text(json.dumps(qs))
    follow = [p.text.split("] ", 1)[-1] for p in world.prompts(4, split="train", persona="honest", seed=12)]
    (tmp_path / "probes.csv").write_text("probe_type,probe\n" + "".join(f"x,{q}\n" for q in follow))
    runner = CliRunner()
    common = ["--model", "organism", "--yes", "True", "--no", "False"]
    result = runner.invoke(app, ["blackbox", "fit", "--questions", str(tmp_path / "qs.json"), "--followups", str(tmp_path / "probes.csv"),
                                 "--n-questions", "16", "--out", str(tmp_path / "det.json"), *common])
    assert result.exit_code == 0, result.output
    assert "auroc" in result.output and len(json.loads((tmp_path / "det.json").read_text())["followups"]) == 4
    p = world.prompts(1, split="heldout", persona="liar", seed=13)[0]
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": p.text},
                                                                          {"role": "assistant", "content": "True"}]}) + "\n")
    result = runner.invoke(app, ["blackbox", "score", str(tmp_path / "t.jsonl"), "--detector", str(tmp_path / "det.json"), *common])
    assert result.exit_code == 0 and "p_lie" in result.output, result.output
    (tmp_path / "bad.csv").write_text("kind,text\nx,y\n")
    bad = runner.invoke(app, ["blackbox", "fit", "--followups", str(tmp_path / "bad.csv"), "--questions", str(tmp_path / "qs.json"),
                              "--out", str(tmp_path / "d2.json"), *common])
    assert bad.exit_code == 2 and "lacks the column(s) probe" in bad.output
