"""Load a saved probe for a model, with the one set of checks every caller shares: model, width, layer, hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import probes
from liedetect.errors import ProbeMismatchError
from liedetect.models import model_id
from probes.base import check_expect
from probes.errors import ProbeError


def expectations(model: Any = None, layer: Optional[int] = None, hook: Optional[str] = None) -> Dict[str, Any]:
    """What a probe must record to be used here (None = not checked): model id and width, layer, hook."""
    expect: Dict[str, Any] = {"model_id": None if model is None else model_id(model), "layer": layer, "hook": hook}
    if model is not None:
        expect["d_model"] = model.cfg.d_model
    return expect


def check_probe(probe: Any, model: Any = None, layer: Optional[int] = None, hook: Optional[str] = None,
                name: str = "this probe") -> None:
    """Raise ProbeMismatchError, naming both values, if `probe` was trained on another model, width, layer or hook."""
    try:
        check_expect(getattr(probe, "meta_", None) or {}, expectations(model, layer, hook), name)
    except ProbeError as exc:
        raise ProbeMismatchError(str(exc)) from None


def load_probe(path: Union[str, Path], model: Any = None, layer: Optional[int] = None,
               hook: Optional[str] = None) -> probes.Probe:
    """Load a saved probe; if it was trained on another model, width, layer or hook than given, raise ProbeMismatchError."""
    probe = probes.load(path)
    check_probe(probe, model, layer, hook, Path(path).name)
    return probe
