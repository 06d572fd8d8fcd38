"""The report: token colours centred on the token threshold, label and snippet columns, collapsible
transcripts, units, the control-size warning, a rebuild from a scores file, and a real screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from liedetect.report import rebuild_report, render_html


def record(i: int, scores: list, label: int) -> dict:
    tokens = [f" w{i}_{k}" for k in range(len(scores))]
    mean = float(np.mean(scores))
    return {"id": f"t{i}", "line": i + 1, "label": label, "group": "honest" if label else "liar", "score": mean,
            "aggregate": "mean", "token_mean": mean, "n_tokens": len(scores), "truncated_tokens": 0,
            "messages": [{"role": "user", "scored": False, "content": f"question {i}"},
                         {"role": "assistant", "scored": True, "label": label, "n_tokens": len(scores), "mean": mean,
                          "max": max(scores), "last": scores[-1], "tokens": tokens, "scores": scores}]}


@pytest.fixture()
def records() -> list:
    rng = np.random.default_rng(0)
    return [record(i, [round(float(x), 3) for x in rng.normal(1.5 if i % 2 == 0 else -1.0, 1.0, 5)], i % 2)
            for i in range(12)]


def _alpha(page: str, token: str) -> float:
    m = re.search(r"background:rgba\([0-9,]+,([0-9.]+)\)' title='[-0-9.]+'>" + re.escape(token) + "<", page)
    return float(m.group(1))


def test_token_colours_are_centred_on_the_token_threshold(records):
    records[0]["messages"][1]["scores"][0] = 0.5   # exactly the token threshold: transparent
    records[0]["messages"][1]["scores"][1] = 0.9   # above the token threshold, below the message threshold: red
    summary = {"calibration": {"threshold": 2.0, "fpr": 0.01, "n_control": 200, "token_threshold": 0.5, "source": "control"}}
    page = render_html(records, summary)
    assert _alpha(page, " w0_0") == 0.0
    assert re.search(r"rgba\(220,40,40,[0-9.]+\)' title='0.900'> w0_1<", page)
    assert "token threshold 0.50" in page and "id='units'" in page and "higher = more suspicious" in page


def test_ranking_has_label_and_snippet_and_transcripts_collapse(records):
    page = render_html(records, {"calibration": {"threshold": 0.0, "fpr": 0.01, "n_control": 500}})
    assert "<th>label</th>" in page and "<th>most suspicious message</th>" in page
    first = re.search(r"<tr class='flagged'><td>1</td><td><a href='#t-0'>(t\d+)</a></td><td>(\w+)</td>", page)
    assert first and first.group(2) == "deceptive"
    assert page.count("<details class='transcript'") == len(records) and "<details class='transcript' open" not in page
    assert "control-warning" not in page


def test_control_size_warning_and_flagged_as_counts(records):
    summary = {"calibration": {"threshold": 0.0, "fpr": 0.01, "n_control": 20},
               "metrics": {"by_group": {"liar": {"n": 6, "mean": 1.2, "flagged": 1.0}}}}
    page = render_html(records, summary)
    assert "fewer than 1/FPR = 100" in page and "20 control messages" in page
    assert "100.0% (6 of 6)" in page and "1.0000" not in page.split("<h2>Transcripts by suspicion")[0].split("by_group")[-1]


def test_rebuild_from_scores_file_sets_the_token_threshold_from_control_tokens(records, tmp_path):
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in records))
    control = [record(100 + i, [float(x) for x in np.linspace(-3, 0, 10) + 0.01 * i], 1) for i in range(20)]
    (tmp_path / "scores.control.jsonl").write_text("".join(json.dumps(r) + "\n" for r in control))
    (tmp_path / "scores.jsonl.summary.json").write_text(json.dumps({"calibration": {"threshold": 0.0, "fpr": 0.05, "n_control": 20}}))
    path, plots = rebuild_report(scores, tmp_path / "report.html")
    page = path.read_text()
    tok = float(re.search(r"token threshold ([-0-9.]+)</span>", page).group(1))
    ctrl = np.array([s for r in control for s in r["messages"][1]["scores"]])
    assert (ctrl > tok + 0.005).mean() <= 0.05 and (ctrl >= tok - 0.005).mean() > 0.05  # the 95th percentile, to 2 decimals
    assert [p.name for p in plots] == ["report_hist.png", "report_roc.png"]


def test_screenshot_in_headless_chromium(records, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on PATH")
    from PIL import Image

    html = tmp_path / "report.html"
    html.write_text(render_html(records, {"calibration": {"threshold": 0.0, "fpr": 0.01, "n_control": 20, "token_threshold": 0.0}}))
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'p'}",
                    f"--screenshot={shot}", "--window-size=1280,2000", html.resolve().as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert px.shape[:2] == (2000, 1280)
    assert px.std() > 20  # not blank: text, tables and plots
    reds = ((px[..., 0] > 200) & (px[..., 1] < 190) & (px[..., 2] < 190)).sum()
    assert reds > 100  # the warning box / flagged scores / red plot lines are drawn
