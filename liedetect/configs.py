"""Detector experiments from a YAML file: train, calibrate, evaluate on several sets, one results table.

```yaml
model: organism
train: org-chats/train.jsonl       # statements (CSV, builtin:NAME) or labelled chats (.jsonl)
control: org-chats/control.jsonl   # honest chats that set the threshold
eval: {organism-test: org-chats/test.jsonl}   # name -> labelled chats (or a list of paths)
method: lr                         # optional: layers, fmt, aggregate, fpr, seed, out
```

Paths are relative to the YAML file. ``run_config`` writes ``results.csv`` and ``results.json`` (one row per
eval set: n, AUROC, recall and FPR at the threshold) and the detector folder into ``out``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from liedetect.errors import DataError

KEYS = {"model", "train", "control", "eval", "method", "layers", "fmt", "aggregate", "fpr", "seed", "out"}
TEXT_KEYS = ("model", "train", "control", "method", "fmt", "aggregate", "out")


def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The config as a dict with paths resolved against its folder; one DataError for YAML that does not parse,
    unknown or missing keys, and values of the wrong type or outside their lists."""
    import yaml

    from liedetect.paths import read_text
    from liedetect.schemas import Schema, finite

    path = Path(path)
    if not path.exists():
        raise DataError(f"No experiment config at {path}.")
    try:
        cfg = yaml.safe_load(read_text(path, "experiment config"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path} is not valid YAML{where} ({getattr(exc, 'problem', None) or type(exc).__name__}); "
                        f"fix the config.") from None
    s = Schema({} if cfg is None else cfg, path, "experiment config", DataError, "fix the config")
    unknown = sorted(set(cfg or {}) - KEYS)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(KEYS))}.")
    missing = [k for k in ("train", "control", "eval") if k not in s.doc]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (train data, honest control chats, eval sets).")
    for key in TEXT_KEYS:
        s.get(key, str, required=key in ("train", "control"))
    _choices(s)
    seed = s.number("seed", required=False, integer=True, low=0)
    fpr = s.number("fpr", required=False)
    if fpr is not None and not 0 < fpr < 1:
        raise s.fail(f"fpr is {fpr}, not strictly between 0 and 1")
    layers = s.get("layers", (str, int), required=False)
    if isinstance(layers, int):
        finite(layers, "layers", s.fail)

    def here(p: str) -> str:
        return p if str(p).startswith("builtin:") else str((path.parent / p).resolve())

    ev = s.get("eval", (dict, list, str))
    if isinstance(ev, str):
        ev = [ev]
    evals = ev if isinstance(ev, dict) else {Path(str(p)).stem: p for p in ev}
    if not evals or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in evals.items()):
        raise s.fail("eval is not a path, a list of paths or a map of name -> path")
    out = {"model": "organism", "method": "lr", "layers": None, "fmt": "auto", "aggregate": "mean", "fpr": 0.01,
           "seed": 0, **s.doc, "train": here(s.doc["train"]), "control": here(s.doc["control"]),
           "eval": {k: here(v) for k, v in evals.items()}, "out": here(s.doc.get("out", path.stem + "-results"))}
    return {**out, "seed": 0 if seed is None else seed, "fpr": 0.01 if fpr is None else fpr}


def _choices(s: Any) -> None:
    import probes

    from liedetect.scoring.render import FORMATS
    from liedetect.scoring.scorer import AGGREGATES

    s.choice("fmt", FORMATS, required=False)
    s.choice("aggregate", AGGREGATES, required=False)
    if "method" in s.doc:
        try:
            probes.is_paired(s.doc["method"])
        except probes.ProbeError as exc:
            raise s.fail(str(exc).rstrip(".")) from None


def preflight_config(path: Union[str, Path]) -> Tuple[Dict[str, Any], Any]:
    """Everything `run_config` can check before a model loads: the config, the train, control and eval files
    (readable; the control set honest), the output files (none an input; the detector folder replaceable).
    Returns (config, the checked control set)."""
    from liedetect.artifacts import check_artifact_target
    from liedetect.detector import DETECTOR_FILES, load_training_data, read_control
    from liedetect.options import input_paths
    from liedetect.paths import check_input_file, check_outputs, check_transcripts_encodable
    from liedetect.scoring.transcripts import load_transcripts

    cfg = read_config(path)
    named = [("train", cfg["train"]), ("control", cfg["control"])] + [(f"eval {k}", v) for k, v in cfg["eval"].items()]
    for name, p in named:
        if not str(p).startswith("builtin:"):
            check_input_file(p, f"{name} file")
    for name, p in cfg["eval"].items():
        data = check_transcripts_encodable(load_transcripts(p, strict=False))
        if not data.transcripts:
            raise DataError(f"{path}: the eval set {name} ({p}) holds no readable transcript.")
    control = read_control(cfg["control"])
    load_training_data(cfg["train"], seed=cfg["seed"])
    out = Path(cfg["out"])
    inputs = input_paths(path, cfg["model"], cfg["train"], cfg["control"], *cfg["eval"].values())
    check_outputs([out / "detector", out / "results.csv", out / "results.json"], inputs, folder=[True])
    check_artifact_target(out / "detector", DETECTOR_FILES, "a detector")
    return cfg, control


def run_config(path: Union[str, Path], progress: bool = False, with_out: bool = False) -> Any:
    """Train, calibrate and evaluate as the config says; write results.csv/json and the detector; return the rows
    (and the output folder, with `with_out`). Every check runs before the model loads."""
    from liedetect.artifacts import write_file_atomic
    from liedetect.detector import Detector
    from liedetect.models import load_model

    cfg, control = preflight_config(path)
    model = load_model(cfg["model"])
    det = Detector.train(model, cfg["train"], method=cfg["method"], layer=cfg["layers"], fmt=cfg["fmt"],
                         aggregate=cfg["aggregate"], seed=cfg["seed"], progress=progress)
    det.calibrate(model, control, fpr=cfg["fpr"], progress=progress)
    det.calibration["control"] = cfg["control"]
    out = Path(cfg["out"])
    det.save(out / "detector")
    rows = []
    for name, data in cfg["eval"].items():
        m = det.score(model, data, progress=progress).metrics
        rows.append({"eval": name, "model": cfg["model"], "method": cfg["method"], "layer": det.layer,
                     "threshold": det.calibration["threshold"], "n_control": det.calibration["n_control"],
                     "n_deceptive": m.n_deceptive, "n_honest": m.n_honest, "auroc": m.auroc, "recall": m.recall,
                     "fpr": m.fpr})
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_file_atomic(out / "results.csv", buf.getvalue())
    from probes.base import _jsonable

    doc = _jsonable({"config": cfg, "rows": rows, "warnings": det.warnings()}, other=str)
    write_file_atomic(out / "results.json", json.dumps(doc, indent=1) + "\n")
    return (rows, out) if with_out else rows
