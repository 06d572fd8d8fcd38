"""Artifacts written whole or not at all (issue 32): kill -9 while `detector train` rewrites an existing detector
leaves the old detector or the new one, never a mix; a full disk while writing is one sentence, exit 2, and no
partial file; a folder whose files no longer match its manifest is refused."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from liedetect.artifacts import MANIFEST, TEST_KILL_ENV, verify_manifest, write_artifact_dir, write_file_atomic
from liedetect.errors import CheckpointError, OutputPathError

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["detector", "train", "builtin:organism", "--limit", "40", "-q"]


def files(folder: Path) -> dict:
    """sha256 of every file in a folder (no sub-folders in an artifact)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def cli(*args, env=None, wait=True):
    cmd = [sys.executable, str(ROOT / "cli.py"), *map(str, args)]
    full = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> dict:
    """An old detector (layer 2, calibrated) and what a retrain at layer 3 writes, as file hashes."""
    w = tmp_path_factory.mktemp("kill")
    (w / "ctrl.jsonl").write_text("".join(json.dumps({"id": f"k{i}", "label": "honest", "messages": [
        {"role": "assistant", "content": f"the home of biqui is votool {'and ' * i}"}]}) + "\n" for i in range(4)))
    run = CliRunner()
    assert run.invoke(app, [*TRAIN, "--layer", "2", "--out", str(w / "old")]).exit_code == 0
    assert run.invoke(app, ["detector", "calibrate", str(w / "old"), "--control", str(w / "ctrl.jsonl"), "--fpr", "0.3",
                            "-q"]).exit_code == 0
    assert run.invoke(app, [*TRAIN, "--layer", "3", "--out", str(w / "new")]).exit_code == 0
    return {"w": w, "old": files(w / "old"), "new": files(w / "new")}


