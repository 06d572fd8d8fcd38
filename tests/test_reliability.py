"""Reliability beyond the battery: resume against an edited input, one writer per output, stale locks, --debug,
unexpected errors, label conventions, text decoding, control-set size, and HTML injection in a real browser."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from conftest import GPT2_DIR
from liedetect import scoring
from liedetect.errors import DataError, LiedetectError, LockedError
from liedetect.paths import OutputLock, read_text
from liedetect.scoring import Message, Transcript

ROOT = Path(__file__).resolve().parent.parent
WORDS = [" river", " stone", " cloud", " garden", " never", " fake", " wrong", " denied"]


class LinearProbe:
    """A bare linear read-out with probe metadata (decision > 0 = true)."""

    def __init__(self, width: int, seed: int = 0) -> None:
        self.coef_ = torch.randn(width, generator=torch.Generator().manual_seed(seed))
        self.bias_, self.n_features_in_ = 0.0, width
        self.meta_ = {"layer": 1, "hook": "resid_post"}

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.coef_ + self.bias_


def chats(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = "".join(rng.choice(WORDS, size=5)).strip()
        out.append(Transcript(id=f"t{i}", label=int(i % 2), group="g",
                              messages=[Message("user", f"question {i}"), Message("assistant", words)]))
    return out


def write_jsonl(path: Path, ts: list) -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "label": scoring.label_name(t.label), "group": t.group,
                                        "messages": [{"role": m.role, "content": m.content} for m in t.messages]}) + "\n"
                            for t in ts))
    return path


def by_id(path: Path) -> dict:
    return {r["id"]: r for r in scoring.read_scores(path)}


# ---------------------------------------------------------------- resume against the input


def test_resume_rescores_an_edited_transcript_and_drops_a_removed_one(tiny_model, tmp_path):
    probe = LinearProbe(tiny_model.cfg.d_model)
    ts = chats(12)
    src = write_jsonl(tmp_path / "in.jsonl", ts)
    out = tmp_path / "s.jsonl"
    scoring.score_transcripts(tiny_model, probe, src, out=out, batch_size=2, progress=False)
    before = by_id(out)
    edited = [t for t in ts if t.id != "t9"]
    edited[3] = Transcript(id="t3", label=1, group="g", messages=[Message("user", "question 3"),
                                                                  Message("assistant", "stone cloud garden river")])
    write_jsonl(src, edited)
    resumed = scoring.score_transcripts(tiny_model, probe, src, out=out, batch_size=2, resume=True, progress=False)
    straight = tmp_path / "straight.jsonl"
    scoring.score_transcripts(tiny_model, probe, src, out=straight, batch_size=2, progress=False)
    after, fresh = by_id(out), by_id(straight)
    for rec in [*after.values(), *fresh.values(), *before.values()]:  # scores to float tolerance: the batches differ
        for m in rec["messages"]:
            if m.get("scored"):
                m["scores"] = np.round(m.pop("scores"), 4).tolist()
                for k in ("mean", "max", "last"):
                    m[k] = round(m[k], 4)
        rec["score"], rec["token_mean"] = round(rec["score"], 4), round(rec["token_mean"], 4)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 11 and "t9" not in ids  # no duplicate, no row of a transcript gone from the input
    assert resumed.n_new == 1 and resumed.n_resumed == 10
    assert after["t3"] != before["t3"] and after["t3"]["messages"][1]["tokens"] != before["t3"]["messages"][1]["tokens"]
    assert after == fresh  # every kept row is what a fresh run on the edited input writes, byte for byte as JSON
    assert all(after[k] == {**before[k], "line": after[k]["line"]} for k in after if k != "t3")
    assert after["t10"]["line"] == 10 != before["t10"]["line"]  # a kept row's line number follows the edited input


def test_resume_refuses_a_file_that_is_not_a_score_file(tiny_model, tmp_path):
    probe = LinearProbe(tiny_model.cfg.d_model)
    out = tmp_path / "s.jsonl"
    scoring.score_transcripts(tiny_model, probe, chats(4), out=out, progress=False)
    data = out.read_bytes()
    out.write_bytes(data + b'{"name": "a row of something else"}\n')
    with pytest.raises(LiedetectError, match="line 5 is not a liedetect score record"):
        scoring.score_transcripts(tiny_model, probe, chats(4), out=out, resume=True, progress=False)
    assert out.read_bytes() == data + b'{"name": "a row of something else"}\n'


# ---------------------------------------------------------------- one writer per output

WRITER = r"""
import sys, time
from liedetect import scoring
from liedetect.models import tiny_native
from liedetect.scoring import run as scoring_run
import torch
slow = scoring.local_runner
def local_runner(scorer):
    run = slow(scorer)
    def wrapped(batches):
        for recs in run(batches):
            time.sleep(0.2)
            yield recs
    return wrapped
