"""Load a saved probe for a model, with the one set of checks every caller shares: model, width, layer, hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import probes
from liedetect.errors import CheckpointError, ProbeMismatchError
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


REQUIRED_TENSORS = ("direction", "coef", "bias")


def validate_probe_files(path: Union[str, Path]) -> None:
    """Check a saved probe's two files before it is used: readable JSON of the known format, known parameters,
    every tensor present and finite, one width throughout; CheckpointError names the first problem."""
    import inspect
    import json

    import torch
    from safetensors.torch import load_file

    from liedetect.paths import check_input_file, read_text
    from probes.base import FORMAT, probe_paths
    from probes.registry import probe_class

    st_path, js_path = probe_paths(path)
    if Path(path).is_dir():
        raise CheckpointError(f"The probe {path} is a folder; pass the probe's .json (with its .safetensors beside it).")
    if not js_path.exists() or not st_path.exists():
        raise CheckpointError(f"No saved probe at {path}: expected both {js_path.name} and {st_path.name} next to each other.")
    check_input_file(js_path, "probe file")
    check_input_file(st_path, "probe file")
    try:
        sidecar = json.loads(read_text(js_path, "probe file"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{js_path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-save the probe.") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise CheckpointError(f"{js_path} is not a liedetect probe file (no \"format\": \"{FORMAT}\").")
    try:
        cls = probe_class(sidecar.get("method"), str(js_path))
    except (probes.ProbeError, TypeError) as exc:
        raise CheckpointError(str(exc)) from None
    params, meta = sidecar.get("params", {}), sidecar.get("meta", {})
    if not isinstance(params, dict) or not isinstance(meta or {}, dict):
        raise CheckpointError(f"{js_path}: 'params' and 'meta' must be JSON objects; re-save the probe.")
    layer, hook = (meta or {}).get("layer"), (meta or {}).get("hook")
    if (layer is not None and (isinstance(layer, bool) or not isinstance(layer, (int, list)))) or \
            (hook is not None and not isinstance(hook, str)):
        raise CheckpointError(f"{js_path} records layer={layer!r}, hook={hook!r}: a layer is an integer (a list for a "
                              f"multi-layer probe) and a hook a name; re-save the probe.")
    accepted = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(params) - set(accepted) - {"self"})
        if unknown:
            raise CheckpointError(f"{js_path} has parameter(s) {', '.join(unknown)} that a {sidecar.get('method')} probe "
                                  f"does not take (known: {', '.join(k for k in accepted if k != 'self')}); re-save the probe.")
    try:
        tensors = load_file(str(st_path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{st_path} could not be read as safetensors ({type(exc).__name__}); re-save the probe.") from None
    missing = [k for k in REQUIRED_TENSORS if k not in tensors]
    if missing:
        raise CheckpointError(f"{st_path} lacks the tensor(s) {', '.join(missing)}; re-save the probe.")
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            if name in REQUIRED_TENSORS:
                raise CheckpointError(f"{st_path}: tensor {name!r} is {tensor.dtype}, not floating point; re-save the probe.")
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{st_path}: tensor {name!r} holds NaN or infinite values; retrain the probe.")
    direction = tensors["direction"]
    if direction.ndim == 0 or tensors["coef"].shape != direction.shape or tensors["bias"].numel() < 1:
        raise CheckpointError(f"{st_path}: direction, coef and bias do not have the shapes of a linear probe; re-save the probe.")
    width = direction.shape[0]
    for where, value in (("d_model", sidecar.get("d_model")), ("meta.d_model", (meta or {}).get("d_model"))):
        if value is not None and direction.ndim == 1 and value != width:
            raise CheckpointError(f"{js_path} says {where}={value!r} but its direction is {width} wide; the files do not "
                                  f"belong together; re-save the probe.")


def read_probe(path: Union[str, Path]) -> probes.Probe:
    """A saved probe, after `validate_probe_files`: a broken file is one CheckpointError, never a traceback."""
    validate_probe_files(path)
    return probes.load(path)


def load_probe(path: Union[str, Path], model: Any = None, layer: Optional[int] = None,
               hook: Optional[str] = None) -> probes.Probe:
    """Load a saved probe; if it was trained on another model, width, layer or hook than given, raise ProbeMismatchError."""
    probe = read_probe(path)
    check_probe(probe, model, layer, hook, Path(path).name)
    return probe
