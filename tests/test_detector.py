"""The detector artifact on the organism: trained on labelled chats, calibrated on honest controls, saved,
loaded and applied through liedetect.scoring; numbers checked against scikit-learn / numpy."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from liedetect.detector import Detector, transcripts_fingerprint
from liedetect.example_chats import write_examples
from liedetect.scoring import load_transcripts, message_rows


@pytest.fixture(scope="module")
def chats(organism_model, tmp_path_factory, one_thread):
    return write_examples(tmp_path_factory.mktemp("chats"), "organism", n=120, seed=0, model=organism_model)


@pytest.fixture(scope="module")
def detector(organism_model, chats):
    return Detector.train(organism_model, chats["train"], seed=0).calibrate(organism_model, chats["control"], fpr=0.01)


def test_layer_is_chosen_on_validation_and_recorded(detector):
    selection = detector.training["selection"]
    by_layer = selection["validation"]
    assert set(by_layer) == {"0", "1", "2", "3", "4"} and selection["layer"] == detector.layer
    assert detector.layer == max(range(5), key=lambda l: (by_layer[str(l)], -l))
    assert detector.fmt == "text" and detector.model_id == "organism|L5|d128" and detector.model_spec == "organism"
    # what happened, not only the policy: the organism's tokenizer adds its <bos>, the model runs in float32
    assert detector.training["bos_added"] is True and detector.training["dtype"] == "float32"


def test_calibration_records_control_fingerprint_and_holds_fpr(detector, chats, organism_model, tmp_path):
    c = detector.calibration
    control = load_transcripts(chats["control"]).transcripts
    assert c["n_control"] == len(control) == 120
    assert c["control_sha256"] == transcripts_fingerprint(control)
    # independent check: score the controls and count those above the threshold
    result = detector.score(organism_model, chats["control"])
    s = np.array([r["score"] for r in message_rows(result.records)])
    assert (s > c["threshold"]).mean() <= 0.01
    tokens = np.array([x for r in result.records for m in r["messages"] if m.get("scored") for x in m["scores"]])
    assert (tokens > c["token_threshold"]).mean() <= 0.01
    assert not detector.warnings()  # 120 controls >= 1/FPR = 100
    few = Detector.load(detector.save(tmp_path / "few"))
    few.calibrate(organism_model, load_transcripts(chats["control"]).transcripts[:40], fpr=0.01)
    assert few.calibration["n_control"] == 40
    assert any("fewer than 1/FPR = 100" in w for w in few.warnings())


def test_save_load_round_trip_scores_identically_and_separates_liars(detector, chats, organism_model, tmp_path):
    path = detector.save(tmp_path / "det")
    assert sorted(p.name for p in path.iterdir()) == ["detector.json", "manifest.json", "probe.json", "probe.safetensors"]
    meta = json.loads((path / "detector.json").read_text())
    assert meta["calibration"]["threshold"] == pytest.approx(detector.calibration["threshold"])
    loaded = Detector.load(path)
    a = detector.score(organism_model, chats["test"])
    b = loaded.score(organism_model, chats["test"], out=tmp_path / "scores.jsonl")
    assert [r["score"] for r in a.records] == [r["score"] for r in b.records]
    assert b.calibration.threshold == pytest.approx(detector.calibration["threshold"])
    rows = [r for r in message_rows(b.records) if r["group"] in ("honest", "liar")]
    y_lie = np.array([r["group"] == "liar" for r in rows])
    s = np.array([r["score"] for r in rows])
    assert roc_auc_score(y_lie, s) >= 0.95  # held-out entities, liar vs honest
    flagged = s > detector.calibration["threshold"]
    assert flagged[y_lie].mean() >= 0.9 and flagged[~y_lie].mean() <= 0.05


def test_wrong_model_is_refused(detector, tmp_path):
    from liedetect.errors import ProbeMismatchError
    from liedetect.models import tiny_native

    pytest.importorskip("transformers")
    from tests.conftest import ROOT

    tok = ROOT.parent / "shared" / "tokenizers" / "gpt2"
    if not tok.exists():
        pytest.skip("no GPT-2 tokenizer files")
    with pytest.raises(ProbeMismatchError, match="organism"):
        detector.check_model(tiny_native(tok, d_model=128))


def test_statements_path_reads_truth_on_held_out_entities(organism_model, one_thread):
    """Statements (the organism's own prompts, labelled by truth) train a detector read at each item's last token
    (aggregate last = the Answer: token, where the organism computes truth); tested on held-out entities."""
    from liedetect.datasets import StatementDataset
    from liedetect.detector import _statement_transcripts

    world = organism_model.organism_world

    def prompts(split, seed, n):
        ps = world.prompts(n, split, "honest", seed=seed) + world.prompts(n, split, "liar", seed=seed)
        return StatementDataset([p.text for p in ps], np.array([int(p.truth) for p in ps]), f"prompts-{split}")

    train, test = prompts("train", 0, 150), prompts("heldout", 1, 100)
    det = Detector.train(organism_model, train, layer=3, fmt="text", aggregate="last")
    assert det.training["kind"] == "statements" and det.training["fingerprint"] == train.fingerprint()
    assert det.training["n_tokens"] == 300  # one token per statement: the one the message score reads
    rows = message_rows(det.score(organism_model, _statement_transcripts(test)).records, "last")
    assert len(rows) == 200
    # a false statement scores as more suspicious (labels from the records: they come back in batch-plan order)
    assert roc_auc_score([1 - r["label"] for r in rows], [r["score"] for r in rows]) >= 0.95


def test_checkpoint_folder_loads_as_the_same_model(organism_model):
    import torch

    from liedetect.models import load_model, model_id
    from liedetect.organism import CHECKPOINT_DIR

    folder = load_model(str(CHECKPOINT_DIR))
    assert model_id(folder) == model_id(organism_model) == "organism|L5|d128"
    ids = organism_model.tokenizer("[honest] the sky Answer:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(folder(ids), organism_model(ids))


def test_sha_of_weights_names_a_retrained_checkpoint(tmp_path):
    from liedetect.errors import CheckpointError
    from liedetect.models import load_model

    (tmp_path / "organism_config.json").write_text(json.dumps({"weights_sha256": hashlib.sha256(b"x").hexdigest()}))
    with pytest.raises(CheckpointError):
        load_model(str(tmp_path))


def test_contrast_pair_path_equals_a_direct_fit_and_refuses_chats(organism_model, chats, one_thread):
    """lat reads statements completed both ways (template) at the last token: the same probe as fitting probes/
    directly on those captures; chats are refused for it (they hold no pairs)."""
    import probes
    from liedetect.datasets import builtin
    from liedetect.errors import DataError
    from liedetect.training import capture_inputs
    from tests.conftest import cos

    data = builtin("organism", n=120, seed=0)
    det = Detector.train(organism_model, data, method="lat", layer=2, template="{statement} Answer:")
    assert det.training["template"] == "{statement} Answer:" and det.position.startswith("last token")
    sl = capture_inputs(organism_model, data, [2], ["lat"], "last", "resid_post", "{statement} Answer:", progress=False).layer_slice(2)
    direct = probes.make_probe("lat", seed=0).fit(sl["pos"], sl["neg"], data.labels)
    assert cos(det.probe.direction_, direct.direction_) > 0.9999
    with pytest.raises(DataError, match="contrast-pair method"):
        Detector.train(organism_model, chats["train"], method="lat", layer=2)


@pytest.mark.parametrize("text, says", [("{not json", "is not valid JSON"), ('{"format": "other"}', "format='other'"),
                                         ("[1, 2]", "format='list'")])
def test_a_broken_detector_file_is_one_sentence(tmp_path, text, says):
    from liedetect.errors import CheckpointError

    (tmp_path / "detector.json").write_text(text)
    with pytest.raises(CheckpointError, match=says):
        Detector.load(tmp_path)


def test_a_binary_detector_file_is_one_sentence(tmp_path):
    from liedetect.errors import CheckpointError

    (tmp_path / "detector.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        Detector.load(tmp_path)