scoring_run.local_runner = local_runner
class P:
    def __init__(self, w):
        self.coef_ = torch.randn(w, generator=torch.Generator().manual_seed(0)); self.bias_ = 0.0
        self.n_features_in_ = w; self.meta_ = {"layer": 1, "hook": "resid_post"}
    def decision_function(self, X):
        return X @ self.coef_ + self.bias_
model = tiny_native(sys.argv[3], seed=0)
scoring.score_transcripts(model, P(model.cfg.d_model), sys.argv[1], out=sys.argv[2], batch_size=2, resume=True, progress=False)
"""


def _start_writer(src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(out), str(GPT2_DIR)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 4:
            return proc
        time.sleep(0.02)
    raise AssertionError(f"the first writer did not start: {proc.stderr.read().decode()[-2000:]}")


def test_second_writer_is_refused_while_the_first_runs_and_a_dead_writers_lock_is_taken_over(tiny_model, tmp_path):
    probe = LinearProbe(tiny_model.cfg.d_model)
    src = write_jsonl(tmp_path / "in.jsonl", chats(30))
    out = tmp_path / "s.jsonl"
    first = _start_writer(src, out)
    try:
        assert first.poll() is None
        with pytest.raises(LockedError, match=f"pid {first.pid}"):
            scoring.score_transcripts(tiny_model, probe, src, out=out, batch_size=2, resume=True, progress=False)
        assert first.poll() is None  # the refused writer did not disturb the running one
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lock = tmp_path / "s.jsonl.lock"
    assert lock.read_text().strip() == str(first.pid)  # kill -9 leaves the lock of a dead process behind
    n_killed = out.read_bytes().count(b"\n")
    assert 4 <= n_killed < 30
    resumed = scoring.score_transcripts(tiny_model, probe, src, out=out, batch_size=2, resume=True, progress=False)
    assert not lock.exists() and resumed.n_new == 30 - n_killed
    straight = tmp_path / "straight.jsonl"
    scoring.score_transcripts(tiny_model, probe, src, out=straight, batch_size=2, progress=False)
    assert out.read_bytes() == straight.read_bytes()


def test_cli_second_writer_gets_one_sentence_and_the_output_is_untouched(tmp_path):
    from liedetect.models import load_model, model_id
    from probes import MassMeanProbe

    model = load_model("organism", device="cpu")
    X = torch.randn(40, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    MassMeanProbe().fit(X, np.arange(40) % 2).save(tmp_path / "p", meta={"model_id": model_id(model), "hook": "resid_post",
                                                                         "layer": 2, "model_spec": "organism"})
    src = write_jsonl(tmp_path / "in.jsonl", chats(4))
    out = tmp_path / "s.jsonl"
    args = ["score", str(src), "--probe", str(tmp_path / "p.json"), "--out", str(out), "--format", "text", "-q", "--fpr", "0.5"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = out.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom liedetect.paths import OutputLock\n"
                               "lock = OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)", str(out)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and f"pid {holder.pid}" in res.output and "Traceback" not in res.output
        assert out.read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    res = CliRunner().invoke(app, args)  # the holder died: its lock is stale and taken over
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "s.jsonl.lock").exists()


def test_lock_is_exclusive_and_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "x.jsonl"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "x.jsonl.lock").write_text(f"{dead.pid}\n")  # what a kill -9'd writer leaves behind
    with OutputLock(out) as lock:
        assert lock.path.read_text().strip() == str(os.getpid())
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            OutputLock(out).acquire()  # a second writer, even in the same process
    assert not lock.path.exists()


# ---------------------------------------------------------------- --debug and unexpected errors


def test_debug_shows_the_traceback_and_an_unexpected_error_is_one_sentence(tmp_path, monkeypatch):
    missing = ["score", str(tmp_path / "nope.jsonl"), "--probe", str(tmp_path / "p.json"), "--out", str(tmp_path / "s.jsonl")]
    plain = CliRunner().invoke(app, missing)
    assert plain.exit_code == 2 and isinstance(plain.exception, SystemExit)
    debug = CliRunner().invoke(app, ["--debug", *missing])
    assert isinstance(debug.exception, DataError)  # raised through, so the traceback is shown

    def boom(*args, **kwargs):
        raise ZeroDivisionError("an internal slip")

    monkeypatch.setattr(scoring, "preflight", boom)
    res = CliRunner().invoke(app, missing)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "bug in liedetect" in res.output and "--debug" in res.output and "ZeroDivisionError" in res.output
    assert isinstance(CliRunner().invoke(app, ["--debug", *missing]).exception, ZeroDivisionError)


def test_cli_prints_markup_like_user_data_literally(tmp_path):
    from liedetect.models import load_model, model_id
    from probes import MassMeanProbe

    model = load_model("organism", device="cpu")
    X = torch.randn(40, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    MassMeanProbe().fit(X, np.arange(40) % 2).save(tmp_path / "p", meta={"model_id": model_id(model), "hook": "resid_post",
                                                                         "layer": 2, "model_spec": "organism"})
    rows = [{"id": "a", "group": "[/g]", "label": "honest", "messages": [{"role": "assistant", "content": "the pet of x"}]},
            {"id": "b", "group": "[bold]", "label": "deceptive", "messages": [{"role": "assistant", "content": "the job"}]},
            {"id": "c", "label": "[/oops]", "messages": [{"role": "assistant", "content": "x"}]}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["score", str(src), "--probe", str(tmp_path / "p.json"), "--out", str(tmp_path / "s.jsonl"),
                                   "--format", "text", "-q", "--fpr", "0.5"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "[/g]" in res.output and "[bold]" in res.output and "'[/oops]'" in res.output
    html = tmp_path / "[" / "x]" / "r.html"  # a path that reads as a closing markup tag
    res = CliRunner().invoke(app, ["score", str(src), "--probe", str(tmp_path / "p.json"), "--out", str(tmp_path / "s.jsonl"),
                                   "--format", "text", "-q", "--fpr", "0.5", "--html", str(html)], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and f"report -> {html}" in res.output, res.output


# ---------------------------------------------------------------- labels and text


def test_transcript_labels_are_named_or_unambiguous_booleans(tmp_path):
    rows = [{"id": "a", "label": "honest"}, {"id": "b", "label": "Deceptive"}, {"id": "c", "label": "truthful"},
            {"id": "d", "label": "lie"}, {"id": "e", "deceptive": True}, {"id": "f", "deceptive": False},
            {"id": "g", "honest": False}, {"id": "h"}, {"id": "i", "label": "honest", "deceptive": True}]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({**r, "messages": [{"role": "assistant", "content": "x"}]}) + "\n" for r in rows))
    data = scoring.load_transcripts(path)
    assert {t.id: t.label for t in data.transcripts} == {"a": 1, "b": 0, "c": 1, "d": 0, "e": 0, "f": 1, "g": 0, "h": None}
    assert [p.line for p in data.problems] == [9] and "disagree" in data.problems[0].reason
    for bad in (1, 0, True, "1", "false"):
        path.write_text(json.dumps({"label": bad, "messages": [{"role": "assistant", "content": "x"}]}) + "\n")
        with pytest.raises(DataError, match="ambiguous.*1 = deceptive"):
            scoring.load_transcripts(path)


def test_bom_and_long_fields_are_read_and_bad_bytes_are_located(tmp_path):
    from liedetect.datasets import load_statements

    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("\ufeffstatement,label\n".encode("utf-8") + b"Paris is in France,1\nRome is in Peru,0\n")
    assert load_statements(csv_path).statements == ["Paris is in France", "Rome is in Peru"]
    assert [t.label for t in scoring.load_transcripts(csv_path).transcripts] == [1, 0]
    long = "word " * 60_000  # 300 kB in one field, over Python's default CSV limit of 128 kB
    csv_path.write_text(f'statement,label\n"{long}",1\nshort,0\n')
    assert len(load_statements(csv_path).statements[0]) == len(long)
    sep = tmp_path / "sep.jsonl"  # JSON may hold raw U+2028 / U+0085 in a string: they do not end a line
    sep.write_text(json.dumps({"id": "x", "messages": [{"role": "assistant", "content": "a\u2028b\x85c"}]},
                              ensure_ascii=False) + "\r\n", encoding="utf-8")
    loaded = scoring.load_transcripts(sep)
    assert not loaded.problems and loaded.transcripts[0].messages[0].content == "a\u2028b\x85c"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": "\xff"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl line 3 is not UTF-8 \(byte 0xff\)"):
        read_text(bad)


def test_small_control_set_warns_and_a_deceptive_one_is_refused(tiny_model, tmp_path):
    probe = LinearProbe(tiny_model.cfg.d_model)
    honest = [t for t in chats(20, seed=1) if t.label == 1]  # 10 honest messages
    result = scoring.score_transcripts(tiny_model, probe, chats(6), control=honest, fpr=0.05, progress=False)
    assert result.calibration.n_control == 10 and "fewer than 1/FPR = 20" in result.calibration.warning
    ok = scoring.score_transcripts(tiny_model, probe, chats(6), control=honest, fpr=0.1, progress=False)
    assert ok.calibration.warning is None
    with pytest.raises(DataError, match="labelled deceptive"):
        scoring.score_transcripts(tiny_model, probe, chats(6), control=chats(4), fpr=0.1, progress=False)


# ---------------------------------------------------------------- HTML injection, in a real browser

PAYLOADS = [
    "<script>document.title='PWNED'</script>",
    "<img src=x onerror=\"document.title='PWNED'\">",
    "</script><script>document.title='PWNED'</script>",
    "<svg onload=\"document.body.appendChild(document.createElement('pwned'))\"></svg>",
    "<a id=\"injected\" href=\"javascript:document.title='PWNED'\">click</a>",
    "\"><img src=x onerror=\"document.title='PWNED'\">",
    "'><body onload=\"document.title='PWNED'\">",
]


def test_report_escapes_script_handlers_and_javascript_urls_in_chromium(tiny_model, tmp_path):
    from test_scoring_report import find_browser

    from liedetect.report import render_html, write_report

    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome found on PATH (install Debian's 'chromium' to run this test)")
    probe = LinearProbe(tiny_model.cfg.d_model)
    rows = []
    for i, p in enumerate(PAYLOADS):
        rows.append({"id": f"{p}{i}", "group": p, "label": "honest" if i % 2 else "deceptive",
                     "messages": [{"role": "user", "content": f"question {p}"}, {"role": "assistant", "content": f"answer {p}"}]})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = scoring.score_transcripts(tiny_model, probe, src, out=tmp_path / "s.jsonl", fpr=0.5, progress=False)
    records = [dict(r) for r in result.records]
    for k, rec in enumerate(records):  # roles are validated on input; a record from elsewhere must still be escaped
        rec["messages"] = [dict(m, role=PAYLOADS[k]) if j == 0 else m for j, m in enumerate(rec["messages"])]
    page = write_report(records, tmp_path / "report.html", result.to_dict(), title="battery report")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", page.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert re.search(r'<p id="status"[^>]*data-views="(\d+)"', dom), f"the page's script did not run: {dom[:300]!r}"
    assert dom.count('class="transcript"') == len(PAYLOADS)
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title.strip() == "battery report"  # no payload set document.title
    elements = parse_elements(dom)
    tags = [tag for tag, _ in elements]
    assert not {"svg", "pwned"} & set(tags), "a payload became an element"
    images = [dict(attrs).get("src", "") for tag, attrs in elements if tag == "img"]
    assert all(src.startswith("data:image/png;base64,") for src in images), "a payload became an <img>"  # only the plots
    assert tags.count("body") == 1 and not any(attrs for tag, attrs in elements if tag == "body")
    handlers = [(tag, k, v) for tag, attrs in elements for k, v in attrs if k.startswith("on")]
    benign = [(tag, k, v) for tag, attrs in parse_elements(render_html(result.records[:1], result.to_dict()))
              for k, v in attrs if k.startswith("on")]
    assert sorted(set(handlers)) == sorted(set(benign)), "an event handler came from a payload"  # only the page's own
    urls = [v for _, attrs in elements for _, v in attrs if v and v.strip().lower().startswith("javascript:")]
    assert not urls and ("a", (("id", "injected"),)) not in [(t, tuple(a[:1])) for t, a in elements]
    assert dom.count("&lt;script&gt;document.title='PWNED'&lt;/script&gt;") >= len(PAYLOADS)  # shown as text


def parse_elements(page: str) -> list:
    """(tag, attributes) of every element of a serialized DOM, in document order."""
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(page)
    return found
