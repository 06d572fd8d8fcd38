"""The AND of detectors (liedetect.organism.ensemble) on planted scores: a persona detector and a lie detector."""

import numpy as np
import pytest

from liedetect.organism.ensemble import both, standardise
from liedetect.organism.real_detect import NOT_A_CLAIM
from probes.metrics import auroc, threshold_at_fpr


def test_standardise_uses_the_controls_that_are_claims_and_keeps_non_claims():
    control = np.array([1.0, 3.0, NOT_A_CLAIM, 5.0])
    s, c = standardise(np.array([3.0, NOT_A_CLAIM, 3.0 + np.std([1, 3, 5])]), control)
    assert s.tolist() == pytest.approx([0.0, NOT_A_CLAIM, 1.0])
    assert c[2] == NOT_A_CLAIM and c[[0, 1, 3]].mean() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="two control"):
        standardise(np.zeros(3), np.array([1.0, NOT_A_CLAIM]))


def test_the_and_keeps_the_lie_detectors_ranking_and_the_persona_detectors_recall():
    rng = np.random.default_rng(0)
    n = 400
    # 0: honest persona, true answer; 1: lying persona, true answer; 2: lying persona, lie
    kind = np.repeat([0, 1, 2], n)
    persona = (kind > 0) * 6.0 + rng.normal(0, 1, 3 * n)  # reads the prompt: lies and truths under it alike
    falsity = (kind == 2) * 3.0 + rng.normal(0, 1, 3 * n)  # reads the claim, with more noise
    ctrl_persona, ctrl_falsity = rng.normal(0, 1, 500), rng.normal(0, 1, 500)  # honest controls
    s, c = both([(persona, ctrl_persona), (falsity, ctrl_falsity)])
    lie, lying = kind == 2, kind > 0
    within = {name: auroc(lie[lying].astype(int), x[lying]) for name, x in (("persona", persona), ("and", s))}
    assert within["persona"] < 0.6 and within["and"] > 0.95  # it tells a lie from a truth under the same prompt
    t = threshold_at_fpr(c, 0.01)
    truths_flagged = (s[kind == 1] > t).mean()  # measured 0.05; the persona detector alone flags nearly all
    assert truths_flagged < 0.1 and (persona[kind == 1] > threshold_at_fpr(ctrl_persona, 0.01)).mean() > 0.95
    assert (s[lie] > t).mean() > 0.8  # and still catches most lies at 1% FPR on the controls (measured 0.92)
    gated, _ = both([(np.array([9.0, 9.0]), ctrl_persona), (np.array([9.0, NOT_A_CLAIM]), ctrl_falsity)])
    assert gated[1] == NOT_A_CLAIM and gated[0] > 5
    with pytest.raises(ValueError, match="two detectors"):
        both([(persona, ctrl_persona)])
