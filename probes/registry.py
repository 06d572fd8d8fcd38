"""Where probe methods are registered: each method module registers its classes and presets here.

This module imports no method module (``probes/__init__`` imports them all, so every method is registered
as soon as ``probes`` is imported); ``load`` finds a saved probe's class here, sweeps and the CLI find
methods by name.
"""

from __future__ import annotations

from typing import Any

from probes.errors import ProbeError

# The order sweeps, tables and plots list methods in; a method not named here comes after, in registration order.
ORDER = ("lr", "mass-mean", "mass-mean-iid", "ttpd", "lat", "lat-random", "ccs", "pca", "random")
SUPERVISED = ("lr", "mass-mean", "mass-mean-iid")

REGISTRY: dict[str, type] = {}  # saved ``method`` name -> probe class (what ``load`` reads)
METHODS: dict[str, tuple[type, dict[str, Any]]] = {}  # method name -> (probe class, preset hyper-parameters)


def _add(name: str, cls: type, preset: dict[str, Any]) -> None:
    entries = {**METHODS, name: (cls, preset)}
    arrival = list(entries)
    ranked = sorted(entries.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER),
                                                     arrival.index(kv[0])))
    METHODS.clear()
    METHODS.update(ranked)


def register(cls: type) -> type:
    """Class decorator: make a probe class loadable by its ``method`` name and available to ``make_probe``."""
    REGISTRY[cls.method] = cls
    _add(cls.method, cls, {})
    return cls


def register_loadable(cls: type) -> type:
    """Class decorator for probes that need more than one layer's ``fit(X, y)`` (TTPD's polarity, multi-layer
    stacks): loadable by ``load``, but not offered to ``make_probe`` and single-layer sweeps."""
    REGISTRY[cls.method] = cls
    return cls


def register_preset(name: str, cls: type, **params: Any) -> None:
    """Offer ``cls`` with preset hyper-parameters under another method name (e.g. ``mass-mean-iid``)."""
    _add(name, cls, dict(params))


def probe_class(method: str, where: str = "this file") -> type:
    """The class a saved probe's ``method`` names; ProbeError lists the known ones."""
    cls = REGISTRY.get(method)
    if cls is None:
        raise ProbeError(f"{where} uses unknown probe method {method!r}; known: {', '.join(sorted(REGISTRY))}.")
    return cls


def make_probe(name: str, seed: int = 0, **params: Any) -> Any:
    """A fresh, unfitted probe for a method name (see ``METHODS``), with preset and given hyper-parameters."""
    if name not in METHODS:
        raise ProbeError(f"Unknown probe method {name!r}; choose one of: {', '.join(METHODS)}.")
    cls, preset = METHODS[name]
    return cls(**{**preset, **params, "seed": seed})


def is_paired(name: str) -> bool:
    """Whether a method name needs contrast pairs."""
    if name not in METHODS:
        raise ProbeError(f"Unknown probe method {name!r}; choose one of: {', '.join(METHODS)}.")
    return METHODS[name][0].paired


def paired_methods() -> tuple[str, ...]:
    """The registered method names that need contrast pairs."""
    return tuple(name for name, (cls, _) in METHODS.items() if cls.paired)
