"""The schemas of liedetect's own JSON files, checked where they are read: a detector's detector.json, score
records and summaries, a black-box detector, an ITI intervention's heads.json. Unknown format versions, wrong
types, missing keys, NaN or infinite numbers and paths that leave an artifact's folder are one sentence each
(raised as the caller's error class), never a TypeError later."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

from liedetect.errors import CheckpointError, DataError

Types = Union[type, Tuple[type, ...]]


class Schema:
    """Checks on one JSON object, each failure one sentence that starts with `where` (the file)."""

    def __init__(self, doc: Any, where: Any, what: str, error: Type[Exception] = CheckpointError,
                 remedy: str = "write it again") -> None:
        self.where, self.what, self.error, self.remedy = str(where), what, error, remedy
        if not isinstance(doc, dict):
            raise self.fail(f"is a JSON {type(doc).__name__}, not an object")
        self.doc = doc

    def fail(self, problem: str) -> Exception:
        """The one sentence for a problem with this document."""
        return self.error(f"{self.where}: {problem}, so it is not a usable {self.what}; {self.remedy}.")

    def get(self, key: str, types: Types, required: bool = True, default: Any = None) -> Any:
        """doc[key] after checking its type (bool is never a number); a missing optional key gives `default`."""
        if key not in self.doc or (self.doc[key] is None and not required):
            if required:
                raise self.fail(f"the key {key!r} is missing")
            return default
        return check_type(self.doc[key], types, key, self.fail)

    def number(self, key: str, required: bool = True, low: Optional[float] = None, high: Optional[float] = None,
               integer: bool = False) -> Any:
        """A finite number (an int with `integer`) within [low, high]."""
        value = self.get(key, int if integer else (int, float), required)
        if value is None:
            return None
        return finite(value, key, self.fail, low, high)

    def version(self, key: str, supported: int) -> int:
        """A format version this code reads (an int no newer than `supported`)."""
        v = self.get(key, int)
        if not 1 <= v <= supported:
            raise self.fail(f"{key} {v} is not one this liedetect reads (it reads up to {supported}); use a newer "
                            f"liedetect or write it again")
        return v

    def choice(self, key: str, choices: Sequence[str], required: bool = True) -> Optional[str]:
        """A string among `choices`."""
        value = self.get(key, str, required)
        if value is not None and value not in choices:
            raise self.fail(f"{key} {value!r} is not one of {', '.join(choices)}")
        return value

    def local_name(self, key: str, default: str) -> str:
        """A file name inside the artifact's own folder (no folder part, not absolute, no '..')."""
        name = self.get(key, str, required=False, default=default)
        if not name or Path(name).name != name or name in (".", ".."):
            raise self.fail(f"{key} {name!r} points outside its folder (only a bare file name is allowed)")
        return name


def check_type(value: Any, types: Types, key: str, fail: Any) -> Any:
    """`value` when it has one of `types` (a bool never counts as a number)."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join("number" if t is float else "integer" if t is int else "text" if t is str else
                            "list" if t is list else "object" if t is dict else t.__name__ for t in types)
        raise fail(f"{key} is {value!r} (a {type(value).__name__}), not {names}")
    return value


def finite(value: Any, key: str, fail: Any, low: Optional[float] = None, high: Optional[float] = None) -> Any:
    """A number that is not NaN or infinite and lies within [low, high]."""
    check_type(value, (int, float), key, fail)
    if not math.isfinite(value):
        raise fail(f"{key} is {value}, not a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(f"{key} is {value}, outside [{low}, {high}]")
    return value


def finite_list(values: Any, key: str, fail: Any, length: Optional[int] = None) -> list:
    """A list of finite numbers (of `length`)."""
    check_type(values, list, key, fail)
    for i, v in enumerate(values):
        finite(v, f"{key}[{i}]", fail)
    if length is not None and len(values) != length:
        raise fail(f"{key} holds {len(values)} numbers where {length} are needed")
    return values


# ---------------------------------------------------------------- detector.json

DETECTOR_TEXT = ("model_id", "model_spec", "hook", "method", "position", "bos")


def check_detector(d: Any, where: Any, version: int, fmts: Sequence[str], aggregates: Sequence[str]) -> Dict[str, Any]:
    """The fields of a detector.json, checked; CheckpointError names the first problem."""
    s = Schema(d, where, "detector", remedy="retrain it with `liedetect detector train`")
    s.version("format_version", version)
    out: Dict[str, Any] = {k: s.get(k, str) for k in DETECTOR_TEXT if k in d or k in ("model_id", "hook", "method")}
    out["model_spec"] = s.get("model_spec", str, required=False, default=out["model_id"])
    out["layer"] = s.number("layer", integer=True, low=0)
    out["fmt"] = s.choice("fmt", fmts, required=False) or "auto"
    out["aggregate"] = s.choice("aggregate", aggregates, required=False) or "mean"
    roles = s.get("roles", list, required=False, default=["assistant"])
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise s.fail(f"roles is {roles!r}, not a list of role names")
    out["roles"] = roles
    out["training"] = s.get("training", dict, required=False, default={})
    out["calibration"] = check_calibration(s.get("calibration", dict, required=False), s)
    out["probe_file"] = s.local_name("probe", "probe")
    return {k: v for k, v in out.items() if v is not None or k == "calibration"}


def check_calibration(c: Optional[dict], parent: Schema) -> Optional[dict]:
    """A detector's calibration: a finite threshold at an FPR in (0, 1) from a count of control messages."""
    if c is None:
        return None
    s = Schema(c, f"{parent.where} calibration", "calibration", parent.error, parent.remedy)
    s.number("threshold")
    s.number("fpr", low=0.0, high=1.0)
    if not 0 < c["fpr"] < 1:
        raise s.fail(f"fpr is {c['fpr']}, not strictly between 0 and 1")
    s.number("n_control", integer=True, low=1)
    s.number("token_threshold", required=False)
    s.get("control", str, required=False)
    s.get("control_sha256", str, required=False, default="")
    return c


