"""Detectors combined with an AND: a reply is as suspicious as the least suspicious of its detectors finds it.

On the real organism RepE's instructed-pairs probe catches nearly every lie told under a lying prompt but flags
the true answers given under it too (it reads the persona), while the claim truth probe reads whether what was
said is false but misses more lies at a strict threshold. Requiring both keeps what each is right about. Each
detector's scores are put in units of its own honest controls' spread (mean and standard deviation over the
controls it scores as claims), so neither scale dominates, and the combined score is their minimum: no parameter
is fitted, on the lies or anything else. A reply that a gated claim detector reads as no claim stays
``NOT_A_CLAIM``.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from liedetect.organism.real_detect import NOT_A_CLAIM

COMBINED: Dict[str, Tuple[str, ...]] = {"repe_and_claim": ("repe", "truth_lr_claim")}
Scored = Tuple[np.ndarray, np.ndarray]  # (transcripts' scores, controls' scores)


def standardise(scores: np.ndarray, control: np.ndarray) -> Scored:
    """Both in units of the controls' spread around their mean; ``NOT_A_CLAIM`` entries are left out of the
    statistics and kept as they are."""
    scores, control = np.asarray(scores, float), np.asarray(control, float)
    claim = control > NOT_A_CLAIM / 2
    if claim.sum() < 2:
        raise ValueError("standardising needs at least two control scores that are claims")
    mu, sd = control[claim].mean(), control[claim].std()
    sd = sd if sd > 0 else 1.0

    def z(x: np.ndarray) -> np.ndarray:
        return np.where(x > NOT_A_CLAIM / 2, (x - mu) / sd, NOT_A_CLAIM)
    return z(scores), z(control)


def both(parts: Sequence[Scored]) -> Scored:
    """The AND of detectors: per transcript and per control, the minimum of their standardised scores."""
    if len(parts) < 2:
        raise ValueError("an AND needs at least two detectors")
    z = [standardise(s, c) for s, c in parts]
    return np.min([s for s, _ in z], axis=0), np.min([c for _, c in z], axis=0)