def _fresh_copy(two: dict, name: str) -> Path:
    import shutil

    target = two["w"] / name
    shutil.copytree(two["w"] / "old", target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("point,expect", [("written", "old"), ("swapped", "new")])
def test_kill_9_during_detector_train_leaves_the_old_or_the_new_detector_whole(two, point, expect):
    target = _fresh_copy(two, f"d-{point}")
    res = cli(*TRAIN, "--layer", "3", "--out", target, env={TEST_KILL_ENV: point})
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    assert files(target) == two[expect]  # whole, and exactly that version: never a mix
    from liedetect.detector import Detector

    assert Detector.load(target).layer == (2 if expect == "old" else 3)


@pytest.mark.slow
def test_kill_9_from_outside_once_the_temporary_folder_appears(two):
    target = _fresh_copy(two, "d-outside")
    proc = cli(*TRAIN, "--layer", "3", "--out", target, wait=False)
    tmp = target.parent / f".{target.name}.tmp-{proc.pid}"
    deadline = time.time() + 90
    while not tmp.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert files(target) in (two["old"], two["new"])
    assert verify_manifest(target, "liedetect-detector", 1) is not None
    # the killed writer's temporary folder is removed by the next writer
    assert CliRunner().invoke(app, [*TRAIN, "--layer", "3", "--out", str(target)]).exit_code == 0
    assert not list(target.parent.glob(f".{target.name}.tmp-*"))
    assert files(target) == two["new"]


FULL_DISK = r"""
import json, resource, signal, sys
from typer.testing import CliRunner
from cli import app
import liedetect.detector, liedetect.report, liedetect.iti, matplotlib.pyplot  # imported before the limit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (120, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
out = []
for args in json.loads(sys.argv[1]):
    res = CliRunner().invoke(app, args)
    out.append({"code": res.exit_code, "text": res.output, "exc": repr(res.exception)})
print("RESULTS" + json.dumps(out))
"""


@pytest.mark.slow
def test_a_full_disk_is_one_sentence_exit_2_and_no_partial_artifact(two, tmp_path):
    w = two["w"]
    target = _fresh_copy(two, "d-full")
    before = files(target)
    (tmp_path / "s.jsonl").write_text((w / "ctrl.jsonl").read_text())
    assert CliRunner().invoke(app, ["score", str(tmp_path / "s.jsonl"), "--detector", str(w / "old"), "--out",
                                    str(tmp_path / "sc.jsonl"), "-q"]).exit_code == 0
    tqa, questions, followups = _method_inputs(tmp_path)
    fit = ["iti", "fit", "--data", str(tqa), "--out", str(tmp_path / "iti"), "--k", "2"]
    assert CliRunner().invoke(app, fit).exit_code == 0
    commands = [[*TRAIN, "--layer", "3", "--out", str(target)],
                [*TRAIN, "--layer", "3", "--out", str(tmp_path / "fresh")],
                ["detector", "calibrate", str(target), "--control", str(w / "ctrl.jsonl"), "--fpr", "0.3", "-q"],
                ["report", str(tmp_path / "sc.jsonl"), "--out", str(tmp_path / "r.html")],
                ["organism", "eval", "--n", "10", "--out", str(tmp_path / "eval.json")],
                ["iti", "fit", "--data", str(tqa), "--out", str(tmp_path / "iti-new"), "--k", "2"],
                ["iti", "eval", "-i", str(tmp_path / "iti"), "--data", str(tqa), "--alphas", "0,1", "--json",
                 str(tmp_path / "ie.json")],
                ["tcav", "score", "--probe", str(w / "old" / "probe.json"), "--data", "builtin:organism", "--limit",
                 "8", "--n-random", "4", "--json", str(tmp_path / "tc.json")],
                ["blackbox", "fit", "--questions", str(questions), "--followups", str(followups), "--out",
                 str(tmp_path / "bb.json"), "--n-questions", "6", "--yes", "votool", "--no", "krotoox"]]
    res = subprocess.run([sys.executable, "-c", FULL_DISK, json.dumps(commands)], capture_output=True, text=True,
                         timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert "RESULTS" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    results = json.loads(res.stdout.split("RESULTS", 1)[1])
    for args, r in zip(commands, results):
        errors = [line for line in r["text"].splitlines() if line.startswith("error:")]
        assert r["code"] == 2 and len(errors) == 1, (args[:2], r)
        assert "Traceback" not in r["text"] and "bug in liedetect" not in r["text"], r["text"]
        assert "could not write" in errors[0].lower() or "file too large" in errors[0].lower(), errors[0]
    assert files(target) == before  # the earlier detector is untouched
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "r.html").exists()
    for name in ("eval.json", "iti-new", "ie.json", "tc.json", "bb.json"):
        assert not (tmp_path / name).exists(), name
    leftovers = [p.name for p in list(w.glob(".d-full.tmp-*")) + list(tmp_path.iterdir()) if ".tmp-" in p.name]
    assert not leftovers, leftovers


def _method_inputs(folder: Path) -> tuple:
    """A tiny TruthfulQA CSV, pacchiardi-style questions and follow-ups, in the organism's words."""
    names = ["veinoonum", "biqui", "lotrai", "sooguth", "plakrair", "steflekrul"]
    tqa = folder / "tqa.csv"
    tqa.write_text("Question,Best Answer,Correct Answers,Incorrect Answers\n"
                   + "".join(f"where does {n} live,votool,votool,krotoox\n" for n in names))
    questions = folder / "questions.json"
    questions.write_text(json.dumps({str(i): {"question": f"where does {n} live", "answer": "votool",
                                              "false_answer": "krotoox"} for i, n in enumerate(names)}))
    followups = folder / "followups.csv"
    followups.write_text("probe_type,probe\nx,does biqui live in votool\nx,is votool a place\n")
    return tqa, questions, followups


def test_manifest_refuses_a_mix_and_a_folder_without_one_still_loads(tmp_path):
    def write(tmp: Path) -> None:
        (tmp / "a.json").write_text('{"v": 1}')
        (tmp / "b.bin").write_bytes(b"\x00" * 10)

    folder = write_artifact_dir(tmp_path / "art", write, "test-artifact", 1)
    assert set(verify_manifest(folder, "test-artifact", 1)) == {"a.json", "b.bin"}
    with pytest.raises(CheckpointError, match="version 1 artifact, not 'test-artifact' version 2"):
        verify_manifest(folder, "test-artifact", 2)
    (folder / "b.bin").write_bytes(b"\x01" * 10)  # same size, other bytes: one file of another version
    with pytest.raises(CheckpointError, match="b.bin is not the file its manifest lists"):
        verify_manifest(folder, "test-artifact", 1)
    (folder / "a.json").unlink()
    with pytest.raises(CheckpointError, match="lacks a.json"):
        verify_manifest(folder, "test-artifact", 1)
    (folder / MANIFEST).unlink()
    assert verify_manifest(folder, "test-artifact", 1) is None  # written before manifests: accepted


def test_a_failing_write_leaves_the_earlier_version_and_no_temporary_files(tmp_path):
    folder = write_artifact_dir(tmp_path / "art", lambda t: (t / "x.txt").write_text("old"), "t", 1)
    before = files(folder)

    def broken(tmp: Path) -> None:
        (tmp / "x.txt").write_text("new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputPathError, match="No space left on device.*free some disk space"):
        write_artifact_dir(folder, broken, "t", 1)
    assert files(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    write_file_atomic(tmp_path / "f.json", "{}")
    with pytest.raises(OutputPathError, match="Could not write"):
        def half(p: Path) -> None:
            p.write_text("half")
            raise OSError(5, "I/O error")

        write_file_atomic(tmp_path / "f.json", half)
    assert (tmp_path / "f.json").read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["art", "f.json"]
