"""The child-process harness for compiled code (tests/native_isolation.py): a test that faults fails alone, with
one sentence naming the library and the signal, and every other test still runs and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CONFTEST = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
pytest_plugins = ["native_isolation"]
"""

TESTS = '''
import os, signal
import pytest

pytestmark = pytest.mark.native("libfake")

@pytest.fixture(scope="module")
def shared():
    return {"calls": 0}

def test_a_before(shared):
    shared["calls"] += 1
    assert shared["calls"] == 1

def test_b_faults():
    os.kill(os.getpid(), signal.SIGSEGV)

def test_c_after_the_fault():
    assert 2 + 2 == 4

def test_d_skips():
    pytest.skip("libfake is not installed")

def test_e_fails():
    assert 1 == 2, "an ordinary failure"
'''

IN_PROCESS = '''
def test_in_process():
    assert sum(range(4)) == 6
'''


def test_a_fault_fails_one_test_and_the_rest_report(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_native_fake.py").write_text(TESTS)
    (tmp_path / "test_plain.py").write_text(IN_PROCESS)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # tests failed; the run itself finished
    summary = out.strip().splitlines()[-1]
    assert "2 failed" in summary and "3 passed" in summary and "1 skipped" in summary, out
    assert "PASSED test_native_fake.py::test_a_before" in out
    assert "PASSED test_native_fake.py::test_c_after_the_fault" in out
    assert "PASSED test_plain.py::test_in_process" in out
    assert "test_native_fake.py::test_b_faults crashed the test process in libfake with SIGSEGV" in out
    assert "an ordinary failure" in out
    assert "libfake is not installed" in out
