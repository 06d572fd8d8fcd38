"""Persistence (safetensors + JSON, bit-identical under a seed) and bad input (one sentence each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import probes
from probes import ProbeError
from probes.synthetic import planted_clouds, planted_pairs

META = {"model_id": "tiny-native-seed0", "hook": "blocks.2.hook_resid_post", "layer": 2, "position": "last", "d_model": 32}
FAST = {"ccs": {"n_steps": 100, "n_restarts": 3}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return planted_clouds(n=300, d=32, seed=0), planted_pairs(n=200, d=32, seed=0)


def fitted(name, data, seed=0):
    c, p = data
    probe = probes.make_probe(name, seed=seed, **FAST.get(name, {}))
    return probe.fit(p.X, p.X_neg, p.y) if probe.paired else probe.fit(c.X, c.y)


@pytest.mark.parametrize("name", list(probes.METHODS))
def test_same_seed_gives_bit_identical_files(tmp_path, data, name):
    a = fitted(name, data).save(tmp_path / "a" / "probe", meta=META)
    b = fitted(name, data).save(tmp_path / "b" / "probe", meta=META)
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".safetensors").read_bytes() == b.with_suffix(".safetensors").read_bytes()


@pytest.mark.parametrize("name", ["ccs", "random"])
def test_a_different_seed_gives_a_different_probe(tmp_path, data, name):
    a = fitted(name, data, seed=0).save(tmp_path / "a", meta=META)
    b = fitted(name, data, seed=1).save(tmp_path / "b", meta=META)
    assert a.with_suffix(".safetensors").read_bytes() != b.with_suffix(".safetensors").read_bytes()


@pytest.mark.parametrize("name", list(probes.METHODS))
def test_save_load_gives_identical_predictions(tmp_path, data, name):
    c, p = data
    probe = fitted(name, data)
    probe.save(tmp_path / "probe", meta=META, metrics={"accuracy": 0.5})
    loaded = probes.load(tmp_path / "probe.json", expect={"model_id": META["model_id"], "layer": 2})
    assert type(loaded) is type(probe) and loaded.get_params() == probe.get_params()
    X = p.X if probe.paired else c.X
    assert torch.equal(loaded.predict_proba(X), probe.predict_proba(X))
    assert torch.equal(loaded.direction_, probe.direction_)
    if probe.paired:
        assert torch.equal(loaded.predict_proba_pairs(p.X, p.X_neg), probe.predict_proba_pairs(p.X, p.X_neg))
    side = json.loads((tmp_path / "probe.json").read_text())
    assert side["method"] == probe.method and side["meta"] == META and side["metrics"] == {"accuracy": 0.5}
    assert len(side["train_data_sha256"]) == 64 and side["library"]["liedetect"]
    assert loaded.meta_["hook"] == META["hook"]


def test_sidecar_records_normalisation_and_fit_details(tmp_path, data):
    c, _ = data
    probe = probes.LogisticProbe(C=1.0).fit(c.X, c.y)
    probe.save(tmp_path / "lr", meta=META)
    side = json.loads((tmp_path / "lr.json").read_text())
    assert side["normalisation"] == {"mean": True, "std": True}
    assert side["params"]["C"] == 1.0 and side["fit_info"]["C"] == 1.0
    loaded = probes.load(tmp_path / "lr")
    torch.testing.assert_close(loaded.mean_, c.X.mean(0))


def test_loading_into_another_model_or_layer_names_both(tmp_path, data):
    fitted("mass-mean", data).save(tmp_path / "p", meta=META)
    with pytest.raises(ProbeError) as err:
        probes.load(tmp_path / "p", expect={"model_id": "gpt2", "layer": 5, "hook": META["hook"]})
    msg = str(err.value)
    assert "layer=2" in msg and "layer=5" in msg and "tiny-native-seed0" in msg and "gpt2" in msg
    assert "hook" not in msg.split("being used with")[1].split(";")[0]  # only the mismatching keys
    with pytest.raises(ProbeError, match="d_model=32"):
        probes.load(tmp_path / "p", expect={"d_model": 64})


def test_missing_and_corrupt_files_are_probe_errors(tmp_path, data):
    with pytest.raises(ProbeError, match="No saved probe"):
        probes.load(tmp_path / "nothing")
    fitted("lr", data).save(tmp_path / "p", meta=META)
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(ProbeError, match="not valid JSON"):
        probes.load(tmp_path / "p")


def test_meta_width_must_match_the_probe(tmp_path, data):
    with pytest.raises(ProbeError, match="d_model=64"):
        fitted("lr", data).save(tmp_path / "p", meta={**META, "d_model": 64})


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith(".") and len(msg) < 300
    return msg


X = torch.randn(20, 8)
Y = np.arange(20) % 2


@pytest.mark.parametrize("name", ["lr", "mass-mean", "pca", "random"])
def test_bad_input_to_supervised_and_unpaired_probes(name):
    probe = probes.make_probe(name)
    with pytest.raises(ProbeError) as e:
        probe.fit(X, np.ones(20, dtype=int))
    assert "only class 1" in one_sentence(e)
    bad = X.clone(); bad[3, 2] = float("nan")
    with pytest.raises(ProbeError) as e:
        probe.fit(bad, Y)
    assert "NaN or infinite" in one_sentence(e) and "row 3" in str(e.value)
    bad[3, 2] = float("inf")
    with pytest.raises(ProbeError, match="NaN or infinite"):
        probe.fit(bad, Y)
    with pytest.raises(ProbeError) as e:
        probe.fit(X[:1], Y[:1])
    assert "at least 2" in one_sentence(e)
    with pytest.raises(ProbeError) as e:
        probe.fit(X, Y[:10])
    assert "10 labels" in one_sentence(e)
    with pytest.raises(ProbeError) as e:
        probe.fit(X[0], Y)
    assert "2-D" in one_sentence(e)
    with pytest.raises(ProbeError, match="only 0 .false. and 1"):
        probe.fit(X, np.arange(20))
    probe.fit(X, Y)
    with pytest.raises(ProbeError) as e:
        probe.predict_proba(torch.randn(5, 9))
    assert "9 features" in one_sentence(e) and "fitted on 8" in str(e.value)


@pytest.mark.parametrize("name", ["lat", "ccs"])
def test_bad_input_to_contrast_probes(name):
    probe = probes.make_probe(name, **FAST.get(name, {}))
    with pytest.raises(ProbeError) as e:
        probe.fit(X, X[:, :7])
    assert "align row by row" in one_sentence(e)
    with pytest.raises(ProbeError) as e:
        probe.fit(X, Y)
    assert "contrast probe" in one_sentence(e)
    with pytest.raises(ProbeError, match="only class 0"):
        probe.fit(X, X + 1, np.zeros(20))
    with pytest.raises(ProbeError, match="at least 2"):
        probe.fit(X[:1], X[:1])
    nan = X.clone(); nan[0, 0] = float("nan")
    with pytest.raises(ProbeError, match="X_neg contains 1 NaN"):
        probe.fit(X, nan)
    probe.fit(X, X + torch.randn(20, 8), Y)
    with pytest.raises(ProbeError, match="fitted on 8"):
        probe.predict_proba_pairs(torch.randn(3, 4), torch.randn(3, 4))


def test_unfitted_probe_says_what_to_do():
    with pytest.raises(ProbeError, match="not fitted yet"):
        probes.LATProbe().predict_proba(X)
    with pytest.raises(ProbeError, match="Unknown probe method"):
        probes.make_probe("svm")
