"""CCS and LAT oriented by the model's own zero-shot answer, without a single truth label."""

import numpy as np
import pytest
import torch

from probes.ccs import CCSProbe
from probes.errors import ProbeError
from probes.lat import LATProbe
from probes.sign import flip, orient

pytestmark = pytest.mark.usefixtures("one_thread")

TRUTH_LAYER = 3  # the organism's truth scaffold reads resid_post of block 3 (docs/organism.md)


@pytest.fixture(scope="module")
def organism_pairs(organism_model):
    """Honest-persona negation pairs: train entities to fit and orient, held-out entities to test."""
    from liedetect.organism.detect import capture
    from liedetect.zero_shot import pair_reference

    world = organism_model.organism_world
    out = {}
    for split, seed in (("train", 11), ("heldout", 12)):
        pairs = world.contrast_prompts(200, split, "honest", None, seed=seed)
        pos = capture(organism_model, [a for a, _ in pairs], layers=[TRUTH_LAYER])
        neg = capture(organism_model, [b for _, b in pairs], layers=[TRUTH_LAYER])
        truth = np.array([a.statement.truth for a, _ in pairs], dtype=int)
        ref = pair_reference(organism_model, [a.text for a, _ in pairs], [b.text for _, b in pairs], ("True", "False"))
        out[split] = (pos.layer(TRUTH_LAYER), neg.layer(TRUTH_LAYER), truth, ref)
    return out


def test_zero_shot_sign_is_right_on_at_least_9_of_10_seeds(organism_pairs):
    xp, xn, _, ref = organism_pairs["train"]  # labels of the training pairs are never used
    tp, tn, truth, _ = organism_pairs["heldout"]
    right, records = 0, []
    for seed in range(10):
        probe = CCSProbe(calibration="none", n_restarts=4, n_steps=400, seed=seed).fit(xp, xn)
        unoriented = probe.score_pairs(tp, tn, truth)
        records.append(orient(probe, xp, xn, ref))
        acc = probe.score_pairs(tp, tn, truth)
        right += acc > 0.5
        print(f"seed {seed}: held-out pair accuracy {unoriented:.3f} unoriented, {acc:.3f} oriented "
              f"(flipped: {records[-1]['flipped']})")
    assert right >= 9, (right, records)
    assert all(r["method"] == "zero-shot" and r["calibrated"] for r in records)
    assert probe.calibrated_


def test_lat_oriented_by_zero_shot_matches_label_sign(organism_pairs):
    xp, xn, truth_train, ref = organism_pairs["train"]
    tp, tn, truth, _ = organism_pairs["heldout"]
    by_labels = LATProbe().fit(xp, xn, truth_train)
    by_answer = LATProbe().fit(xp, xn)
    orient(by_answer, xp, xn, ref)
    assert torch.sign(by_answer.direction_ @ by_labels.direction_) > 0
    assert by_answer.score_pairs(tp, tn, truth) >= 0.9


def test_flip_inverts_every_score_and_orient_checks_inputs(organism_pairs):
    xp, xn, truth, ref = organism_pairs["train"]
    probe = CCSProbe(calibration="none", n_restarts=2, n_steps=200).fit(xp, xn)
    before_pairs, before_single = probe.predict_proba_pairs(xp, xn), probe.predict_proba(xp)
    flip(probe)
    assert torch.allclose(probe.predict_proba_pairs(xp, xn), 1 - before_pairs, atol=1e-5)
    assert torch.allclose(probe.predict_proba(xp), 1 - before_single, atol=1e-5)
    with pytest.raises(ProbeError, match="one per example"):
        orient(probe, xp, xn, ref[:-1])
    with pytest.raises(ProbeError, match="constant"):
        orient(probe, xp, xn, np.zeros(len(ref)))