# ---------------------------------------------------------------- scores (records and summary)


def check_record(rec: Any, where: str) -> Dict[str, Any]:
    """One line of a scores JSONL: an id, a finite score and its messages (scored ones with finite token scores)."""
    s = Schema(rec, where, "score record", DataError, "pass a scores file written by `liedetect score`")
    if "id" not in rec or "messages" not in rec or "score" not in rec:
        missing = [k for k in ("id", "score", "messages") if k not in rec]
        names = ", ".join(repr(k) for k in missing)
        raise s.fail(f"it has no {names} (is this a transcripts file rather than scores?)")
    s.number("score")
    s.choice("aggregate", ("mean", "max", "last"), required=False)
    for i, m in enumerate(s.get("messages", list)):
        ms = Schema(m, f"{where} message {i}", "scored message", DataError, s.remedy)
        ms.get("role", str)
        if m.get("scored"):
            for k in ("mean", "max", "last"):
                ms.number(k)
            finite_list(ms.get("scores", list), "scores", ms.fail)
            if len(ms.get("tokens", list)) != len(m["scores"]):
                raise ms.fail("tokens and scores differ in length")
    return rec


def check_summary(d: Any, where: Any) -> Dict[str, Any]:
    """A scoring run's summary.json: calibration and metrics hold finite numbers where numbers are read."""
    s = Schema(d, where, "score summary", DataError, "delete it or score again")
    calib = s.get("calibration", dict, required=False)
    if calib is not None:
        c = Schema(calib, f"{where} calibration", "calibration", DataError, s.remedy)
        c.number("threshold", required=False)
        c.number("fpr", required=False, low=0.0, high=1.0)
        c.number("n_control", required=False, integer=True, low=0)
        c.number("token_threshold", required=False)
    metrics = s.get("metrics", dict, required=False)
    if metrics is not None:
        m = Schema(metrics, f"{where} metrics", "metrics", DataError, s.remedy)
        for k in ("auroc", "recall", "fpr"):
            m.number(k, required=False, low=0.0, high=1.0)
        m.get("confusion", dict, required=False)
        m.get("by_group", dict, required=False)
    s.get("settings", dict, required=False)
    for i, p in enumerate(s.get("problems", list, required=False, default=[])):
        ps = Schema(p, f"{where} problems[{i}]", "problem entry", DataError, s.remedy)
        ps.get("line", int)
        ps.get("reason", str)
    return d


# ---------------------------------------------------------------- black-box detector and ITI intervention


def check_blackbox(d: Any, where: Any, fmt: str) -> Dict[str, Any]:
    """A black-box detector JSON: follow-up questions and a logistic regression of matching size, all finite."""
    s = Schema(d, where, "black-box detector", CheckpointError, "write one with `liedetect blackbox fit`")
    if d.get("format") != fmt:
        raise s.fail(f"its format is {d.get('format')!r}, not {fmt!r}")
    followups = s.get("followups", list)
    if not followups or not all(isinstance(q, str) and q.strip() for q in followups):
        raise s.fail("followups is not a non-empty list of questions")
    n = len(followups)
    for key in ("coef", "mean", "scale"):
        finite_list(s.get(key, list), key, s.fail, n)
    if any(v <= 0 for v in d["scale"]):
        raise s.fail("scale holds a number that is not positive")
    s.number("intercept")
    return d


def check_iti_heads(d: Any, where: Any, fmt: str) -> Dict[str, Any]:
    """An ITI heads.json: [layer, head] pairs, a finite alpha, a meta object."""
    s = Schema(d, where, "ITI intervention", CheckpointError, "write one with `liedetect iti fit`")
    if d.get("format") != fmt:
        raise s.fail(f"its format is {d.get('format')!r}, not {fmt!r}")
    heads = s.get("heads", list)
    if not heads or not all(isinstance(h, list) and len(h) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                        and v >= 0 for v in h) for h in heads):
        raise s.fail("heads is not a non-empty list of [layer, head] pairs of non-negative integers")
    s.number("alpha")
    meta = Schema(s.get("meta", dict, required=False, default={}), f"{where} meta", "ITI intervention", s.error,
                  s.remedy)
    meta.number("seed", required=False, integer=True, low=0)
    template = meta.get("template", str, required=False)
    if template is not None and "{question}" not in template:
        raise meta.fail("template does not hold {question}")
    return d
