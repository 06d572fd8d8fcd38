"""Tests that call compiled code which can fault (llama.cpp) run in a child pytest process.

Mark them `@pytest.mark.native("library")`. The first such test of a module starts one child pytest for all of
that module's native tests (module fixtures are shared there as usual), reads each test's outcome back, and
reports it here. A fault in the child (SIGSEGV, SIGILL, SIGBUS, SIGABRT...) fails the test that was running with one
sentence naming the library and the signal; the module's remaining tests run on in a fresh child, and every other
test of the suite runs and reports as before. Without this, one fault in llama.cpp ended the whole run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import pytest
from _pytest.reports import TestReport

CHILD = "LIEDETECT_NATIVE_CHILD"  # set in the child: native tests run in-process there
REPORT = "LIEDETECT_NATIVE_REPORT"  # the child's JSON-lines file of test reports
CHILD_TIMEOUT_S = 1800

_RESULTS: Dict[str, List[dict]] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line("markers", "native(library): calls compiled code that can crash the process; "
                                       "runs in a child process (tests/native_isolation.py)")


def pytest_runtest_logreport(report: TestReport) -> None:
    """In the child: write each phase's outcome for the parent."""
    path = os.environ.get(REPORT)
    if not (os.environ.get(CHILD) and path):
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        longrepr = list(report.longrepr)
    else:
        longrepr = None if report.passed else str(report.longrepr)
    row = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "longrepr": longrepr,
           "duration": report.duration, "sections": [list(s) for s in report.sections]}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _run_children(rootdir: Path, nodeids: List[str], library: str) -> Dict[str, List[dict]]:
    """Run `nodeids` in child pytest processes until each has an outcome; a test that crashed its child fails."""
    results: Dict[str, List[dict]] = {}
    remaining = list(nodeids)
    while remaining:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "reports.jsonl"
            env = {**os.environ, CHILD: "1", REPORT: str(report)}
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *remaining]
            try:
                proc = subprocess.run(cmd, cwd=rootdir, env=env, capture_output=True, text=True,
                                      timeout=CHILD_TIMEOUT_S)
                rc, out = proc.returncode, proc.stdout + proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc, out = None, f"{exc.stdout or ''}{exc.stderr or ''}"
            rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
        phases: Dict[str, List[dict]] = {}
        for row in rows:
            phases.setdefault(row["nodeid"], []).append(row)
        finished = [n for n in remaining if any(r["when"] == "teardown" for r in phases.get(n, []))]
        results.update({n: phases[n] for n in finished})
        unfinished = [n for n in remaining if n not in results]
        if not unfinished:
            break
        culprit = unfinished[0]
        if rc is None:
            why = f"did not finish within {CHILD_TIMEOUT_S} s"
        elif rc < 0:
            why = f"crashed the test process in {library} with {_signal_name(rc)} (a fault in compiled code)"
        else:
            why = f"ended its child process (exit {rc}) before reporting an outcome"
        tail = "\n".join(out.strip().splitlines()[-25:])
        message = (f"{culprit} {why}; the other tests ran on in a fresh process. "
                   f"Last lines of the child's output:\n{tail}")
        results[culprit] = [{"nodeid": culprit, "when": "call", "outcome": "failed", "longrepr": message,
                             "duration": 0.0, "sections": []}]
        remaining = unfinished[1:]
    return results


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """In the parent: run native tests in a child and report what the child saw."""
    marker = item.get_closest_marker("native")
    if marker is None or os.environ.get(CHILD):
        return None
    library = str(marker.args[0]) if marker.args else "compiled code"
    if item.nodeid not in _RESULTS:
        module = item.nodeid.split("::")[0]
        batch = [i.nodeid for i in item.session.items
                 if i.nodeid.split("::")[0] == module and i.get_closest_marker("native") is not None
                 and i.nodeid not in _RESULTS]
        _RESULTS.update(_run_children(Path(item.config.rootpath), batch, library))
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for row in _RESULTS[item.nodeid]:
        longrepr = tuple(row["longrepr"]) if isinstance(row["longrepr"], list) else row["longrepr"]
        report = TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, row["outcome"], longrepr,
                            row["when"], sections=[tuple(s) for s in row["sections"]], duration=row["duration"])
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
