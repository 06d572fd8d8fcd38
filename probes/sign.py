"""Orient a sign-ambiguous probe (CCS, LAT, PCA) without truth labels, from a reference score per example.

The reference is usually the model's own zero-shot answer (log-odds of " True" over " False"), as Burns
et al. do for CCS: the probe is flipped when its scores fall as the reference rises. The rule, the
agreement it saw and whether it flipped are recorded in ``fit_info_["sign"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probes.base import Probe
from probes.errors import ProbeError

# fitted tensors, besides coef_/bias_/direction_, whose sign carries the probe's orientation
SIGNED = {"ccs": ("weight_", "weight_bias_"), "lat": ("pair_coef_", "pair_bias_")}


def flip(probe: Probe) -> Probe:
    """Negate a fitted probe in place: every score and P(true) becomes that of the opposite reading."""
    probe._check_fitted()
    if probe.method not in SIGNED and probe.method not in ("pca", "random", "mass-mean", "lr"):
        raise ProbeError(f"Flipping a {probe.method!r} probe is not supported; refit it with labels instead.")
    probe.direction_ = -probe.direction_
    probe.coef_ = -probe.coef_
    probe.bias_ = -probe.bias_
    for name in SIGNED.get(probe.method, ()):
        setattr(probe, name, -getattr(probe, name))
    if probe.fit_info_.get("platt"):  # P = sigmoid(a * logit + c): the flipped logit keeps a, negates c
        a, c = probe.fit_info_["platt"]
        probe.fit_info_ = {**probe.fit_info_, "platt": [a, -c]}
    return probe


def orient(probe: Probe, X_pos: Any, X_neg: Any = None, reference: Any = None, source: str = "zero-shot") -> dict:
    """Flip ``probe`` when its scores correlate negatively with ``reference`` (one value per pair or row); returns the record.

    Contrast probes are scored on pairs ``(X_pos, X_neg)``; single-input probes on ``X_pos`` alone.
    """
    scores = (probe.decision_function_pairs(X_pos, X_neg) if probe.paired and X_neg is not None
              else probe.decision_function(X_pos))
    s = scores.detach().cpu().numpy().astype(np.float64)
    r = np.asarray(reference.detach().cpu() if torch.is_tensor(reference) else reference, dtype=np.float64).reshape(-1)
    if r.shape[0] != s.shape[0]:
        raise ProbeError(f"reference has {r.shape[0]} values for {s.shape[0]} examples; give one per example.")
    if not np.isfinite(r).all():
        raise ProbeError("reference contains NaN or infinite values.")
    if s.std() == 0 or r.std() == 0:
        raise ProbeError("The probe's scores or the reference are constant, so they cannot set a sign.")
    corr = float(np.corrcoef(s, r)[0, 1])
    flipped = corr < 0
    if flipped:
        flip(probe)
    record = {"calibrated": True, "method": source, "n_reference": int(len(r)),
              "correlation_before_flip": corr, "flipped": bool(flipped),
              "agreement_after": float(np.mean(np.sign(-s if flipped else s) == np.sign(r)))}
    info = dict(getattr(probe, "fit_info_", {}) or {})
    info["sign"] = record
    probe.fit_info_ = info
    return record
