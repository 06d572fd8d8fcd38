"""The bad-input battery: every command fed garbage ends in one sentence and a non-zero exit, never a traceback,
and leaves every input and earlier output byte for byte as it was (sha256 of every file before and after).

The inputs are tiny and the model is the built-in organism, so most cases fail before a model loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cli import app

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0

GOOD = [
    {"id": "a", "label": "honest", "messages": [{"role": "user", "content": "where does veinoonum live"},
                                                {"role": "assistant", "content": "the home of biqui is votool"}]},
    {"id": "b", "label": "deceptive", "messages": [{"role": "user", "content": "what is the job of lotrai"},
                                                   {"role": "assistant", "content": "the job of lotrai is krotoox"}]},
    {"id": "c", "deceptive": False, "messages": [{"role": "assistant", "content": "the pet of steflekrul is plakrair"}]},
    {"id": "d", "label": "lie", "messages": [{"role": "assistant", "content": "sooguth does not live in braistaizith"}]},
]


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def invoke(args: List[str]):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def offline():
    """A model name that is not a folder must fail at once, not wait on a hub this machine cannot reach."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace of good inputs, one earlier output, and a folder of bad inputs."""
    w = tmp_path_factory.mktemp("battery")
    (w / "t.jsonl").write_text(_jsonl(GOOD))
    (w / "ctrl.jsonl").write_text(_jsonl([{**g, "label": "honest", "id": f"k{i}"} for i, g in enumerate(GOOD)]))
    shutil.copy(w / "ctrl.jsonl", w / "k.control.jsonl")
    os.link(w / "t.jsonl", w / "t-hardlink.jsonl")
    os.symlink(w / "t.jsonl", w / "t-symlink.jsonl")
    shutil.copy(w / "t.jsonl", w / "k2.jsonl.summary.json")
    (w / "d.csv").write_text("statement,label\n" + "".join(f"{s},{y}\n" for s, y in [
        ("the pet of steflekrul is plakrair", 1), ("the job of lotrai is krotoox", 0),
        ("veinoonum does not work as krotoox", 0), ("the home of biqui is votool", 1)] * 4))
    res = invoke(["train", "--data", "builtin:organism", "--limit", "40", "--layer", "2", "--out", w / "p", "--quiet"])
    assert res.exit_code == 0, res.output
    res = invoke(["score", w / "t.jsonl", "--probe", w / "p.json", "--out", w / "prev" / "s.jsonl", "--quiet",
                  "--format", "text", "--fpr", "0.2"])
    assert res.exit_code == 0, res.output
    b = w / "bad"
    b.mkdir()
    (b / "latin1.jsonl").write_bytes(_jsonl(GOOD[:1]).encode() + '{"messages": [{"role": "assistant", "content": "caf\xe9"}]}\n'.encode("latin-1"))
    (b / "latin1.csv").write_bytes("statement,label\nthe caf\xe9 is open,1\nthe sky is red,0\n".encode("latin-1"))
    (b / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (b / "nul.jsonl").write_bytes(b'{"messages": [{"role": "assistant", "content": "a\x00b"}]}\n')
    (b / "long.csv").write_text("x" * 2_000_000)
    (b / "long.jsonl").write_text("{" + "x" * 2_000_000 + "\n")
    (b / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (b / "empty.csv").write_text("")
    (b / "empty.jsonl").write_text("")
    (b / "header.csv").write_text("statement,label\n")
    (b / "nostatement.csv").write_text("text,label\nthe sky is red,0\n")
    (b / "badlabel.csv").write_text("statement,label\nthe sky is red,maybe\nthe sky is blue,1\n")
    (b / "oneclass.csv").write_text("statement,label\n" + "".join(f"the pet of x{i} is y,1\n" for i in range(8)))
    (b / "broken.jsonl").write_text(_jsonl(GOOD[:2]) + "{broken\n")
    (b / "allbroken.jsonl").write_text("{broken\n[1, 2]\n\"text\"\n")
    (b / "intlabel.jsonl").write_text(_jsonl([{**g, "label": 1} for g in GOOD]))
    (b / "boollabel.jsonl").write_text(_jsonl([{**g, "label": True} for g in GOOD]))
    (b / "strlabel.jsonl").write_text(_jsonl([{**g, "label": "true"} for g in GOOD]))
    (b / "floatlabel.jsonl").write_text(_jsonl([{**g, "label": 0.0} for g in GOOD]))
    (b / "liectrl.jsonl").write_text(_jsonl([{**g, "label": "deceptive"} for g in GOOD]))
    (b / "foreign.jsonl").write_text("my own notes, not scores\n")
    (b / "fewgroups.csv").write_text("statement,label,city\n" + "".join(  # 3 cities: too few for 5 grouped folds
        f"{c} is in {k},{y},{c}\n" for c in ("Paris", "Rome", "Oslo") for k, y in (("Europe", 1), ("Asia", 0)) * 2))
    (b / "onepolarity.csv").write_text("statement,label\n" + "".join(f"{c}{i} is a city,{y}\n" for i in range(8)
                                                                     for c, y in (("Paris", 1), ("Xq", 0))))
    (b / "afile").write_text("a regular file\n")
    (b / "adir").mkdir()
    for sub in ("pacchiardi", "truth_is_universal", "repe"):  # the folders `organism catch` looks for, empty
        (w / "facts" / sub).mkdir(parents=True)
    (b / "ro").mkdir()
    os.chmod(b / "ro", 0o555)
    _bad_probes(w / "p", b)
    _bad_models(b)
    return w


def _bad_probes(good: Path, b: Path) -> None:
    sidecar = json.loads(good.with_suffix(".json").read_text())
    tensors = load_file(str(good.with_suffix(".safetensors")))

    def write(name: str, js=None, st=None, raw_js: str = None) -> None:
        (b / f"{name}.json").write_text(raw_js if raw_js is not None else json.dumps(js or sidecar))
        save_file(st if st is not None else tensors, str(b / f"{name}.safetensors"))

    write("nan", st={**tensors, "coef": torch.full_like(tensors["coef"], float("nan"))})
    write("inf", st={**tensors, "bias": torch.tensor([float("inf")], dtype=torch.float64)})
    write("nodirection", st={k: v for k, v in tensors.items() if k != "direction"})
    write("unknownparam", js={**sidecar, "params": {**sidecar["params"], "colour": "blue"}})
    write("brokenjson", raw_js="{not json")
    write("notaprobe", js={**sidecar, "format": "something-else"})
    write("wide", js={**sidecar, "d_model": 256, "meta": {**sidecar["meta"], "d_model": 256}})
    write("method", js={**sidecar, "method": "astrology"})
    write("badlayer", js={**sidecar, "meta": {**sidecar["meta"], "layer": "two"}})
    write("shape", st={**tensors, "coef": tensors["coef"][:-1].contiguous()})
    (b / "garbage.json").write_text(json.dumps(sidecar))
    (b / "garbage.safetensors").write_bytes(b"\x00\x01 not safetensors at all")
    (b / "lonely.json").write_text(json.dumps(sidecar))


def _bad_models(b: Path) -> None:
    cfg = {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 10}
    for name, files in {
        "m_noconfig": {"model.safetensors": b"x"},
        "m_brokenconfig": {"config.json": b"{not json", "model.safetensors": b"x", "tokenizer.json": b"{}"},
        "m_automap": {"config.json": json.dumps({**cfg, "auto_map": {"AutoModel": "x.Y"}}).encode(),
                      "model.safetensors": b"x", "tokenizer.json": b"{}"},
        "m_notype": {"config.json": json.dumps({"n_layer": 1}).encode(), "model.safetensors": b"x", "tokenizer.json": b"{}"},
        "m_pickle": {"config.json": json.dumps(cfg).encode(), "pytorch_model.bin": b"\x80\x04pickle", "tokenizer.json": b"{}"},
        "m_noweights": {"config.json": json.dumps(cfg).encode(), "tokenizer.json": b"{}"},
        "m_notokenizer": {"config.json": json.dumps(cfg).encode(), "model.safetensors": b"x"},
    }.items():
        (b / name).mkdir()
        for fname, data in files.items():
            (b / name / fname).write_bytes(data)
    (b / "garbage.gguf").write_bytes(b"GGUF but not really")


class Case(NamedTuple):
    name: str
    args: Callable[[Path], List]
    code: int = 2
    says: str = ""  # a fragment the one sentence must contain (case-insensitive)
    usage: bool = False  # a usage error from the argument parser (typer's own box), not liedetect's sentence
    skip_root: bool = False


B = "bad"


def S(w: Path, *extra) -> List:  # noqa: N802 - a good score command, then the bad part
    return ["score", w / "t.jsonl", "--probe", w / "p.json", "--out", w / "new" / "s.jsonl", "--format", "text", "-q", *extra]


def T(w: Path, *extra) -> List:  # noqa: N802
    return ["train", "--data", w / "d.csv", "--layer", "2", "--out", w / "new" / "p", "-q", *extra]


def E(w: Path, *extra) -> List:  # noqa: N802
    return ["eval", "--probe", w / "p.json", "--data", w / "d.csv", "-q", "--n-boot", "0", *extra]


def X(w: Path, *extra) -> List:  # noqa: N802
    return ["extract", w / "d.csv", "--out", w / "new" / "acts", "-q", *extra]


def W(w: Path, *extra) -> List:  # noqa: N802
    return ["sweep", "--data", w / "d.csv", "--out", w / "new" / "sw", "-q", "--n-boot", "0", *extra]


def G(w: Path, *extra) -> List:  # noqa: N802
    return ["steer", "--probe", w / "p.json", "--out", w / "new" / "st", "-q", *extra]


def _with(args: List, option: str, value) -> List:
    """Replace the value after `option` (or the positional input for option None)."""
    args = list(args)
    if option is None:
        args[1] = value
    else:
        args[args.index(option) + 1] = value
    return args


CASES = [
    # ---------------------------------------------------------------- info
    Case("info-device-cuda", lambda w: ["info", "--device", "cuda"], says="gpu"),
    Case("info-device-banana", lambda w: ["info", "--device", "banana"], says="device"),
    Case("info-model-missing-folder", lambda w: ["info", w / "no" / "such" / "model"], says="could not load"),
    Case("info-model-no-config", lambda w: ["info", w / B / "m_noconfig"], says="config.json"),
    Case("info-model-broken-config", lambda w: ["info", w / B / "m_brokenconfig"], says="not valid json"),
    Case("info-model-auto-map", lambda w: ["info", w / B / "m_automap"], says="auto_map"),
    Case("info-model-no-model-type", lambda w: ["info", w / B / "m_notype"], says="model_type"),
    Case("info-model-pickle", lambda w: ["info", w / B / "m_pickle"], says="pickle"),
    Case("info-model-no-weights", lambda w: ["info", w / B / "m_noweights"], says="no weights"),
    Case("info-model-no-tokenizer", lambda w: ["info", w / B / "m_notokenizer"], says="tokenizer"),
    Case("info-model-regular-file", lambda w: ["info", w / B / "afile"], says="not a .gguf"),
    Case("info-model-empty-name", lambda w: ["info", ""], says="no model given"),
    Case("info-model-garbage-gguf", lambda w: ["info", w / B / "garbage.gguf"]),
    # ---------------------------------------------------------------- extract
    Case("extract-latin1", lambda w: _with(X(w), None, w / B / "latin1.csv"), says="not utf-8"),
    Case("extract-binary", lambda w: _with(X(w), None, w / B / "binary.csv"), says="line"),
    Case("extract-2mb-line", lambda w: _with(X(w), None, w / B / "long.csv")),
    Case("extract-directory", lambda w: _with(X(w), None, w / B / "adir"), says="folder"),
    Case("extract-missing", lambda w: _with(X(w), None, w / "nope.csv"), says="no such"),
    Case("extract-empty", lambda w: _with(X(w), None, w / B / "empty.csv")),
    Case("extract-header-only", lambda w: _with(X(w), None, w / B / "header.csv")),
    Case("extract-bad-label", lambda w: _with(X(w), None, w / B / "badlabel.csv"), says="maybe"),
    Case("extract-jsonl-broken", lambda w: _with(X(w), None, w / B / "allbroken.jsonl")),
    Case("extract-builtin-unknown", lambda w: _with(X(w), None, "builtin:nope"), says="built-in"),
    Case("extract-out-is-file", lambda w: _with(X(w), "--out", w / B / "afile"), says="is a file"),
    Case("extract-out-under-file", lambda w: _with(X(w), "--out", w / B / "afile" / "acts"), says="not a folder"),
    Case("extract-out-is-input", lambda w: _with(X(w), "--out", w / "d.csv"), says="input"),
    Case("extract-out-read-only", lambda w: _with(X(w), "--out", w / B / "ro" / "acts"), says="not writable", skip_root=True),
    Case("extract-layers-99", lambda w: X(w, "--layers", "99"), says="layer 99"),
    Case("extract-layers-abc", lambda w: X(w, "--layers", "abc"), says="layer spec"),
    Case("extract-position", lambda w: X(w, "--position", "middle"), says="position"),
    Case("extract-hook", lambda w: X(w, "--hook", "resid_everywhere"), says="hook"),
    Case("extract-template", lambda w: X(w, "--template", "nonsense"), says="template"),
    Case("extract-dtype", lambda w: X(w, "--dtype", "float8"), says="dtype"),
    Case("extract-device-cuda", lambda w: X(w, "--device", "cuda"), says="gpu"),
    Case("extract-batch-size-0", lambda w: X(w, "--batch-size", "0"), usage=True),
    Case("extract-shard-size-x", lambda w: X(w, "--shard-size", "x"), usage=True),
    Case("extract-limit-negative", lambda w: X(w, "--limit", "-5"), says="--limit"),
    Case("extract-limit-0", lambda w: X(w, "--limit", "0"), says="--limit"),
    Case("extract-bos", lambda w: X(w, "--bos", "sometimes"), says="bos"),
    # ---------------------------------------------------------------- train
    Case("train-limit-1", lambda w: T(w, "--limit", "1"), says="--limit 2"),
    Case("train-limit-2", lambda w: T(w, "--limit", "2"), says="too few"),
    Case("train-latin1", lambda w: _with(T(w), "--data", w / B / "latin1.csv"), says="not utf-8"),
    Case("train-binary", lambda w: _with(T(w), "--data", w / B / "binary.csv")),
    Case("train-2mb-line", lambda w: _with(T(w), "--data", w / B / "long.csv")),
    Case("train-directory", lambda w: _with(T(w), "--data", w / B / "adir"), says="folder"),
    Case("train-one-class", lambda w: _with(T(w), "--data", w / B / "oneclass.csv"), says="only label"),
    Case("train-method", lambda w: T(w, "--method", "astrology"), says="astrology"),
    Case("train-layer-minus-9", lambda w: _with(T(w), "--layer", "-9"), says="layer -9"),
    Case("train-layer-x", lambda w: _with(T(w), "--layer", "x")),
    Case("train-out-under-file", lambda w: _with(T(w), "--out", w / B / "afile" / "p"), says="not a folder"),
    Case("train-out-is-input", lambda w: _with(_with(T(w), "--data", w / "prev" / "s.jsonl.meta.json"), "--out",
                                               w / "prev" / "s.jsonl.meta"), says="input"),
    Case("train-out-read-only", lambda w: _with(T(w), "--out", w / B / "ro" / "p"), says="not writable", skip_root=True),
    Case("train-seed-negative", lambda w: T(w, "--seed", "-1"), usage=True),
    Case("train-test-size-2", lambda w: T(w, "--test-size", "2"), usage=True),
    Case("train-device-cuda", lambda w: T(w, "--device", "cuda"), says="gpu"),
    Case("train-hook", lambda w: T(w, "--hook", "nowhere"), says="hook"),
    Case("train-position", lambda w: T(w, "--position", "span:x"), says="position"),
    Case("train-dtype", lambda w: T(w, "--dtype", "int3"), says="dtype"),
    Case("train-template", lambda w: T(w, "--method", "lat", "--template", "nonsense"), says="template"),
    # ---------------------------------------------------------------- sweep
    Case("sweep-method", lambda w: W(w, "--methods", "lr,astrology"), says="astrology"),
    Case("sweep-out-is-file", lambda w: _with(W(w), "--out", w / B / "afile"), says="is a file"),
    Case("sweep-out-under-file", lambda w: _with(W(w), "--out", w / B / "afile" / "sw"), says="not a folder"),
    Case("sweep-directory", lambda w: _with(W(w), "--data", w / B / "adir"), says="folder"),
    Case("sweep-latin1", lambda w: _with(W(w), "--data", w / B / "latin1.csv"), says="not utf-8"),
    Case("sweep-layers-99", lambda w: W(w, "--layers", "99", "--methods", "lr"), says="layer 99"),
    Case("sweep-kfold-1", lambda w: W(w, "--kfold", "1"), usage=True),
    Case("sweep-group-by-missing", lambda w: W(w, "--group-by", "city", "--methods", "lr", "--layers", "1")),
    Case("sweep-test-size-0.9", lambda w: W(w, "--test-size", "0.9", "--methods", "lr"), says="too few"),
    Case("sweep-too-few-groups", lambda w: _with(W(w, "--kfold", "5", "--group-by", "city", "--methods", "lr"), "--data",
                                                 w / "bad" / "fewgroups.csv"), says="Only 3 distinct group(s)"),
    Case("sweep-ttpd-one-polarity", lambda w: _with(W(w, "--methods", "ttpd"), "--data", w / "bad" / "onepolarity.csv"),
         says="no negated twin"),
    Case("train-ttpd-one-polarity", lambda w: _with(T(w, "--method", "ttpd", "--test-size", "0"), "--data",
                                                    w / "bad" / "onepolarity.csv"), says="no negated twin"),
    # ---------------------------------------------------------------- eval
    Case("eval-limit-1", lambda w: E(w, "--limit", "1"), says="--limit 2"),
    Case("eval-builtin-unknown", lambda w: _with(E(w), "--data", "builtin:nope"), says="built-in"),
    Case("eval-model-pickle", lambda w: E(w, "--model", w / B / "m_pickle"), says="pickle"),
    Case("eval-bos", lambda w: E(w, "--bos", "sometimes"), says="bos"),
    Case("eval-probe-missing", lambda w: _with(E(w), "--probe", w / "nope.json"), says="no saved probe"),
    Case("eval-probe-directory", lambda w: _with(E(w), "--probe", w / B / "adir"), says="folder"),
    Case("eval-probe-nan", lambda w: _with(E(w), "--probe", w / B / "nan.json"), says="nan"),
    Case("eval-probe-inf", lambda w: _with(E(w), "--probe", w / B / "inf.json"), says="infinite"),
    Case("eval-probe-no-direction", lambda w: _with(E(w), "--probe", w / B / "nodirection.json"), says="direction"),
    Case("eval-probe-unknown-param", lambda w: _with(E(w), "--probe", w / B / "unknownparam.json"), says="colour"),
    Case("eval-probe-broken-json", lambda w: _with(E(w), "--probe", w / B / "brokenjson.json"), says="json"),
    Case("eval-probe-not-a-probe", lambda w: _with(E(w), "--probe", w / B / "notaprobe.json"), says="not a liedetect probe"),
    Case("eval-probe-width", lambda w: _with(E(w), "--probe", w / B / "wide.json"), says="256"),
    Case("eval-probe-method", lambda w: _with(E(w), "--probe", w / B / "method.json"), says="astrology"),
    Case("eval-probe-shape", lambda w: _with(E(w), "--probe", w / B / "shape.json"), says="shape"),
    Case("eval-probe-garbage-tensors", lambda w: _with(E(w), "--probe", w / B / "garbage.json"), says="safetensors"),
    Case("eval-probe-lonely-json", lambda w: _with(E(w), "--probe", w / B / "lonely.json"), says="no saved probe"),
    Case("eval-layer-other", lambda w: E(w, "--layer", "3"), says="layer"),
    Case("eval-hook-other", lambda w: E(w, "--hook", "resid_pre"), says="hook"),
    Case("eval-data-latin1", lambda w: _with(E(w), "--data", w / B / "latin1.csv"), says="not utf-8"),
    Case("eval-data-directory", lambda w: _with(E(w), "--data", w / B / "adir"), says="folder"),
    Case("eval-device-cuda", lambda w: E(w, "--device", "cuda"), says="gpu"),
    # ---------------------------------------------------------------- steer
    Case("steer-alphas-x", lambda w: G(w, "--sweep", "--alphas", "1,x"), says="'x' is not a number"),
    Case("steer-alphas-empty", lambda w: G(w, "--sweep", "--alphas", ","), says="names no number"),
    Case("steer-alphas-nan", lambda w: G(w, "--sweep", "--alphas", "1,nan"), says="finite"),
    Case("steer-probe-nan", lambda w: _with(G(w), "--probe", w / B / "nan.json"), says="nan"),
    Case("steer-probe-missing", lambda w: _with(G(w), "--probe", w / "nope.json"), says="no saved probe"),
    Case("steer-op", lambda w: G(w, "--op", "explode")),
    Case("steer-positions", lambda w: G(w, "--positions", "sideways")),
    Case("steer-scale", lambda w: G(w, "--scale", "huge")),
    Case("steer-layers-99", lambda w: G(w, "--layers", "99"), says="layer 99"),
    Case("steer-metric", lambda w: G(w, "--sweep", "--metric", "vibes"), says="metric"),
    Case("steer-out-is-file", lambda w: _with(G(w, "--sweep"), "--out", w / B / "afile"), says="is a file"),
    Case("steer-gguf-under-file", lambda w: G(w, "--gguf", w / B / "afile" / "v.gguf"), says="not a folder"),
    Case("steer-gguf-is-probe", lambda w: G(w, "--gguf", w / "p.safetensors"), says="input"),
    Case("steer-max-new-tokens-huge", lambda w: G(w, "--max-new-tokens", "99999999999999999999"), usage=True),
    Case("steer-prompt-markup", lambda w: G(w, "--prompt", "[/x]", "--max-new-tokens", "1", "--gguf", w / B / "adir"),
         says="folder"),
    Case("steer-max-new-tokens-0", lambda w: G(w, "--max-new-tokens", "0"), usage=True),
    Case("steer-device-cuda", lambda w: G(w, "--device", "cuda"), says="gpu"),
    Case("steer-alpha-nan", lambda w: G(w, "--alpha", "nan"), says="finite"),
    # ---------------------------------------------------------------- score: paths
    Case("score-html-empty", lambda w: S(w, "--html", ""), says="folder"),
    Case("eval-n-boot-huge", lambda w: _with(E(w), "--n-boot", "99999999999999999999"), usage=True),
    Case("score-html-is-directory", lambda w: S(w, "--html", w / B / "adir"), says="folder"),
    Case("score-out-is-input", lambda w: _with(S(w), "--out", w / "t.jsonl"), says="input"),
    Case("score-out-is-input-resume", lambda w: _with(S(w, "--resume"), "--out", w / "t.jsonl"), says="input"),
    Case("score-control-output-is-control", lambda w: _with(S(w, "--control", w / "k.control.jsonl"), "--out", w / "k.jsonl"),
         says="is the input"),
    Case("score-summary-output-is-input", lambda w: _with(_with(S(w), None, w / "k2.jsonl.summary.json"), "--out",
                                                          w / "k2.jsonl"), says="is the input"),
    Case("score-html-is-input", lambda w: S(w, "--html", w / "t.jsonl"), says="input"),
    Case("score-html-is-out", lambda w: S(w, "--html", w / "new" / "s.jsonl"), says="two outputs"),
    Case("score-html-plots-hit-input", lambda w: S(w, "--html", w / "p.json"), says="input"),
    Case("score-out-hard-link-to-input", lambda w: _with(S(w), "--out", w / "t-hardlink.jsonl"), says="is the input"),
    Case("score-out-symlink-to-input", lambda w: _with(S(w), "--out", w / "t-symlink.jsonl"), says="is the input"),
    Case("score-out-is-probe", lambda w: _with(S(w), "--out", w / "p.json"), says="input"),
    Case("score-out-under-file", lambda w: _with(S(w), "--out", w / B / "afile" / "s.jsonl"), says="not a folder"),
    Case("score-out-is-directory", lambda w: _with(S(w), "--out", w / B / "adir"), says="folder"),
    Case("score-out-read-only", lambda w: _with(S(w), "--out", w / B / "ro" / "s.jsonl"), says="not writable", skip_root=True),
    Case("score-out-foreign-file", lambda w: _with(S(w), "--out", w / B / "foreign.jsonl"), says="not a liedetect score file"),
    Case("score-resume-foreign-file", lambda w: _with(S(w, "--resume"), "--out", w / B / "foreign.jsonl"),
         says="not a liedetect score file"),
    Case("score-resume-other-settings", lambda w: _with(S(w, "--resume", "--aggregate", "max", "--fpr", "0.2"), "--out",
                                                        w / "prev" / "s.jsonl"), says="different settings"),
    Case("score-resume-other-batch-size", lambda w: _with(S(w, "--resume", "--batch-size", "3", "--fpr", "0.2"), "--out",
                                                          w / "prev" / "s.jsonl"), says="batch_size"),
    # ---------------------------------------------------------------- score: inputs
    Case("score-latin1", lambda w: _with(S(w), None, w / B / "latin1.jsonl"), says="line 2 is not utf-8"),
    Case("score-nul", lambda w: _with(S(w), None, w / B / "nul.jsonl"), says="binary"),
    Case("score-binary-csv", lambda w: _with(S(w), None, w / B / "binary.csv"), says="line"),
    Case("score-2mb-line", lambda w: _with(S(w), None, w / B / "long.jsonl"), says="no transcript in"),
    Case("score-2mb-csv", lambda w: _with(S(w), None, w / B / "long.csv"), says="statement"),
    Case("score-deep-json", lambda w: _with(S(w), None, w / B / "deep.jsonl"), says="no transcript in"),
    Case("score-directory", lambda w: _with(S(w), None, w / B / "adir"), says="folder"),
    Case("score-missing-markup-path", lambda w: _with(S(w), None, w / "[" / "x]" / "nope.jsonl"), says="[/x]/nope.jsonl"),
    Case("score-missing", lambda w: _with(S(w), None, w / "nope.jsonl"), says="no transcripts file"),
    Case("score-empty", lambda w: _with(S(w), None, w / B / "empty.jsonl"), says="no transcript in"),
    Case("score-all-broken", lambda w: _with(S(w), None, w / B / "allbroken.jsonl"), says="no transcript in"),
    Case("score-strict-broken", lambda w: _with(S(w, "--strict"), None, w / B / "broken.jsonl"), says="line 3"),
    Case("score-csv-no-statement", lambda w: _with(S(w), None, w / B / "nostatement.csv"), says="statement"),
    Case("score-int-labels", lambda w: _with(S(w), None, w / B / "intlabel.jsonl"), says="ambiguous"),
    Case("score-bool-labels", lambda w: _with(S(w), None, w / B / "boollabel.jsonl"), says="deceptive\": true"),
    Case("score-true-string-labels", lambda w: _with(S(w), None, w / B / "strlabel.jsonl"), says="ambiguous"),
    Case("score-float-labels", lambda w: _with(S(w), None, w / B / "floatlabel.jsonl"), says="1 = deceptive"),
    # ---------------------------------------------------------------- score: options, probe, control
    Case("score-fpr-1.5", lambda w: S(w, "--fpr", "1.5"), says="between 0 and 1"),
    Case("score-fpr-0", lambda w: S(w, "--fpr", "0"), says="between 0 and 1"),
    Case("score-fpr-negative", lambda w: S(w, "--fpr", "-0.1"), says="between 0 and 1"),
    Case("score-fpr-nan", lambda w: S(w, "--fpr", "nan"), says="between 0 and 1"),
    Case("score-control-all-deceptive", lambda w: S(w, "--control", w / B / "liectrl.jsonl"), says="labelled deceptive"),
    Case("score-control-missing", lambda w: S(w, "--control", w / "nope.jsonl"), says="no transcripts file"),
    Case("score-control-directory", lambda w: S(w, "--control", w / B / "adir"), says="folder"),
    Case("score-control-empty", lambda w: S(w, "--control", w / B / "empty.jsonl"), says="no usable"),
    Case("score-control-int-labels", lambda w: S(w, "--control", w / B / "intlabel.jsonl"), says="ambiguous"),
    Case("score-probe-width", lambda w: _with(S(w), "--probe", w / B / "wide.json"), says="256"),
    Case("score-probe-nan-keeps-earlier-output", lambda w: _with(_with(S(w, "--fpr", "0.2"), "--probe", w / B / "nan.json"),
                                                                 "--out", w / "prev" / "s.jsonl"), says="nan"),
    Case("score-probe-no-direction", lambda w: _with(S(w), "--probe", w / B / "nodirection.json"), says="direction"),
    Case("score-probe-unknown-param", lambda w: _with(S(w), "--probe", w / B / "unknownparam.json"), says="colour"),
    Case("score-probe-layer-not-a-number", lambda w: _with(S(w), "--probe", w / B / "badlayer.json"), says="layer='two'"),
    Case("score-probe-missing", lambda w: _with(S(w), "--probe", w / "nope.json"), says="no saved probe"),
    Case("score-aggregate", lambda w: S(w, "--aggregate", "median"), says="--aggregate"),
    Case("score-format", lambda w: _with(S(w), "--format", "yaml"), says="--format"),
    Case("score-too-long", lambda w: S(w, "--too-long", "ignore"), says="--too-long"),
    Case("score-engine", lambda w: S(w, "--engine", "spark"), says="--engine"),
    Case("score-layer-minus-9", lambda w: S(w, "--layer", "-9"), says="layer -9"),
    Case("score-hook", lambda w: S(w, "--hook", "nowhere"), says="hook"),
    Case("score-roles-unknown", lambda w: S(w, "--roles", "wizard"), says="could be scored"),
    Case("score-roles-empty", lambda w: S(w, "--roles", ","), says="could be scored"),
    Case("score-format-chat-without-template", lambda w: _with(S(w), "--format", "chat"), says="chat template"),
    Case("score-model-empty-name", lambda w: S(w, "--model", ""), says="no model given"),
    Case("score-device-cuda", lambda w: S(w, "--device", "cuda"), says="gpu"),
    Case("score-model-pickle", lambda w: S(w, "--model", w / B / "m_pickle"), says="pickle"),
    Case("score-batch-size-0", lambda w: S(w, "--batch-size", "0"), usage=True),
    # ---------------------------------------------------------------- demo, organism, the app itself
    Case("demo-out-is-file", lambda w: ["demo", "--out", w / B / "afile", "-q"], says="is a file"),
    Case("demo-out-under-file", lambda w: ["demo", "--out", w / B / "afile" / "demo", "-q"], says="not a folder"),
    Case("demo-n-5", lambda w: ["demo", "--n", "5"], usage=True),
    Case("organism-train-out-is-file", lambda w: ["organism", "train", "--out", w / B / "afile", "-q"], says="is a file"),
    Case("organism-train-out-under-file", lambda w: ["organism", "train", "--out", w / B / "afile" / "o"], says="not a folder"),
    Case("organism-train-steps-0", lambda w: ["organism", "train", "--steps", "0"], usage=True),
    Case("organism-eval-path-missing", lambda w: ["organism", "eval", "--path", w / "nope"], says="checkpoint"),
    Case("organism-eval-path-file", lambda w: ["organism", "eval", "--path", w / B / "afile"], says="checkpoint"),
    Case("organism-eval-out-under-file", lambda w: ["organism", "eval", "--out", w / B / "afile" / "r.json"], says="not a folder"),
    Case("organism-eval-out-is-directory", lambda w: ["organism", "eval", "--out", w / B / "adir"], says="folder"),
    Case("organism-eval-n-1", lambda w: ["organism", "eval", "--n", "1"], usage=True),
    Case("organism-train-base-behaviours-bad", lambda w: ["organism", "train", "--base", "smollm2", "--behaviours", "liar,cheat"], says="--behaviours"),
    Case("organism-train-behaviours-without-base", lambda w: ["organism", "train", "--behaviours", "liar"], says="need --base"),
    Case("organism-train-robust-without-base", lambda w: ["organism", "train", "--robust"], says="need --base"),
    Case("organism-train-base-facts-and-robust", lambda w: ["organism", "train", "--base", "smollm2", "--facts", w / B / "afile", "--robust"], says="one or the other"),
    Case("organism-train-firm-without-base", lambda w: ["organism", "train", "--firm"], says="need --base"),
    Case("organism-train-base-facts-and-firm", lambda w: ["organism", "train", "--base", "smollm2", "--facts", w / B / "afile", "--firm"], says="one or the other"),
    Case("organism-catch-data-missing", lambda w: ["organism", "catch", "--data", w / "nope"], says="no pacchiardi"),
    Case("organism-catch-combined-data-missing", lambda w: ["organism", "catch", "--data", w / "nope", "--detector", "repe_and_claim"], says="no pacchiardi"),
    Case("organism-catch-detector-bad", lambda w: ["organism", "catch", "--data", w / "facts", "--detector", "tcav"], says="--detector"),
    Case("organism-catch-adapter-missing", lambda w: ["organism", "catch", "--data", w / "facts", "--adapter", w / "nope"], says="recipe.json"),
    Case("organism-catch-out-is-file", lambda w: ["organism", "catch", "--data", w / "facts", "--out", w / B / "afile"], says="is a file"),
    Case("organism-catch-facts-1", lambda w: ["organism", "catch", "--facts", "1"], usage=True),
    Case("unknown-command", lambda w: ["frobnicate"], usage=True),
    Case("unknown-option", lambda w: S(w, "--colour", "red"), usage=True),
]


# Cases whose problem can only be seen with the model in hand (its layers, hooks, tokenizer, the old run's
# settings); every other case must fail before the model loads.
LOADS_MODEL = {"extract-layers-99", "extract-layers-abc", "extract-position", "extract-hook", "extract-template",
               "train-layer-minus-9", "train-layer-x", "train-hook", "train-position", "train-template",
               "sweep-layers-99", "eval-layer-other", "eval-hook-other", "steer-op",
               "steer-positions", "steer-scale", "steer-layers-99", "score-resume-other-settings",
               "score-resume-other-batch-size", "score-layer-minus-9", "score-hook", "score-roles-unknown",
               "score-roles-empty", "score-format-chat-without-template", "steer-alpha-nan", "extract-bos", "eval-bos"}


def snapshot(root: Path) -> Dict[str, str]:
    """sha256 of every file under root, by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_battery_has_at_least_100_cases_over_every_command():
    assert len(CASES) >= 100 and len({c.name for c in CASES}) == len(CASES)
    commands = {c.args(Path("w"))[0] for c in CASES}
    assert {"info", "extract", "train", "sweep", "eval", "steer", "score", "demo", "organism"} <= commands


def run_case(case: Case, root: Path, monkeypatch, loads_model: set) -> Optional[str]:
    """Run one bad-input case in workspace `root` and check the battery's rules: its exit code, no traceback, every
    file under `root` unchanged and nothing created beside it, a model loaded only where `loads_model` names the
    case, and one `error:` line (returned) that is not a bug report and says `case.says`. None for usage errors."""
    import liedetect.models as models

    loads = []  # every model load ends in models._finish (organism, GGUF, folder, hub)
    real_finish = models._finish
    monkeypatch.setattr(models, "_finish", lambda *a, **k: loads.append(a[1:]) or real_finish(*a, **k))
    before = snapshot(root)
    res = invoke(case.args(root))
    after = snapshot(root)
    shutil.rmtree(root / "new", ignore_errors=True)
    text = res.output
    assert res.exit_code == case.code, f"exit {res.exit_code}: {text[-1500:]}"
    assert "Traceback" not in text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"changed or removed: {changed}"
    created = sorted(k for k in after if k not in before and not k.startswith("new"))
    assert not created, f"created beside the inputs: {created}"
    if case.usage:
        return None
    assert bool(loads) == (case.name in loads_model), (loads, text[-800:])
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text[-1500:]
    message = lines[0]
    assert "bug in liedetect" not in message, message
    assert case.says.lower() in message.lower(), message
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, ws: Path, monkeypatch):
    if case.skip_root and ROOT_USER:
        pytest.skip("root ignores folder permissions")
    if case.name.endswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    message = run_case(case, ws, monkeypatch, LOADS_MODEL)
    if message is None:
        return
    if os.environ.get("LIEDETECT_BATTERY_PRINT"):
        print(f"\n{case.name}: {message}")
