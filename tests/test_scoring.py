"""Transcript scoring on a tiny random model: input parsing, exact token ranges, scores against an
unbatched reference, a planted direction, calibration, streaming output, kill-and-resume, CLI."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import GPT2_DIR
from liedetect import scoring
from liedetect.errors import CheckpointError, DataError, ProbeMismatchError
from liedetect.scoring import Message, Transcript

ROOT = Path(__file__).resolve().parent.parent
LAYER = 1
HONEST_WORDS = [" river", " stone", " cloud", " garden", " window", " bread", " music", " paper", " table", " horse"]
LIE_WORDS = [" never", " fake", " wrong", " denied", " hidden", " false", " secret", " invented", " bogus", " fraud"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class LinearProbe:
    """A bare linear read-out with probe metadata (decision > 0 = true)."""

    def __init__(self, coef: torch.Tensor, bias: float = 0.0, layer: int = LAYER) -> None:
        self.coef_, self.bias_, self.n_features_in_ = coef.float(), float(bias), coef.shape[0]
        self.meta_ = {"layer": layer, "hook": "resid_post"}

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.coef_ + self.bias_


@pytest.fixture(scope="module")
def random_probe(tiny_model):
    gen = torch.Generator().manual_seed(0)
    return LinearProbe(torch.randn(tiny_model.cfg.d_model, generator=gen), 0.1)


def sentence(rng: random.Random, n_lie: int, n: int = 6) -> tuple[str, list[bool]]:
    """Words from the two vocabularies, `n_lie` of them from the lie list, in random order."""
    flags = [True] * n_lie + [False] * (n - n_lie)
    rng.shuffle(flags)
    words = [rng.choice(LIE_WORDS if f else HONEST_WORDS) for f in flags]
    return "".join(words).strip(), flags


def chats(n: int, seed: int, lie_fraction: float = 0.5) -> list[Transcript]:
    """Two-turn chats; deceptive ones have mostly lie words in the assistant reply."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lie = rng.random() < lie_fraction
        reply, _ = sentence(rng, n_lie=rng.randint(4, 6) if lie else 0, n=6 + (i % 5))
        q, _ = sentence(rng, n_lie=rng.randint(0, 6))
        out.append(Transcript(id=f"c{seed}-{i}", messages=[Message("user", "Tell me about" + q), Message("assistant", reply)],
                              label=scoring.DECEPTIVE if lie else scoring.HONEST, group="liar" if lie else "honest"))
    return out


# ---------------------------------------------------------------- input


