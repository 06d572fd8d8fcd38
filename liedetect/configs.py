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
import json
from pathlib import Path
from typing import Any, Dict, List, Union

from liedetect.errors import DataError

KEYS = {"model", "train", "control", "eval", "method", "layers", "fmt", "aggregate", "fpr", "seed", "out"}


def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The config as a dict with paths resolved against its folder; DataError on unknown or missing keys."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise DataError(f"No experiment config at {path}.")
    cfg = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(cfg) - KEYS)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(KEYS))}.")
    missing = [k for k in ("train", "control", "eval") if k not in cfg]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (train data, honest control chats, eval sets).")

    def here(p: str) -> str:
        return p if str(p).startswith("builtin:") else str((path.parent / p).resolve())

    evals = cfg["eval"] if isinstance(cfg["eval"], dict) else {Path(p).stem: p for p in cfg["eval"]}
    return {"model": "organism", "method": "lr", "layers": None, "fmt": "auto", "aggregate": "mean", "fpr": 0.01,
            "seed": 0, **cfg, "train": here(cfg["train"]), "control": here(cfg["control"]),
            "eval": {k: here(v) for k, v in evals.items()}, "out": here(cfg.get("out", path.stem + "-results"))}


def run_config(path: Union[str, Path], progress: bool = False) -> List[Dict[str, Any]]:
    """Train, calibrate and evaluate as the config says; write results.csv/json and the detector; return the rows."""
    from liedetect.detector import Detector
    from liedetect.models import load_model

    cfg = read_config(path)
    model = load_model(cfg["model"])
    det = Detector.train(model, cfg["train"], method=cfg["method"], layer=cfg["layers"], fmt=cfg["fmt"],
                         aggregate=cfg["aggregate"], seed=cfg["seed"], progress=progress)
    det.calibrate(model, cfg["control"], fpr=cfg["fpr"], progress=progress)
    out = Path(cfg["out"])
    det.save(out / "detector")
    rows = []
    for name, data in cfg["eval"].items():
        m = det.score(model, data, progress=progress).metrics
        rows.append({"eval": name, "model": cfg["model"], "method": cfg["method"], "layer": det.layer,
                     "threshold": det.calibration["threshold"], "n_control": det.calibration["n_control"],
                     "n_deceptive": m.n_deceptive, "n_honest": m.n_honest, "auroc": m.auroc, "recall": m.recall,
                     "fpr": m.fpr})
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(json.dumps({"config": cfg, "rows": rows, "warnings": det.warnings()}, indent=1) + "\n")
    return rows
