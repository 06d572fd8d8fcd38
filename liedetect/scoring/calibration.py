"""Calibration and message-level metrics: a threshold at a false-positive rate on honest control messages,
then AUROC, recall and confusion counts against labels (the math is ``probes.metrics``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from liedetect.errors import DataError
from probes.metrics import auroc, confusion_counts, threshold_at_fpr

__all__ = ["threshold_at_fpr", "message_rows", "Calibration", "Metrics", "calibrate", "evaluate"]


def message_rows(records: Iterable[Dict[str, Any]], aggregate: str = "mean") -> List[Dict[str, Any]]:
    """One row per scored message: transcript id, message index, group, label, score."""
    rows = []
    for rec in records:
        for i, m in enumerate(rec["messages"]):
            if m.get("scored"):
                rows.append({"id": rec["id"], "message": i, "group": rec.get("group"), "label": m.get("label"),
                             "score": m[aggregate]})
    return rows


@dataclass
class Calibration:
    """A deception threshold: messages scoring above it are flagged."""

    threshold: float
    fpr: float
    source: str
    n_control: int
    warning: Optional[str] = None

    def summary(self) -> str:
        """One line (two with a warning)."""
        line = f"threshold {self.threshold:.4f} at {self.fpr:.1%} FPR from {self.n_control} {self.source} messages"
        return line + (f"\nwarning: {self.warning}" if self.warning else "")


@dataclass
class Metrics:
    """Message-level detection quality against labels, at a calibrated threshold."""

    n_honest: int
    n_deceptive: int
    auroc: Optional[float]
    recall: Optional[float]
    fpr: Optional[float]
    confusion: Dict[str, int]
    by_group: Dict[str, Dict[str, Any]]

    def summary(self) -> str:
        """One line."""
        au = "n/a" if self.auroc is None else f"{self.auroc:.4f}"
        rec = "n/a" if self.recall is None else f"{self.recall:.3f}"
        return f"AUROC {au}, recall {rec} at threshold, {self.n_deceptive} deceptive / {self.n_honest} honest messages"


def calibrate(control_rows: Sequence[Dict[str, Any]], fpr: float, source: str) -> Calibration:
    """Threshold at `fpr` on the scores of honest control messages."""
    check_fpr(fpr)
    scores = [r["score"] for r in control_rows]
    if not scores:
        raise DataError("No control scores to calibrate on; the control set has no scored message.")
    need = int(np.ceil(1 / fpr - 1e-9))
    warning = None
    if len(scores) < need:
        warning = (f"only {len(scores)} {source} messages for a {fpr:.2%} FPR: fewer than 1/FPR = {need}, so the "
                   f"threshold is the top of the sample and the real FPR is not measured; use a larger control set.")
    return Calibration(threshold=threshold_at_fpr(scores, fpr), fpr=fpr, source=source, n_control=len(scores),
                       warning=warning)


def check_fpr(fpr: float) -> None:
    """A false-positive rate must lie strictly between 0 and 1."""
    if not isinstance(fpr, (int, float)) or not 0 < fpr < 1 or fpr != fpr:
        raise DataError(f"--fpr must lie strictly between 0 and 1 (e.g. 0.01), got {fpr}.")


def evaluate(rows: Sequence[Dict[str, Any]], threshold: Optional[float]) -> Metrics:
    """AUROC, recall/FPR at the threshold and a confusion table over labelled messages."""
    labelled = [r for r in rows if r.get("label") in (0, 1)]
    y_lie = np.array([1 - r["label"] for r in labelled])
    s = np.array([r["score"] for r in labelled], dtype=np.float64)
    n_dec, n_hon = int(y_lie.sum()), int(len(y_lie) - y_lie.sum())
    area = auroc(y_lie, s) if n_dec and n_hon else None
    confusion: Dict[str, int] = {}
    recall = fpr = None
    if threshold is not None and len(labelled):
        flag = s > threshold
        confusion = confusion_counts(y_lie, flag)
        recall = confusion["tp"] / n_dec if n_dec else None
        fpr = confusion["fp"] / n_hon if n_hon else None
    groups: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(str(r.get("group")), {"n": 0, "scores": []})
        g["n"] += 1
        g["scores"].append(r["score"])
    by_group = {}
    for name, g in sorted(groups.items()):
        arr = np.asarray(g["scores"])
        entry = {"n": g["n"], "mean": float(arr.mean())}
        if threshold is not None:
            entry["flagged"] = float((arr > threshold).mean())
        by_group[name] = entry
    return Metrics(n_honest=n_hon, n_deceptive=n_dec, auroc=area, recall=recall, fpr=fpr, confusion=confusion,
                   by_group=by_group)
