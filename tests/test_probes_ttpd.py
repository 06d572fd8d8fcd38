"""TTPD on a planted truth/polarity geometry: recovers t_G, generalises across polarity and topic where LR inverts."""

import numpy as np
import pytest
import torch

from probes.errors import ProbeError
from probes.logistic import LogisticProbe
from probes.ttpd import TTPDProbe, as_polarity
from tests.conftest import cos


def planted(n_per: int = 120, d: int = 48, topics: int = 6, seed: int = 0, t_p_scale: float = 1.5,
            offset_along_tG: float = 0.0):
    """Statements whose centred activation is tau*t_G + tau*p*t_P (+ a polarity offset, topic offsets and noise).

    Topic offsets lie outside the truth/polarity plane, plus ``offset_along_tG`` x N(0, 1) along t_G.
    """
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, 4, generator=g, dtype=torch.float64))
    t_G, t_P, pol_dir = basis[:, 0], basis[:, 1] * t_p_scale, basis[:, 2] * 2.0
    plane = basis[:, :3]
    rows, y, p, topic = [], [], [], []
    for k in range(topics):
        offset = torch.randn(d, generator=g, dtype=torch.float64) * 3.0
        offset = offset - plane @ (plane.T @ offset) + offset_along_tG * float(torch.randn(1, generator=g)) * t_G
        for polarity in (1, 0):  # each topic has an affirmative and a negated set, centred separately as in the paper
            tau = torch.randint(0, 2, (n_per,), generator=g) * 2 - 1
            sign = 1 if polarity else -1
            x = (offset + tau[:, None] * t_G + (tau * sign)[:, None] * t_P + sign * pol_dir
                 + 0.35 * torch.randn(n_per, d, generator=g, dtype=torch.float64))
            rows.append(x)
            y += ((tau + 1) // 2).tolist()
            p += [polarity] * n_per
            topic += [f"{k}-{'aff' if polarity else 'neg'}"] * n_per
    return torch.cat(rows).float(), np.array(y), np.array(p), np.array(topic), t_G


def test_ttpd_recovers_general_truth_direction():
    X, y, p, topic, t_G = planted()
    probe = TTPDProbe().fit(X, y, polarity=p, groups=topic)
    assert cos(probe.direction_, t_G) >= 0.95
    assert probe.fit_info_["polarity"] == "both"
    assert probe.fit_info_["polarity_train_accuracy"] >= 0.99


def test_ttpd_generalises_to_unseen_topics_and_polarity_where_lr_on_affirmative_inverts():
    X, y, p, topic, _ = planted(seed=1)
    topic_id = np.array([int(t.split("-")[0]) for t in topic])
    train, test = topic_id < 4, topic_id >= 4
    ttpd = TTPDProbe().fit(X[train], y[train], polarity=p[train], groups=topic[train])
    acc_ttpd = ttpd.score(X[test], y[test])
    aff = train & (p == 1)
    lr = LogisticProbe(C=1.0).fit(X[aff], y[aff])
    neg_test = test & (p == 0)
    acc_lr_neg = lr.score(X[neg_test], y[neg_test])
    assert acc_ttpd >= 0.9, acc_ttpd
    assert ttpd.score(X[neg_test], y[neg_test]) >= 0.9
    # the failure TTPD exists for: an affirmative-only LR probe reads negated statements backwards
    assert acc_lr_neg <= 0.5, acc_lr_neg


def test_ttpd_without_polarity_reduces_to_general_direction_and_says_so():
    X, y, p, topic, t_G = planted(seed=2)
    aff = p == 1
    probe = TTPDProbe().fit(X[aff], y[aff], groups=topic[aff])
    assert "one polarity only" in probe.fit_info_["polarity"]
    assert probe.polarity_direction_ is None
    assert probe.score(X[aff], y[aff]) >= 0.9


def test_ttpd_centring_unseen_topics_removes_their_offset_along_tG():
    X, y, p, topic, _ = planted(seed=4, offset_along_tG=3.0)
    topic_id = np.array([int(t.split("-")[0]) for t in topic])
    train, test = topic_id < 3, topic_id >= 3
    ttpd = TTPDProbe().fit(X[train], y[train], polarity=p[train], groups=topic[train])
    raw = ttpd.score(X[test], y[test])
    centred = ttpd.score(X[test], y[test], groups=topic[test])
    # the read-out is the paper's (its threshold is fitted on raw, uncentred training topics), so centring the
    # test topics removes their offsets but not the training topics' spread: it helps, it does not make it perfect
    # (0.918 measured against 0.95 with the earlier, non-paper read-out on centred features)
    assert centred > raw + 0.05, (raw, centred)


def test_ttpd_save_load_round_trip(tmp_path):
    from probes.base import load

    X, y, p, topic, _ = planted(seed=3, n_per=40)
    probe = TTPDProbe().fit(X, y, polarity=p, groups=topic)
    probe.save(tmp_path / "ttpd", meta={"layer": 3})
    back = load(tmp_path / "ttpd")
    assert isinstance(back, TTPDProbe)
    assert torch.allclose(back.decision_function(X), probe.decision_function(X), atol=1e-5)
    assert torch.allclose(back.t_G_, probe.t_G_)


def test_polarity_names_and_bad_values():
    assert as_polarity(["affirmative", "negated", 1, -1, 0], 5).tolist() == [1, 0, 1, 0, 0]
    with pytest.raises(ProbeError, match="polarity\\[1\\]"):
        as_polarity([1, 2], 2)
    with pytest.raises(ProbeError, match="one polarity per statement"):
        as_polarity([1], 2)
