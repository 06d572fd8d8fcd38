"""The detector CLI end to end on the organism, the demo's probe and detector accepted by `score`, and the
warnings that prevent nonsense (unknown tokens, eval on training data, an ignored option, few controls)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def demo(tmp_path_factory, one_thread):
    from liedetect.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, n=40, seed=0, progress=False, steer=False)
    return out, report


@pytest.mark.slow
def test_demo_probe_and_detector_are_accepted_by_score(demo):
    out, report = demo
    assert report.detector and (out / "detector" / "detector.json").exists()
    meta = json.loads((out / "truth_probe.json").read_text())["meta"]
    assert meta["model_id"] == "organism|L5|d128"  # the spelling every other writer uses (was 'organism')
    code, text = run("score", out / "chats" / "test.jsonl", "--probe", out / "truth_probe.json", "--model", "organism",
                     "--format", "text", "--out", out / "s1.jsonl", "-q")
    assert code == 0, text
    code, text = run("score", out / "chats" / "test.jsonl", "--detector", out / "detector", "--out", out / "s2.jsonl",
                     "--html", out / "r.html", "-q")
    assert code == 0, text
    summary = json.loads((out / "s2.jsonl.summary.json").read_text())
    assert summary["calibration"]["threshold"] == pytest.approx(report.detector["threshold"])
    assert summary["settings"]["layer"] == report.detector["layer"]
    assert "what these numbers can and cannot show" in (out / "summary.txt").read_text()
    assert "[liar]" in (out / "summary.txt").read_text()


def test_train_calibrate_show_and_few_controls_warning(tmp_path, organism_model, one_thread):
    from liedetect.example_chats import write_examples

    chats = write_examples(tmp_path / "chats", "organism", n=60, model=organism_model)
    code, text = run("detector", "train", chats["train"], "--model", "organism", "--layer", "3", "--out", tmp_path / "d",
                     "--system-prompt", "none", "-q")
    assert code == 0, text
    assert json.loads((tmp_path / "d" / "detector.json").read_text())["system_prompt"] == "none"
    code, text = run("detector", "calibrate", tmp_path / "d", "--control", chats["control"], "--fpr", "0.01", "-q")
    assert code == 0 and "fewer than 1/FPR = 100" in text  # 60 controls cannot measure a 1% FPR
    code, text = run("detector", "show", tmp_path / "d", "--json")
    d = json.loads(text)
    assert d["layer"] == 3 and d["calibration"]["n_control"] == 60 and len(d["calibration"]["control_sha256"]) == 64
    code, text = run("detector", "show", tmp_path / "nothing")
    assert code == 2 and "not a detector folder" in text


def test_warnings_unknown_tokens_ignored_template_and_eval_on_training_data(tmp_path, one_thread):
    code, text = run("train", "--data", "builtin:arithmetic", "--model", "organism", "--layer", "3", "--template", "question",
                     "--out", tmp_path / "p", "-q")
    assert code == 0, text
    assert "--template is ignored by lr" in text
    assert "unknown to this model's tokenizer" in text  # the organism does not know 'plus' or 'equals'
    code, text = run("train", "--data", "builtin:organism", "--model", "organism", "--layer", "3", "--out", tmp_path / "q", "-q")
    assert code == 0 and "warning:" not in text
    code, text = run("eval", "--probe", tmp_path / "q.json", "--data", "builtin:organism", "--n-boot", "0", "-q")
    assert code == 0 and "is the data this probe was trained on" in text
    code, text = run("eval", "--probe", tmp_path / "q.json", "--data", "builtin:organism", "--seed", "1", "--n-boot", "0", "-q")
    assert code == 0 and "warning:" not in text


def test_score_needs_a_probe_or_a_detector(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}) + "\n")
    code, text = run("score", tmp_path / "c.jsonl", "--out", tmp_path / "s.jsonl")
    assert code == 2 and "--detector" in text


def test_unknown_token_rate_against_a_count(organism_model):
    from liedetect.checks import unknown_token_rate

    tok = organism_model.tokenizer
    texts = ["3 is larger than 7", "zzqx plus wibble equals 4"]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    expected = sum(r.count(tok.unk_token_id) for r in ids) / sum(len(r) for r in ids)
    assert unknown_token_rate(tok, texts) == pytest.approx(expected) and expected > 0.3
    assert unknown_token_rate(tok, texts[:1]) == 0.0


def test_config_errors_name_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: organism\ntrain: a.jsonl\ncontrol: b.jsonl\neval: [c.jsonl]\nlayer: 3\n")
    code, text = run("detector", "run", tmp_path / "bad.yaml")
    assert code == 2 and "unknown key(s) layer" in text
    (tmp_path / "short.yaml").write_text("model: organism\ntrain: a.jsonl\n")
    code, text = run("detector", "run", tmp_path / "short.yaml")
    assert code == 2 and "missing control, eval" in text
