"""`--engine ray` gives byte-identical output to the local engine (local Ray, 2 CPUs, started here)."""

from __future__ import annotations

import functools

import pytest

from liedetect import scoring
from liedetect.models import tiny_native

from conftest import GPT2_DIR
from test_scoring import chats

pytestmark = pytest.mark.slow


def test_ray_engine_matches_local_engine(ray_local, tiny_model, tmp_path):
    import numpy as np
    import torch
    from probes import MassMeanProbe

    X = torch.randn(40, tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    probe = MassMeanProbe().fit(X, np.arange(40) % 2)  # a real probes class: the actors can import it
    probe.meta_ = {"layer": 1, "hook": "resid_post"}
    ts = chats(30, seed=9)
    local = scoring.score_transcripts(tiny_model, probe, ts, out=tmp_path / "local.jsonl", batch_size=4, progress=False)
    options = {"model_factory": functools.partial(tiny_native, GPT2_DIR, seed=0), "num_actors": 2}
    remote = scoring.score_transcripts(tiny_model, probe, ts, out=tmp_path / "ray.jsonl", batch_size=4, engine="ray",
                                       ray_options=options, progress=False)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert remote.records == local.records and len(remote.records) == 30
    assert remote.metrics.auroc == local.metrics.auroc
