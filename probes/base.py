"""The interface every probe shares: fit, decision_function, predict_proba, score, save, load.

A fitted probe is a linear read-out in raw residual space:
``decision_function(X) = X @ coef_ + bias_`` and ``predict_proba(X) = sigmoid(decision_function(X))``.
``direction_`` is the unit vector the method found (what steering and scoring consume); for most
methods ``coef_`` is a positive multiple of it, for covariance-corrected mass-mean it is not.
Normalisation statistics used during fitting (``mean_``, ``std_``) are stored with the probe and
already folded into ``coef_``/``bias_``, so raw activations go in unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from probes.errors import ProbeError
from probes.registry import probe_class
from probes.validation import as_labels, as_matrix, check_pairs, check_width, read_format_json

FORMAT = "liedetect-probe"
FORMAT_VERSION = 1
def data_hash(*arrays: Any) -> str:
    """SHA-256 of the exact bytes (and shapes) of the training arrays."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        arr = a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the code that produced a probe file."""
    try:
        own = metadata.version("liedetect")
    except metadata.PackageNotFoundError:
        own = "unknown"
    import sklearn

    return {"liedetect": own, "torch": torch.__version__.split("+")[0], "scikit-learn": sklearn.__version__}


def _jsonable(x: Any, other: Callable[[Any], Any] | None = None) -> Any:
    """Convert numpy/torch scalars and containers into plain JSON values (NaN and infinities become null).

    Any other value is an error, unless ``other`` converts it (e.g. ``str`` for paths in a printed summary)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v, other) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, other) for v in x]
    if torch.is_tensor(x):
        return _jsonable(x.detach().cpu().tolist(), other)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist(), other)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if other is not None:
        return other(x)
    raise ProbeError(f"Cannot store {type(x).__name__} value {x!r} in a probe's JSON sidecar; pass plain numbers and strings.")


def probe_paths(path: str | Path) -> tuple[Path, Path]:
    """``probe`` / ``probe.json`` / ``probe.safetensors`` -> (tensor file, JSON sidecar)."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return Path(f"{p}.safetensors"), Path(f"{p}.json")


class Probe:
    """Base class: a linear truth probe with a unit ``direction_`` in residual space."""

    method: ClassVar[str] = "base"
    paired: ClassVar[bool] = False
    extra_tensors: ClassVar[tuple[str, ...]] = ()  # method-specific fitted tensors saved with the probe

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    # ------------------------------------------------------------------ sklearn habits
    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__``."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "direction_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ProbeError(f"This {type(self).__name__} is not fitted yet; call fit() or load a saved probe first.")

    def _set_fitted(
        self,
        direction: torch.Tensor,
        coef: torch.Tensor,
        bias: float,
        *,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        train_hash: str,
        n_train: int,
        info: dict[str, Any],
    ) -> None:
        """Store the common fitted state (called at the end of every fit)."""
        direction = direction.detach().to(torch.float64)
        norm = float(direction.norm())
        if not math.isfinite(norm) or norm == 0.0:
            raise ProbeError("The fitted direction is zero or not finite; the activations carry no usable signal (check for constant inputs).")
        self.direction_ = (direction / norm).to(torch.float32).contiguous()
        self.coef_ = coef.detach().to(torch.float32).contiguous()
        self.bias_ = float(bias)
        self.mean_ = None if mean is None else mean.detach().to(torch.float32).contiguous()
        self.std_ = None if std is None else std.detach().to(torch.float32).contiguous()
        self.n_features_in_ = int(self.direction_.shape[0])
        self.train_hash_ = train_hash
        self.n_train_ = int(n_train)
        self.fit_info_ = _jsonable(info)
        self.metrics_: dict[str, Any] = {}
        self.meta_: dict[str, Any] = {}

    # ------------------------------------------------------------------ scoring single activations
    def _input(self, X: Any, name: str = "X") -> torch.Tensor:
        self._check_fitted()
        t = as_matrix(X, name, min_rows=1)
        check_width(t, self.n_features_in_, name)
        return t

    def decision_function(self, X: Any) -> torch.Tensor:
        """Signed score per activation: > 0 means the probe reads it as true. Shape [n]."""
        return self._input(X) @ self.coef_ + self.bias_

    def predict_proba(self, X: Any) -> torch.Tensor:
        """P(true) per activation, shape [n]."""
        return torch.sigmoid(self.decision_function(X))

    def predict(self, X: Any) -> torch.Tensor:
        """0/1 label per activation (1 = true)."""
        return (self.decision_function(X) >= 0).long()

    def project(self, X: Any) -> torch.Tensor:
        """Projection of each activation onto the unit ``direction_`` (no bias, no scale)."""
        return self._input(X) @ self.direction_

    def score(self, X: Any, y: Any) -> float:
        """Accuracy of ``predict(X)`` against 0/1 labels."""
        pred = self.predict(X).numpy()
        labels = as_labels(y, len(pred), both_classes=False)
        return float((pred == labels).mean())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, meta: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> Path:
        """Write ``<path>.safetensors`` (tensors) and ``<path>.json`` (everything else); return the JSON path.

        ``meta`` is the caller's context: at least model_id, hook, layer, position, d_model.
        """
        self._check_fitted()
        meta = dict(self.meta_ if meta is None else meta)
        if "d_model" in meta and meta["d_model"] is not None and int(meta["d_model"]) != self.n_features_in_:
            raise ProbeError(f"meta says d_model={meta['d_model']} but the probe has {self.n_features_in_} features; pass the width of the activations it was fitted on.")
        meta.setdefault("d_model", self.n_features_in_)
        if metrics is not None:
            self.metrics_ = {**self.metrics_, **metrics}
        self.meta_ = meta
        tensors = {"direction": self.direction_, "coef": self.coef_, "bias": torch.tensor([self.bias_], dtype=torch.float64)}
        if self.mean_ is not None:
            tensors["mean"] = self.mean_
        if self.std_ is not None:
            tensors["std"] = self.std_
        for name in self.extra_tensors:
            value = getattr(self, name, None)
            if value is not None:
                tensors[name.rstrip("_")] = value.detach().cpu().contiguous()
        sidecar = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "class": f"{type(self).__module__}.{type(self).__name__}",
            "paired": self.paired,
            "params": _jsonable(self.get_params()),
            "meta": _jsonable(meta),
            "d_model": self.n_features_in_,
            "n_train": self.n_train_,
            "train_data_sha256": self.train_hash_,
            "normalisation": {k: k in tensors for k in ("mean", "std")},
            "fit_info": self.fit_info_,
            "metrics": _jsonable(self.metrics_),
            "library": library_versions(),
        }
        st_path, js_path = probe_paths(path)
        st_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(st_path), metadata={"format": FORMAT})
        js_path.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        return js_path

    def _after_load(self) -> None:
        """Rebuild derived state after ``load`` (subclasses override when needed)."""

    def summary(self) -> str:
        """One line describing the fitted probe."""
        if not self.is_fitted:
            return f"{self!r} (not fitted)"
        where = ", ".join(f"{k}={self.meta_[k]}" for k in ("model_id", "hook", "layer") if k in self.meta_)
        return f"{self.method} probe, d={self.n_features_in_}, trained on {self.n_train_} examples" + (f" ({where})" if where else "")


