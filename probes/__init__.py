"""Truth-finding methods: pure math on activation tensors (torch, numpy, scikit-learn; never liedetect).

Every probe follows scikit-learn's habits: ``fit`` returns self, ``predict_proba`` gives P(true),
``score`` is accuracy, fitted attributes end in ``_``; every probe has a unit ``direction_``.
"""

from probes.base import ContrastProbe, Probe, load
from probes.ccs import CCSProbe
from probes.errors import ProbeError
from probes.lat import LATProbe, PCAProbe
from probes.logistic import LogisticProbe
from probes.mass_mean import MassMeanProbe
from probes.multilayer import MultiLayerProbe
from probes.random_probe import RandomProbe
from probes.registry import METHODS, is_paired, make_probe, paired_methods
from probes.ttpd import TTPDProbe

PAIRED = paired_methods()

__all__ = [
    "Probe", "ContrastProbe", "load", "ProbeError",
    "LogisticProbe", "MassMeanProbe", "LATProbe", "PCAProbe", "CCSProbe", "RandomProbe",
    "TTPDProbe", "MultiLayerProbe",
    "METHODS", "PAIRED", "make_probe", "is_paired",
]
