"""Method names -> probe constructors, so sweeps and the CLI can ask for probes by name."""

from __future__ import annotations

from typing import Any

from probes.base import Probe
from probes.ccs import CCSProbe
from probes.errors import ProbeError
from probes.lat import LATProbe, PCAProbe
from probes.logistic import LogisticProbe
from probes.mass_mean import MassMeanProbe
from probes.random_probe import RandomProbe
from probes.multilayer import MultiLayerProbe  # noqa: F401  (registers "multi-layer" for load(); takes [n, L, d])
from probes.ttpd import TTPDProbe  # noqa: F401  (registers "ttpd" for load(); fitted with polarity, not through make_probe)

# name -> (class, preset hyper-parameters)
METHODS: dict[str, tuple[type[Probe], dict[str, Any]]] = {
    "lr": (LogisticProbe, {}),
    "mass-mean": (MassMeanProbe, {}),
    "mass-mean-iid": (MassMeanProbe, {"iid": True}),
    "lat": (LATProbe, {}),
    # RepE's recipe: raw differences in random order (side-centring first would make the flips a no-op,
    # i.e. this would be `lat` again)
    "lat-random": (LATProbe, {"pairing": "random", "center_sides": False}),
    "ccs": (CCSProbe, {}),
    "pca": (PCAProbe, {}),
    "random": (RandomProbe, {}),
}
SUPERVISED = ("lr", "mass-mean", "mass-mean-iid")
PAIRED = tuple(name for name, (cls, _) in METHODS.items() if cls.paired)


def make_probe(name: str, seed: int = 0, **params: Any) -> Probe:
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