def test_malformed_lines_reported_with_line_numbers(tmp_path):
    good = {"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    lines = [json.dumps(good), "{not json", json.dumps({"id": "b"}), "",
             json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
             json.dumps({"messages": [{"role": "assistant", "content": "   "}]}),
             json.dumps({"messages": [{"role": "assistant", "content": "ok"}], "label": "maybe"}),
             json.dumps({**good, "label": "honest"}),
             json.dumps({"messages": [{"role": "assistant", "content": "fine"}], "deceptive": True})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    data = scoring.load_transcripts(path)
    assert [(p.line) for p in data.problems] == [2, 3, 5, 6, 7, 8]
    reasons = [p.reason for p in data.problems]
    assert "bad JSON" in reasons[0] and "messages" in reasons[1] and "wizard" in reasons[2]
    assert "empty" in reasons[3] and "maybe" in reasons[4] and "duplicate id 'a'" in reasons[5]
    assert [t.id for t in data.transcripts] == ["a", "line-9"]
    assert data.transcripts[1].label == 0
    with pytest.raises(scoring.ScoringError, match="line 2: bad JSON"):
        scoring.load_transcripts(path, strict=True)


def test_csv_statements_load_as_one_message_transcripts(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('statement,label\n"Paris is in France, AI: yes",1.0\nThe moon is cheese.,0.0\n,1\nodd,\n')
    data = scoring.load_transcripts(path)
    assert [t.label for t in data.transcripts] == [1, 0, None]
    assert data.transcripts[0].messages[0].content == "Paris is in France, AI: yes" and data.transcripts[0].raw
    assert [p.line for p in data.problems] == [4]


@pytest.mark.shared_data
def test_real_world_scenarios_csv_loads(shared_data):
    data = scoring.load_transcripts(shared_data / "truth_is_universal" / "real_world_scenarios" / "all_unambiguous_replies.csv")
    labels = [t.label for t in data.transcripts]
    assert len(labels) == 104 and labels.count(0) == 49 and labels.count(1) == 55 and not data.problems


# ---------------------------------------------------------------- token ranges


def _ref_range(tok, ids, text, start, end):
    """Independent reference: token k starts the message when decode(ids[:k]) ends right before it."""
    decoded = [tok.decode(ids[:k]) for k in range(len(ids) + 1)]
    special = len(tok.decode(ids[:1])) if ids and ids[0] == tok.bos_token_id else 0
    lens = [len(d) - special for d in decoded]
    k0 = max(k for k, n in enumerate(lens) if n <= start)
    k1 = min(k for k, n in enumerate(lens) if n >= end)
    return k0, k1


def test_plain_format_ranges_cover_exactly_the_assistant_message(tiny_model):
    tok = tiny_model.tokenizer
    t = Transcript("x", [Message("system", "Be brief."), Message("user", "Is the sky green?"),
                         Message("assistant", "No, the sky is blue. 日本 ü!"), Message("user", "Sure?"),
                         Message("assistant", "Yes.")])
    enc = scoring.encode_transcript(tok, t)
    text, spans, kind = scoring.render(tok, t)
    assert kind == "plain" and text.startswith("system: Be brief.\nuser: ")
    assert [r is not None for r in enc.ranges] == [False, False, True, False, True]
    for i in (2, 4):
        assert "".join(enc.pieces[i]) == t.messages[i].content
        a, b = enc.ranges[i]
        assert (a, b) == _ref_range(tok, enc.ids, text, *spans[i])
        assert tok.decode(enc.ids[a:b]).strip() == t.messages[i].content
        assert len(enc.pieces[i]) == b - a
    enc_all = scoring.encode_transcript(tok, t, roles=("user", "assistant", "system"))
    assert all(r is not None for r in enc_all.ranges)


def test_chat_template_ranges_exclude_template_markup(tiny_model):
    tok = copy.deepcopy(tiny_model.tokenizer)
    tok.chat_template = CHATML
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    t = Transcript("x", [Message("user", "Is it raining?"), Message("assistant", "It is not raining at all."),
                         Message("user", "assistant"), Message("assistant", "user")])
    text, spans, kind = scoring.render(tok, t)
    assert kind == "chat" and text.count("<|im_start|>") == 4
    # the render-prefix technique places message 2 ("assistant") after its own header, not at a role name
    assert text[spans[2][0] - 1] == "\n" and text[spans[3][0] - len("<|im_start|>assistant\n"):spans[3][0]] == "<|im_start|>assistant\n"
    enc = scoring.encode_transcript(tok, t)
    for i in (1, 3):
        a, b = enc.ranges[i]
        assert tok.decode(enc.ids[a:b]) == t.messages[i].content
        assert "".join(enc.pieces[i]) == t.messages[i].content
    assert enc.ranges[0] is None and enc.ranges[2] is None
    with pytest.raises(DataError, match="no chat template"):
        scoring.encode_transcript(tiny_model.tokenizer, t, fmt="chat")


def test_too_long_policies(tiny_model):
    n_ctx = tiny_model.cfg.n_ctx
    long = Transcript("long", [Message("user", "word " * (n_ctx + 20)), Message("assistant", "short answer here")])
    with pytest.raises(scoring.ScoringError, match="tokens long but the model reads at most"):
        scoring.encode_transcript(tiny_model.tokenizer, long, max_length=n_ctx)
    enc = scoring.encode_transcript(tiny_model.tokenizer, long, max_length=n_ctx, too_long="truncate")
    assert len(enc.ids) == n_ctx and enc.truncated > 0
    assert "".join(enc.pieces[1]) == "short answer here" and not enc.cut[1]
    data = scoring.TranscriptSet([long, Transcript("ok", [Message("assistant", "fine")], line=2)], [], "t")
    data.transcripts[0].line = 1
    encs = scoring.encode_all(tiny_model.tokenizer, data, ("assistant",), "auto", n_ctx, "skip", strict=False)
    assert [e.transcript.id for e in encs] == ["ok"] and data.problems[0].line == 1


# ---------------------------------------------------------------- scores


def test_batched_scores_equal_unbatched_reference(tiny_model, random_probe):
    from liedetect.activations import token_activations

    ts = chats(12, seed=1)
    result = scoring.score_transcripts(tiny_model, random_probe, ts, batch_size=5, progress=False)
    assert [r["id"] for r in result.records] != [t.id for t in ts]  # length bucketing reordered them
    by_id = {r["id"]: r for r in result.records}
    tok = tiny_model.tokenizer
    worst = 0.0
    for t in ts:
        text, spans, _ = scoring.render(tok, t)
        ids = tok(text)["input_ids"]
        a, b = _ref_range(tok, ids, text, *spans[1])
        hidden = token_activations(tiny_model, torch.tensor([ids]), None, [LAYER], "resid_post")[LAYER][0]
        ref = -random_probe.decision_function(hidden[a:b].float()).numpy()
        got = np.array(by_id[t.id]["messages"][1]["scores"])
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max()))
        m = by_id[t.id]["messages"][1]
        assert m["mean"] == pytest.approx(ref.mean(), abs=1e-4) and m["last"] == pytest.approx(ref[-1], abs=1e-4)
        assert m["max"] == pytest.approx(ref.max(), abs=1e-4)
    assert worst < 1e-4


@pytest.fixture(scope="module")
def planted_probe(tiny_model, tmp_path_factory):
    """Logistic probe fitted on every token of separate rendered chats: lie words (0) vs honest words (1)."""
    from probes import LogisticProbe

    from liedetect.activations import extract
    from liedetect.datasets import render_chat
    from liedetect.models import model_id

    texts = [render_chat(None, [{"role": m.role, "content": m.content} for m in t.messages]) for t in chats(30, seed=11)]
    acts = extract(tiny_model, texts, layers=[LAYER], position="all", progress=False)
    tok = tiny_model.tokenizer
    lie_ids = {tok(w)["input_ids"][-1] for w in LIE_WORDS}
    honest_ids = {tok(w)["input_ids"][-1] for w in HONEST_WORDS}
    ids = [i for t in texts for i in tok(t)["input_ids"]]
    assert len(ids) == acts.acts.shape[0]
    keep = [k for k, i in enumerate(ids) if i in lie_ids or i in honest_ids]
    y = np.array([0 if ids[k] in lie_ids else 1 for k in keep])
    probe = LogisticProbe(C=1.0).fit(acts.layer(LAYER)[keep], y)
    path = tmp_path_factory.mktemp("probe") / "planted"
    probe.save(path, meta={"model_id": model_id(tiny_model), "hook": "resid_post", "layer": LAYER, "position": "all"})
    return path


def test_planted_direction_scores_lie_tokens_and_messages(tiny_model, planted_probe):
    from sklearn.metrics import roc_auc_score

    probe = scoring.load_probe(planted_probe, tiny_model)
    ts = chats(40, seed=2)
    result = scoring.score_transcripts(tiny_model, probe, ts, progress=False)
    tok_scores, tok_lie = [], []
    for rec in result.records:
        m = rec["messages"][1]
        for piece, s in zip(m["tokens"], m["scores"]):
            word = " " + piece.strip()
            if word in LIE_WORDS or word in HONEST_WORDS:
                tok_scores.append(s)
                tok_lie.append(word in LIE_WORDS)
    assert len(tok_scores) > 200
    token_auroc = roc_auc_score(tok_lie, tok_scores)
    assert token_auroc >= 0.99, token_auroc
    assert result.metrics.auroc >= 0.99
    assert result.metrics.n_deceptive + result.metrics.n_honest == 40


def test_probe_from_another_model_is_refused(tiny_model, planted_probe, tmp_path):
    import probes

    p = probes.load(planted_probe)
    p.save(tmp_path / "other", meta={**p.meta_, "model_id": "some-other-model|L12|d768"})
    with pytest.raises(ProbeMismatchError, match="some-other-model"):
        scoring.load_probe(tmp_path / "other", tiny_model)
    wide = LinearProbe(torch.ones(tiny_model.cfg.d_model + 1))
    with pytest.raises(ProbeMismatchError, match="wide"):
        scoring.Scorer(tiny_model, wide)


# ---------------------------------------------------------------- calibration


def test_threshold_at_fpr_and_confusion():
    rng = np.random.default_rng(0)
    control = rng.normal(size=5000)
    t = scoring.threshold_at_fpr(control, 0.01)
    assert 0.009 <= (control > t).mean() <= 0.01
    assert scoring.threshold_at_fpr([0.0, 1.0, 2.0, 3.0], 0.0) == 3.0
    rows = [{"score": s, "label": lab, "group": g} for s, lab, g in
            [(0.1, 1, "h"), (0.2, 1, "h"), (0.9, 1, "h"), (0.8, 0, "l"), (0.95, 0, "l"), (0.3, 0, "l"), (5, None, "u")]]
    m = scoring.evaluate(rows, threshold=0.5)
    assert m.confusion == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert m.recall == pytest.approx(2 / 3) and m.fpr == pytest.approx(1 / 3)
    assert m.auroc == pytest.approx(roc_like(rows))
    assert m.by_group["u"]["flagged"] == 1.0


def roc_like(rows):
    pos = [r["score"] for r in rows if r["label"] == 0]
    neg = [r["score"] for r in rows if r["label"] == 1]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def test_control_set_sets_threshold(tiny_model, planted_probe, tmp_path):
    probe = scoring.load_probe(planted_probe, tiny_model)
    control = [t for t in chats(60, seed=3) if t.label == 1]
    result = scoring.score_transcripts(tiny_model, probe, chats(30, seed=4), out=tmp_path / "s.jsonl",
                                       control=control, fpr=0.05, progress=False)
    ctrl_scores = [r["score"] for r in scoring.message_rows(scoring.read_scores(tmp_path / "s.control.jsonl"))]
    assert len(ctrl_scores) == len(control)
    assert result.calibration.source == "control"
    assert np.mean(np.array(ctrl_scores) > result.calibration.threshold) <= 0.05
    assert result.metrics.recall >= 0.9


# ---------------------------------------------------------------- streaming and resume


def test_resume_detects_half_written_line_and_refuses_other_settings(tiny_model, random_probe, tmp_path):
    ts = chats(17, seed=5)
    full = tmp_path / "full.jsonl"
    scoring.score_transcripts(tiny_model, random_probe, ts, out=full, batch_size=4, progress=False)
    lines = full.read_bytes().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(lines[:6]) + lines[6][: len(lines[6]) // 2])
    (tmp_path / "part.jsonl.meta.json").write_bytes((tmp_path / "full.jsonl.meta.json").read_bytes())
    result = scoring.score_transcripts(tiny_model, random_probe, ts, out=part, batch_size=4, resume=True, progress=False)
    assert part.read_bytes() == full.read_bytes()
    assert result.n_resumed == 6 and result.n_new == 11
    with pytest.raises(CheckpointError, match="aggregate"):
        scoring.score_transcripts(tiny_model, random_probe, ts, out=part, aggregate="max", resume=True, progress=False)


KILL_SCRIPT = r"""
import sys, time
from liedetect import scoring
from liedetect.models import tiny_native
from liedetect.scoring import run as scoring_run
slow = scoring.local_runner
def local_runner(scorer):
    run = slow(scorer)
    def wrapped(batches):
        for recs in run(batches):
            time.sleep(0.15)
            yield recs
    return wrapped
scoring_run.local_runner = local_runner  # the module whose score_transcripts calls it
model = tiny_native(sys.argv[4], seed=0)
probe = scoring.load_probe(sys.argv[1], model)
scoring.score_transcripts(model, probe, sys.argv[2], out=sys.argv[3], batch_size=3, resume=True, progress=False)
"""


def test_killed_run_resumes_to_identical_output(tiny_model, planted_probe, tmp_path):
    ts = chats(36, seed=6)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": t.id, "label": scoring.label_name(t.label), "group": t.group,
                                       "messages": [{"role": m.role, "content": m.content} for m in t.messages]}) + "\n"
                           for t in ts))
    out = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(planted_probe), str(src), str(out), str(GPT2_DIR)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_killed = out.read_bytes().count(b"\n")
    assert 6 <= n_killed < 36
    probe = scoring.load_probe(planted_probe, tiny_model)
    resumed = scoring.score_transcripts(tiny_model, probe, src, out=out, batch_size=3, resume=True, progress=False)
    straight = tmp_path / "straight.jsonl"
    scoring.score_transcripts(tiny_model, probe, src, out=straight, batch_size=3, progress=False)
    assert out.read_bytes() == straight.read_bytes()
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 36
    assert resumed.n_new == 36 - n_killed


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    """A 2-layer random GPT-2 saved with save_pretrained, so `--model DIR` works offline."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from liedetect.models import gpt2_tokenizer

    path = tmp_path_factory.mktemp("gpt2-tiny")
    tok = gpt2_tokenizer(GPT2_DIR)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=len(tok))).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_cli_score_end_to_end(hf_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cli import app
    from liedetect.models import load_model, model_id

    model = load_model(str(hf_model_dir), device="cpu")
    gen = torch.Generator().manual_seed(1)
    from probes import MassMeanProbe

    X = torch.randn(40, model.cfg.d_model, generator=gen)
    probe = MassMeanProbe().fit(X, np.arange(40) % 2)
    probe.save(tmp_path / "p", meta={"model_id": model_id(model), "hook": "resid_post", "layer": 1, "position": "all"})
    src = tmp_path / "t.jsonl"
    good = [{"id": t.id, "label": scoring.label_name(t.label), "messages": [{"role": m.role, "content": m.content} for m in t.messages]}
            for t in chats(12, seed=8)]
    src.write_text("\n".join(json.dumps(g) for g in good[:5]) + "\n{broken\n" + "\n".join(json.dumps(g) for g in good[5:]) + "\n")
    args = ["score", str(src), "--probe", str(tmp_path / "p.json"), "--model", str(hf_model_dir), "--out",
            str(tmp_path / "s.jsonl"), "--html", str(tmp_path / "r.html"), "--quiet", "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "line 6" in res.output and "bad JSON" in res.output
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 12
    assert (tmp_path / "r.html").exists() and (tmp_path / "r_hist.png").exists() and (tmp_path / "r_roc.png").exists()
    summary = json.loads((tmp_path / "s.jsonl.summary.json").read_text())
    assert summary["problems"] == [{"line": 6, "reason": summary["problems"][0]["reason"]}]
    res = CliRunner().invoke(app, args + ["--strict"])
    assert res.exit_code == 2 and "line 6" in res.output


def test_scorer_refuses_a_probe_trained_under_another_bos_policy(tiny_model):
    """Scoring tokenizes as the tokenizer/template does (BOS 'auto'); a probe read under another policy would be misapplied."""
    import torch

    from liedetect.errors import ProbeMismatchError
    from liedetect.scoring import Scorer
    from probes import LogisticProbe

    X = torch.randn(40, tiny_model.cfg.d_model)
    probe = LogisticProbe(C=1.0).fit(X, [0, 1] * 20)
    probe.meta_ = {"layer": 1, "hook": "resid_post", "bos": "never"}
    with pytest.raises(ProbeMismatchError, match="--bos never"):
        Scorer(tiny_model, probe)
    probe.meta_["bos"] = "auto"
    assert Scorer(tiny_model, probe).layer == 1