class ContrastProbe(Probe):
    """A probe fitted on contrast pairs ``fit(X_pos, X_neg, y=None)``; scores pairs and single activations."""

    paired: ClassVar[bool] = True

    def _pairs(self, X_pos: Any, X_neg: Any, y: Any = None, min_rows: int = 2) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
        if X_neg is None or (not torch.is_tensor(X_neg) and np.ndim(X_neg) == 1) or (torch.is_tensor(X_neg) and X_neg.ndim == 1):
            raise ProbeError(f"{type(self).__name__} is a contrast probe: call fit(X_pos, X_neg, y=None) with the two [n, d] halves of the pairs.")
        xp, xn = check_pairs(X_pos, X_neg, min_rows)
        labels = None if y is None else as_labels(y, xp.shape[0])
        return xp, xn, labels

    def _pair_input(self, X_pos: Any, X_neg: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        xp, xn = check_pairs(X_pos, X_neg, min_rows=1)
        check_width(xp, self.n_features_in_, "X_pos")
        return xp, xn

    def decision_function_pairs(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """Signed score per pair: > 0 means the statement behind the pair is true."""
        raise NotImplementedError

    def predict_proba_pairs(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """P(the statement behind each pair is true), shape [n]."""
        return torch.sigmoid(self.decision_function_pairs(X_pos, X_neg))

    def score_pairs(self, X_pos: Any, X_neg: Any, y: Any) -> float:
        """Accuracy on pairs against 0/1 labels of the underlying statements."""
        pred = (self.decision_function_pairs(X_pos, X_neg) >= 0).long().numpy()
        return float((pred == as_labels(y, len(pred), both_classes=False)).mean())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return str(a) == str(b)


def check_expect(meta: dict[str, Any], expect: dict[str, Any] | None, name: str = "probe") -> None:
    """Raise ProbeError naming both values for every ``expect`` key whose value differs from ``meta``."""
    if not expect:
        return
    wrong = [(k, meta.get(k, "<not recorded>"), v) for k, v in expect.items() if v is not None and not (k in meta and _same(meta[k], v))]
    if wrong:
        trained = ", ".join(f"{k}={a!r}" for k, a, _ in wrong)
        wanted = ", ".join(f"{k}={b!r}" for k, _, b in wrong)
        raise ProbeError(f"Probe {name} was trained with {trained} but is being used with {wanted}; use a probe trained for this model, hook and layer.")


def load(path: str | Path, expect: dict[str, Any] | None = None) -> Probe:
    """Load a saved probe; with ``expect`` (e.g. model_id, hook, layer), refuse one trained elsewhere."""
    st_path, js_path = probe_paths(path)
    if not js_path.exists() or not st_path.exists():
        raise ProbeError(f"No saved probe at {path}: expected both {js_path.name} and {st_path.name} next to each other.")
    sidecar = read_format_json(js_path, FORMAT, ProbeError, "probe", "re-save the probe")
    meta = dict(sidecar.get("meta") or {})
    meta.setdefault("d_model", sidecar.get("d_model"))
    check_expect(meta, expect, js_path.name)
    cls = probe_class(sidecar.get("method"), str(js_path))
    try:
        tensors = load_file(str(st_path))
    except Exception as exc:  # safetensors raises its own error types
        raise ProbeError(f"{st_path} could not be read as safetensors ({exc}); re-save the probe.") from None
    probe = cls(**sidecar.get("params", {}))
    probe.direction_ = tensors["direction"]
    probe.coef_ = tensors["coef"]
    probe.bias_ = float(tensors["bias"][0])
    probe.mean_ = tensors.get("mean")
    probe.std_ = tensors.get("std")
    for name in cls.extra_tensors:
        setattr(probe, name, tensors.get(name.rstrip("_")))
    probe.n_features_in_ = int(probe.direction_.shape[0])
    probe.n_train_ = int(sidecar.get("n_train", 0))
    probe.train_hash_ = sidecar.get("train_data_sha256", "")
    probe.fit_info_ = sidecar.get("fit_info", {})
    probe.metrics_ = sidecar.get("metrics", {})
    probe.meta_ = meta
    probe._after_load()
    return probe

