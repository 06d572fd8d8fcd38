"""The bad-input battery over the newer commands (issue 32): detector train / calibrate / show / run, report,
iti fit / eval, tcav score, blackbox fit / score, organism eval, and `score --detector`.

Each case ends in exit code 2 and one `error:` sentence, no traceback, every file's sha256 unchanged and nothing
new beside the inputs; all but the few named in LOADS_MODEL fail before a model loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_battery import GOOD, Case, _jsonl, invoke, offline, run_case, snapshot, ws  # noqa: F401 - fixtures

B = "bad"


def _edit_detector(src: Path, dst: Path, edit=None, raw: str = None, manifest: bool = False) -> None:
    shutil.copytree(src, dst)
    if not manifest:
        (dst / "manifest.json").unlink()
    if edit is not None or raw is not None:
        d = json.loads((dst / "detector.json").read_text())
        if edit is not None:
            edit(d)
        (dst / "detector.json").write_text(raw if raw is not None else json.dumps(d))


def _pop(*keys):
    return lambda d: [d.pop(k) for k in keys]


def _set(path: List[str], value):
    def edit(d):
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.fixture(scope="module")
def wx(ws: Path) -> Path:
    """The battery's workspace plus a calibrated detector, scores, an ITI intervention, a black-box detector and
    a damaged copy of each."""
    w, b = ws, ws / B
    res = invoke(["detector", "train", "builtin:organism", "--limit", "40", "--layer", "2", "--out", w / "det", "-q"])
    assert res.exit_code == 0, res.output
    res = invoke(["detector", "calibrate", w / "det", "--control", w / "ctrl.jsonl", "--fpr", "0.25", "-q"])
    assert res.exit_code == 0, res.output
    assert (w / "det" / "manifest.json").exists()
    det = w / "det"
    _edit_detector(det, b / "d_v99", _set(["format_version"], 99))
    _edit_detector(det, b / "d_nan", _set(["calibration", "threshold"], float("nan")))
    _edit_detector(det, b / "d_strthr", _set(["calibration", "threshold"], "0.5"))
    _edit_detector(det, b / "d_callist", _set(["calibration"], [1, 2]))
    _edit_detector(det, b / "d_nolayer", _pop("layer", "hook", "model_id"))
    _edit_detector(det, b / "d_median", _set(["aggregate"], "median"))
    _edit_detector(det, b / "d_abs", _set(["probe"], str(w / "p")))
    _edit_detector(det, b / "d_dotdot", _set(["probe"], "../../p"))
    _edit_detector(det, b / "d_list", raw="[1, 2]")
    _edit_detector(det, b / "d_roles", _set(["roles"], "assistant"))
    _edit_detector(det, b / "d_layerneg", _set(["layer"], -3))
    _edit_detector(det, b / "d_fpr", _set(["calibration", "fpr"], 1.5))
    _edit_detector(det, b / "d_badmanifest", manifest=True)
    manifest = json.loads((b / "d_badmanifest" / "manifest.json").read_text())
    manifest["files"]["../p.json"] = manifest["files"]["probe.json"]
    (b / "d_badmanifest" / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(det, b / "d_notes")
    (b / "d_notes" / "notes.txt").write_text("my notes\n")
    _edit_detector(det, b / "d_mix", manifest=True)  # a layer-3 probe beside a layer-2 detector.json (and manifest)
    _edit_detector(det, b / "d_mixold")  # the same mix in a folder written before manifests
    res = invoke(["train", "--data", "builtin:organism", "--limit", "40", "--layer", "3", "--out", b / "p3", "-q"])
    assert res.exit_code == 0, res.output
    for folder in (b / "d_mix", b / "d_mixold"):
        for suffix in (".json", ".safetensors"):
            shutil.copy(b / f"p3{suffix}", folder / f"probe{suffix}")
    shutil.copytree(det, b / "d_withctrl")
    shutil.copy(w / "ctrl.jsonl", b / "d_withctrl" / "ctrl.jsonl")
    (b / "probedir").mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(w / f"p{suffix}", b / "probedir" / f"p{suffix}")
    (b / "st_surrogate.jsonl").write_text("".join(json.dumps({"statement": t, "label": y}) + "\n" for t, y in
                                                  [("the home of biqui is votool", 1), ("a\ud800b", 0)] * 2))
    (b / "exdir").mkdir()
    (b / "exdir" / "train.jsonl").write_text("statement,label\nmy own data,1\n")
    (b / "surrogate.jsonl").write_text(_jsonl(GOOD[:2]) + '{"messages": [{"role": "assistant", '
                                       '"content": "a\\ud800b"}]}\n')
    _scores(w, b)
    _configs(w, b)
    _iti(w, b)
    _blackbox(w, b)
    return w


def _scores(w: Path, b: Path) -> None:
    lines = (w / "prev" / "s.jsonl").read_text().splitlines(keepends=True)
    rec = json.loads(lines[0])
    (b / "sc").mkdir()
    (b / "sc" / "middle.jsonl").write_text(lines[0] + "{broken\n" + "".join(lines[1:]))
    (b / "sc" / "nan.jsonl").write_text(json.dumps({**rec, "score": float("nan")}) + "\n")
    (b / "sc" / "noscore.jsonl").write_text(json.dumps({k: v for k, v in rec.items() if k != "score"}) + "\n")
    shutil.copy(w / "prev" / "s.jsonl", b / "sc" / "brokensum.jsonl")
    (b / "sc" / "brokensum.jsonl.summary.json").write_text("{not json")
    shutil.copy(w / "prev" / "s.jsonl", b / "sc" / "aurocx.jsonl")
    summary = json.loads((w / "prev" / "s.jsonl.summary.json").read_text())
    summary["metrics"] = {**(summary.get("metrics") or {}), "auroc": "x"}
    (b / "sc" / "aurocx.jsonl.summary.json").write_text(json.dumps(summary))


def _configs(w: Path, b: Path) -> None:
    c = b / "cfg"
    c.mkdir()
    good = {"model": "organism", "train": str(w / "t.jsonl"), "control": str(w / "ctrl.jsonl"),
            "eval": {"t": str(w / "t.jsonl")}, "layers": "2", "out": str(w / "new" / "run")}
    for name, doc in {"train5": {**good, "train": 5}, "seedabc": {**good, "seed": "abc"},
                      "evalstr": {**good, "eval": str(w / "nope.jsonl")},
                      "lies": {**good, "control": str(b / "liectrl.jsonl")}, "evalempty": {**good, "eval": {}},
                      "layerslist": {**good, "layers": [1, 2]}, "fprnan": {**good, "fpr": float("nan")},
                      "method": {**good, "method": "astrology"}, "fpr": {**good, "fpr": 2},
                      "unknown": {**good, "colour": "red"}, "outforeign": {**good, "out": str(b / "runout")},
                      "surrogate": {**good, "eval": [str(b / "surrogate.jsonl")]}}.items():
        (c / f"{name}.yaml").write_text(json.dumps(doc).replace("NaN", ".nan"))  # JSON is YAML (YAML's NaN: .nan)
    (c / "syntax.yaml").write_text("model: organism\ntrain: [unclosed\n")
    (b / "runout" / "detector").mkdir(parents=True)
    (b / "runout" / "detector" / "notes.txt").write_text("mine\n")


def _iti(w: Path, b: Path) -> None:
    from liedetect.iti import ITIIntervention

    rows = [("where does veinoonum live", "votool", "votool", "krotoox"), ("what is the job of lotrai", "krotoox",
            "krotoox", "votool"), ("what is the pet of biqui", "plakrair", "plakrair", "votool")]
    (w / "tqa.csv").write_text("Question,Best Answer,Correct Answers,Incorrect Answers\n"
                               + "".join(",".join(r) + "\n" for r in rows))
    iti = ITIIntervention([(0, 0), (1, 1)], torch.nn.functional.normalize(torch.randn(2, 8), dim=1), torch.ones(2), 5.0,
                          None, {"seed": 0, "template": "Q: {question}\nA:"})
    iti.save(w / "iti")
    shutil.copytree(w / "iti", b / "iti_trunc")
    shutil.copytree(w / "iti", b / "iti_trunc_old")
    (b / "iti_trunc_old" / "manifest.json").unlink()
    for folder in (b / "iti_trunc", b / "iti_trunc_old"):
        data = (folder / "tensors.safetensors").read_bytes()
        (folder / "tensors.safetensors").write_bytes(data[: len(data) // 2])
    shutil.copytree(w / "iti", b / "iti_heads")
    (b / "iti_heads" / "manifest.json").unlink()
    head = json.loads((b / "iti_heads" / "heads.json").read_text())
    (b / "iti_heads" / "heads.json").write_text(json.dumps({**head, "heads": [[0, "x"]]}))
    shutil.copytree(w / "iti", b / "iti_seed")
    (b / "iti_seed" / "manifest.json").unlink()
    (b / "iti_seed" / "heads.json").write_text(json.dumps({**head, "meta": {"seed": "abc"}}))
    tensors = load_file(str(w / "iti" / "tensors.safetensors"))
    save_file(tensors, str(b / "iti_tensors.safetensors"))


def _blackbox(w: Path, b: Path) -> None:
    from liedetect.blackbox import FollowupDetector
    import numpy as np

    det = FollowupDetector(["is votool a place", "does biqui live in votool"], np.array([0.5, -0.5]), 0.1,
                           np.zeros(2), np.ones(2))
    det.save(w / "bb.json")
    good = json.loads((w / "bb.json").read_text())
    (b / "bb_list.json").write_text("[1, 2]")
    (b / "bb_mismatch.json").write_text(json.dumps({**good, "coef": [1.0, 2.0, 3.0]}))
    (b / "bb_nan.json").write_text(json.dumps({**good, "coef": [float("nan"), 1.0]}))
    names = ["veinoonum", "biqui", "lotrai", "steflekrul", "sooguth", "plakrair", "krotoox", "votool"]
    qs = {str(i): {"question": f"where does {n} live", "answer": "votool", "false_answer": "krotoox"}
          for i, n in enumerate(names)}
    (w / "questions.json").write_text(json.dumps(qs))
    (b / "q_surrogate.json").write_text(json.dumps({**qs, "9": {**qs["0"], "question": "where\ud800"}}))
    (b / "q_types.json").write_text(json.dumps({"0": {"question": 5, "answer": ["x"], "false_answer": None}}))
    long = " and ".join(f"does {n} live in votool" for n in ["biqui", "lotrai", "sooguth", "veinoonum"] * 2)
    (w / "followups.csv").write_text("probe_type,probe\n" + "".join(f"x,{q}\n" for q in [long] * 4))


def DT(w: Path, *extra) -> List:  # noqa: N802 - detector train, then the bad part
    return ["detector", "train", w / "d.csv", "--layer", "2", "--out", w / "new" / "det", "-q", *extra]


def SD(w: Path, *extra) -> List:  # noqa: N802 - score with a detector
    return ["score", w / "t.jsonl", "--detector", w / "det", "--out", w / "new" / "s.jsonl", "-q", *extra]


def IE(w: Path, *extra) -> List:  # noqa: N802
    return ["iti", "eval", "-i", w / "iti", "--data", w / "tqa.csv", *extra]


def IF(w: Path, *extra) -> List:  # noqa: N802
    return ["iti", "fit", "--data", w / "tqa.csv", "--out", w / "new" / "iti", *extra]


def TC(w: Path, *extra) -> List:  # noqa: N802
    return ["tcav", "score", "--probe", w / "p.json", "--data", w / "d.csv", "--n-random", "4", *extra]


def BF(w: Path, *extra) -> List:  # noqa: N802
    return ["blackbox", "fit", "--questions", w / "questions.json", "--followups", w / "followups.csv",
            "--out", w / "new" / "bb.json", *extra]


def BS(w: Path, *extra) -> List:  # noqa: N802
    return ["blackbox", "score", w / "t.jsonl", "--detector", w / "bb.json", *extra]


def run_cfg(name: str):
    return lambda w: ["detector", "run", w / B / "cfg" / f"{name}.yaml", "-q"]


def show(name: str, *extra):
    return lambda w: ["detector", "show", w / B / name, *extra]


CASES = [
    # ---------------------------------------------------------------- detector train
    Case("dt-aggregate-median", lambda w: DT(w, "--aggregate", "median"), says="--aggregate"),
    Case("dt-system-prompt-unknown", lambda w: DT(w, "--system-prompt", "default"), says="--system-prompt"),
    Case("dt-format-yaml", lambda w: DT(w, "--format", "yaml"), says="--format"),
    Case("dt-method", lambda w: DT(w, "--method", "astrology"), says="astrology"),
    Case("dt-out-probe-folder", lambda w: _out(DT(w), w / B / "probedir"), says="not part of a detector"),
    Case("dt-out-is-input", lambda w: _out(DT(w), w / "d.csv"), says="input"),
    Case("dt-out-is-file", lambda w: _out(DT(w), w / B / "afile"), says="is a file"),
    Case("dt-out-under-file", lambda w: _out(DT(w), w / B / "afile" / "det"), says="not a folder"),
    Case("dt-surrogate", lambda w: ["detector", "train", w / B / "surrogate.jsonl", "--out", w / "new" / "d"],
         says="line 3 holds a lone surrogate"),
    Case("dt-data-missing", lambda w: ["detector", "train", w / "nope.jsonl", "--out", w / "new" / "d"],
         says="nope.jsonl"),
    Case("dt-out-detector-with-notes", lambda w: _out(DT(w), w / B / "d_notes"), says="notes.txt"),
    Case("dt-paired-method-with-roles", lambda w: DT(w, "--method", "lat", "--roles", "user"), says="--roles"),
    Case("dt-limit-with-chats", lambda w: _with(DT(w, "--limit", "10"), None, w / "t.jsonl"), says="--limit"),
    Case("de-kind", lambda w: ["detector", "examples", "--kind", "poetry", "--out", w / "new" / "ex"], says="--kind"),
    Case("de-out-is-file", lambda w: ["detector", "examples", "--out", w / B / "afile"], says="is a file"),
    Case("de-out-holds-other-data", lambda w: ["detector", "examples", "--out", w / B / "exdir"],
         says="not a file of example chats"),
    # ---------------------------------------------------------------- detector calibrate
    Case("dc-control-deceptive", lambda w: ["detector", "calibrate", w / "det", "--control", w / B / "liectrl.jsonl"],
         says="labelled deceptive"),
    Case("dc-no-layer-hook-model", lambda w: ["detector", "calibrate", w / B / "d_nolayer", "--control",
                                              w / "ctrl.jsonl"], says="is missing"),
    Case("dc-fpr-nan", lambda w: ["detector", "calibrate", w / "det", "--control", w / "ctrl.jsonl", "--fpr", "nan"],
         says="between 0 and 1"),
    Case("dc-fpr-2", lambda w: ["detector", "calibrate", w / "det", "--control", w / "ctrl.jsonl", "--fpr", "2"],
         says="between 0 and 1"),
    Case("dc-control-inside-detector", lambda w: ["detector", "calibrate", w / B / "d_withctrl", "--control",
                                                  w / B / "d_withctrl" / "ctrl.jsonl"], says="not part of a detector"),
    Case("dc-mixed-versions", lambda w: ["detector", "calibrate", w / B / "d_mix", "--control", w / "ctrl.jsonl"],
         says="sha256"),
    Case("dc-control-surrogate", lambda w: ["detector", "calibrate", w / "det", "--control", w / B / "surrogate.jsonl"],
         says="lone surrogate"),
    Case("dc-control-missing", lambda w: ["detector", "calibrate", w / "det", "--control", w / "nope.jsonl"],
         says="no transcripts file"),
    # ---------------------------------------------------------------- detector show
    Case("ds-format-version-99", show("d_v99"), says="format_version 99"),
    Case("ds-threshold-nan", show("d_nan", "--json"), says="threshold is nan"),
    Case("ds-threshold-string", show("d_strthr"), says="threshold is '0.5'"),
    Case("ds-calibration-list", show("d_callist"), says="calibration"),
    Case("ds-aggregate-median", show("d_median"), says="aggregate 'median'"),
    Case("ds-probe-absolute-path", show("d_abs"), says="outside its folder"),
    Case("ds-probe-dotdot", show("d_dotdot"), says="outside its folder"),
    Case("ds-detector-json-list", show("d_list"), says="format"),
    Case("ds-mixed-versions", show("d_mix"), says="two versions"),
    Case("ds-mixed-versions-no-manifest", show("d_mixold"), says="mixes files of two detectors"),
    Case("ds-not-a-folder", show("afile"), says="not a detector folder"),
    Case("ds-roles-string", show("d_roles"), says="roles"),
    Case("ds-layer-negative", show("d_layerneg"), says="layer is -3"),
    Case("ds-calibration-fpr-1.5", show("d_fpr"), says="fpr is 1.5"),
    Case("ds-manifest-path-outside", show("d_badmanifest"), says="not a file of this folder"),
    # ---------------------------------------------------------------- score --detector
    Case("sd-threshold-nan", lambda w: _with_det(SD(w), w / B / "d_nan"), says="threshold is nan"),
    Case("sd-probe-beside-detector", lambda w: SD(w, "--probe", w / "p.json"), says="--probe"),
    Case("sd-model-other", lambda w: SD(w, "--model", "smollm2"), says="--model smollm2"),
    Case("sd-layer-other", lambda w: SD(w, "--layer", "3"), says="--layer"),
    Case("sd-aggregate-other", lambda w: SD(w, "--aggregate", "max"), says="--aggregate"),
    Case("sd-format-other", lambda w: SD(w, "--format", "plain"), says="--format"),
    Case("sd-mixed-versions", lambda w: _with_det(SD(w), w / B / "d_mix"), says="two versions"),
    Case("sd-out-is-detector-file", lambda w: _out(SD(w), w / "det" / "detector.json"), says="input"),
    Case("score-lone-surrogate", lambda w: ["score", w / B / "surrogate.jsonl", "--probe", w / "p.json", "--out",
                                            w / "new" / "s.jsonl"], says="line 3 holds a lone surrogate"),
    # ---------------------------------------------------------------- detector run
    Case("dr-yaml-syntax", run_cfg("syntax"), says="not valid yaml"),
    Case("dr-train-5", run_cfg("train5"), says="train is 5"),
    Case("dr-seed-abc", run_cfg("seedabc"), says="seed is 'abc'"),
    Case("dr-eval-missing", run_cfg("evalstr"), says="nope.jsonl"),
    Case("dr-control-deceptive", run_cfg("lies"), says="labelled deceptive"),
    Case("dr-method", run_cfg("method"), says="astrology"),
    Case("dr-fpr-2", run_cfg("fpr"), says="fpr"),
    Case("dr-unknown-key", run_cfg("unknown"), says="colour"),
    Case("dr-eval-empty", run_cfg("evalempty"), says="eval"),
    Case("dr-fpr-nan", run_cfg("fprnan"), says="fpr is nan"),
    Case("dr-layers-list", run_cfg("layerslist"), says="layers"),
    Case("dr-out-foreign-folder", run_cfg("outforeign"), says="not part of a detector"),
    Case("dr-eval-surrogate", run_cfg("surrogate"), says="lone surrogate"),
    Case("dr-missing", lambda w: ["detector", "run", w / "nope.yaml"], says="no experiment config"),
    # ---------------------------------------------------------------- report
    Case("rp-out-is-scores", lambda w: ["report", w / "prev" / "s.jsonl", "--out", w / "prev" / "s.jsonl"],
         says="input"),
    Case("rp-out-is-summary", lambda w: ["report", w / "prev" / "s.jsonl", "--out",
                                         w / "prev" / "s.jsonl.summary.json"], says="input"),
    Case("rp-out-is-folder", lambda w: ["report", w / "prev" / "s.jsonl", "--out", w / B / "adir"], says="folder"),
    Case("rp-corrupt-middle-row", lambda w: ["report", w / B / "sc" / "middle.jsonl", "--out", w / "new" / "r.html"],
         says="line 2 is not valid json"),
    Case("rp-nan-score", lambda w: ["report", w / B / "sc" / "nan.jsonl", "--out", w / "new" / "r.html"],
         says="score is nan"),
    Case("rp-row-without-score", lambda w: ["report", w / B / "sc" / "noscore.jsonl", "--out", w / "new" / "r.html"],
         says="no 'score'"),
    Case("rp-transcripts-not-scores", lambda w: ["report", w / "t.jsonl", "--out", w / "new" / "r.html"],
         says="transcripts file"),
    Case("rp-summary-corrupt", lambda w: ["report", w / B / "sc" / "brokensum.jsonl", "--out", w / "new" / "r.html"],
         says="not valid json"),
    Case("rp-summary-auroc-string", lambda w: ["report", w / B / "sc" / "aurocx.jsonl", "--out", w / "new" / "r.html"],
         says="auroc is 'x'"),
    Case("rp-scores-missing", lambda w: ["report", w / "nope.jsonl", "--out", w / "new" / "r.html"],
         says="no scores file"),
    # ---------------------------------------------------------------- iti fit / eval
    Case("if-alpha-nan", lambda w: IF(w, "--alpha", "nan"), says="finite"),
    Case("if-out-is-data", lambda w: _out(IF(w), w / "tqa.csv"), says="input"),
    Case("if-out-probe-folder", lambda w: _out(IF(w), w / B / "probedir"), says="not part of an iti intervention"),
    Case("if-template", lambda w: IF(w, "--template", "no question here"), says="{question}"),
    Case("if-heatmap-is-data", lambda w: IF(w, "--heatmap", w / "tqa.csv"), says="input"),
    Case("ie-json-is-data", lambda w: IE(w, "--json", w / "tqa.csv"), says="input"),
    Case("ie-json-is-intervention", lambda w: IE(w, "--json", w / "iti" / "heads.json"), says="input"),
    Case("ie-json-over-a-probe", lambda w: IE(w, "--json", w / "p.json"), says="exists and is not"),
    Case("ie-truncated-tensors", lambda w: _with(IE(w), "-i", w / B / "iti_trunc"), says="sha256"),
    Case("ie-truncated-tensors-no-manifest", lambda w: _with(IE(w), "-i", w / B / "iti_trunc_old"),
         says="could not be read as safetensors"),
    Case("ie-heads-not-pairs", lambda w: _with(IE(w), "-i", w / B / "iti_heads"), says="heads"),
    Case("ie-meta-seed-abc", lambda w: _with(IE(w), "-i", w / B / "iti_seed"), says="seed"),
    Case("ie-alphas-nan", lambda w: IE(w, "--alphas", "0,nan"), says="finite"),
    Case("ie-not-a-folder", lambda w: _with(IE(w), "-i", w / B / "adir"), says="not an iti intervention"),
    # ---------------------------------------------------------------- tcav
    Case("tc-json-is-probe", lambda w: TC(w, "--json", w / "p.json"), says="input"),
    Case("tc-json-is-data", lambda w: TC(w, "--json", w / "d.csv"), says="input"),
    Case("tc-json-over-foreign", lambda w: TC(w, "--json", w / "bb.json"), says="exists and is not"),
    Case("tc-position", lambda w: TC(w, "--position", "middle"), says="--position"),
    Case("tc-probe-nan", lambda w: _with(TC(w), "--probe", w / B / "nan.json"), says="nan"),
    # ---------------------------------------------------------------- blackbox
    Case("bf-out-is-questions", lambda w: _out(BF(w), w / "questions.json"), says="input"),
    Case("bf-out-over-a-probe", lambda w: _out(BF(w), w / "p.json"), says="exists and is not"),
    Case("bf-context", lambda w: BF(w, "--n-questions", "8", "--n-followups", "4", "--yes", "votool", "--no",
                                    "krotoox"), says="context of"),
    Case("bf-yes-empty", lambda w: BF(w, "--yes", ","), says="yes word"),
    Case("bf-questions-surrogate", lambda w: _with(BF(w), "--questions", w / B / "q_surrogate.json"),
         says="entry 9 holds a lone surrogate"),
    Case("bf-questions-wrong-types", lambda w: _with(BF(w), "--questions", w / B / "q_types.json"),
         says="no entries with question"),
    Case("bf-questions-folder", lambda w: _with(BF(w), "--questions", w / B / "adir"), says="adir"),
    Case("bs-detector-list", lambda w: _with(BS(w), "--detector", w / B / "bb_list.json"), says="not an object"),
    Case("bs-coef-mismatch", lambda w: _with(BS(w), "--detector", w / B / "bb_mismatch.json"), says="coef holds 3"),
    Case("bs-coef-nan", lambda w: _with(BS(w), "--detector", w / B / "bb_nan.json"), says="not a finite number"),
    Case("bs-detector-missing", lambda w: _with(BS(w), "--detector", w / "nope.json"), says="no black-box detector"),
    Case("bs-surrogate", lambda w: _with(BS(w), None, w / B / "surrogate.jsonl"), says="lone surrogate"),
    # ---------------------------------------------------------------- organism eval
    Case("oe-out-over-a-probe", lambda w: ["organism", "eval", "--n", "10", "--out", w / "p.json"],
         says="exists and is not"),
    Case("tc-data-surrogate", lambda w: _with(TC(w), "--data", w / B / "st_surrogate.jsonl"),
         says="holds a lone surrogate"),
    Case("tc-answers-one", lambda w: TC(w, "--answers", " True"), says="two words"),
]

LOADS_MODEL = {"bf-context"}


def _with(args: List, option, value) -> List:
    args = list(args)
    if option is None:
        args[2] = value
    else:
        args[args.index(option) + 1] = value
    return args


def _out(args: List, value) -> List:
    return _with(args, "--out", value)


def _with_det(args: List, value) -> List:
    return _with(args, "--detector", value)


def test_battery_covers_every_newer_command():
    assert len(CASES) >= 70 and len({c.name for c in CASES}) == len(CASES)
    commands = {" ".join(str(a) for a in c.args(Path("w"))[:2]) for c in CASES}
    for cmd in ("detector train", "detector calibrate", "detector show", "detector run", "detector examples", "iti fit",
                "iti eval",
                "tcav score", "blackbox fit", "blackbox score", "organism eval"):
        assert cmd in commands, cmd
    assert any(c.args(Path("w"))[0] == "report" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, wx: Path, monkeypatch):
    run_case(case, wx, monkeypatch, LOADS_MODEL)


def test_good_artifacts_load_and_show_prints_valid_json(wx: Path):
    """The battery's own good inputs are accepted: the bad cases fail for their one reason."""
    res = invoke(["detector", "show", wx / "det", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["layer"] == 2 and doc["calibration"]["n_control"] >= 1
    from liedetect.detector import Detector

    old = wx / "new" / "legacy"
    shutil.copytree(wx / "det", old)
    (old / "manifest.json").unlink()  # a folder written before manifests still loads, the same detector
    try:
        assert Detector.load(old).to_dict() == Detector.load(wx / "det").to_dict()
    finally:
        shutil.rmtree(wx / "new", ignore_errors=True)
    from liedetect.blackbox import FollowupDetector
    from liedetect.iti import ITIIntervention

    assert ITIIntervention.load(wx / "iti").heads == [(0, 0), (1, 1)]
    assert FollowupDetector.load(wx / "bb.json").followups[1] == "does biqui live in votool"
