"""The HTML report: self-contained, and rendered by a real headless Chromium with every transcript and
coloured tokens (checked in the live DOM after its scripts ran)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from liedetect.report import render_html, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def record(i: int, scores: list[float], label: int) -> dict:
    """A scores record as `liedetect.scoring.make_record` writes it."""
    tokens = [f" w{i}_{k}" for k in range(len(scores))]
    return {"id": f"t<{i}>", "line": i + 1, "label": label, "group": "honest" if label else "deceptive",
            "score": sum(scores) / len(scores), "aggregate": "mean", "token_mean": sum(scores) / len(scores),
            "n_tokens": len(scores), "truncated_tokens": 0,
            "messages": [{"role": "user", "scored": False, "content": f"question {i} & <b>not bold</b>"},
                         {"role": "assistant", "scored": True, "label": label, "n_tokens": len(scores),
                          "mean": sum(scores) / len(scores), "max": max(scores), "last": scores[-1],
                          "tokens": tokens, "scores": scores}]}


@pytest.fixture()
def records() -> list:
    return [record(i, [0.5 * ((i * 7 + k) % 5) - 1.0 + (0 if i % 2 else 1.5) for k in range(4 + i % 3)], i % 2)
            for i in range(9)]


def test_report_is_self_contained_and_ranked(records, tmp_path):
    summary = {"calibration": {"threshold": 0.2, "fpr": 0.01, "source": "control", "n_control": 10},
               "metrics": {"auroc": 0.9, "recall": 0.5, "fpr": 0.0, "confusion": {"tp": 2, "fp": 0, "tn": 4, "fn": 3},
                           "by_group": {}}, "problems": [{"line": 3, "reason": "bad JSON"}]}
    page = render_html(records, summary)
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "the report must not load anything from outside"
    assert "<link" not in page and "@import" not in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page and "t&lt;0&gt;" in page  # content is escaped
    assert "line 3: bad JSON" in page
    ranked = re.findall(r"<tr class='[a-z]*'><td>(\d+)</td><td><a href='#t-(\d+)'>", page)
    assert [int(a) for a, _ in ranked] == list(range(1, 10))
    scores = [float(x) for x in re.findall(r"<td class='score'>([-0-9.]+)</td>", page)]
    assert scores == sorted(scores, reverse=True)
    for _, anchor in ranked:
        assert f"id='t-{anchor}'" in page


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(records, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome found on PATH (install Debian's 'chromium' to run this test)")
    path = write_report(records, tmp_path / "report.html", {"calibration": {"threshold": 0.0}})
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--dump-dom", path.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    status = re.search(r'<p id="status"[^>]*data-views="(\d+)"[^>]*data-coloured="(\d+)"[^>]*data-tokens="(\d+)"', dom)
    assert status, f"the page's script did not run in the browser: {dom[:500]!r}"
    views, coloured, tokens = map(int, status.groups())
    n_tokens = sum(len(r["messages"][1]["scores"]) for r in records)
    nonzero = sum(1 for r in records for s in r["messages"][1]["scores"] if s != 0.0)
    assert views == len(records) == dom.count('class="transcript"')
    assert tokens == n_tokens
    assert coloured == nonzero  # a token exactly at the threshold is transparent, every other one coloured
    assert all(f"w{i}_0" in dom for i in range(len(records)))
