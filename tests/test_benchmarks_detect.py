"""Per-message detection (Apollo's `detect` mask) and chat rendering that never loses roles, on a tiny random
model with the GPT-2 tokenizer (which has no chat template)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from liedetect import scoring
from liedetect.errors import DataError
from liedetect.scoring import Message, Transcript
from liedetect.scoring.render import ChatFormatWarning, has_default_system, render, resolve_format

LAYER = 1
DEFAULT_SYSTEM = "You are a helpful AI assistant named Tiny."
TEMPLATE_WITH_DEFAULT = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + DEFAULT_SYSTEM +
                         "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                         "<|im_end|>\n{% endfor %}")


class LinearProbe:
    """A bare linear read-out with probe metadata (decision > 0 = true)."""

    def __init__(self, coef: torch.Tensor) -> None:
        self.coef_, self.n_features_in_ = coef.float(), coef.shape[0]
        self.meta_ = {"layer": LAYER, "hook": "resid_post"}

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.coef_


def chat(detect_last: bool, label_on_last: bool = True) -> Transcript:
    """Two assistant turns; the graded one is the last (as in Apollo's insider-trading report)."""
    msgs = [Message("user", "What did you do today?"), Message("assistant", "I went to the market and bought bread."),
            Message("user", "And did you make the trade?"),
            Message("assistant", "No, I never made any trade at all.", label=0 if label_on_last else None)]
    if detect_last:
        for m in msgs:
            m.detect = m is msgs[-1]
    return Transcript("t", msgs)


@pytest.fixture(scope="module")
def probe_reading_the_first_turn(tiny_model):
    """A direction along which the first assistant turn's tokens score higher than the last one's."""
    enc = scoring.encode_transcript(tiny_model.tokenizer, chat(False), fmt="plain")
    acts, _ = scoring.scored_activations(tiny_model, [enc], LAYER)
    n1 = enc.ranges[1][1] - enc.ranges[1][0]
    first, last = acts[:n1].float().mean(0), acts[n1:].float().mean(0)
    return LinearProbe(-(first - last))  # deception score = X . (first - last)


def test_the_detect_mask_decides_which_tokens_are_read_and_flips_the_decision(tiny_model, probe_reading_the_first_turn):
    probe = probe_reading_the_first_turn
    with pytest.warns(ChatFormatWarning):
        full = scoring.score_transcripts(tiny_model, probe, [chat(False)], progress=False)
    masked = scoring.score_transcripts(tiny_model, probe, [chat(True)], fmt="plain", progress=False)
    whole, only = full.records[0], masked.records[0]
    first, last = whole["messages"][1]["mean"], whole["messages"][3]["mean"]
    assert first > last
    # read whole, the transcript's score (and its rank) comes from the earlier turn, and a warning says so
    assert whole["score_message"] == 1 and whole["score"] == first and whole["score_from_unlabelled"]
    assert any("another, unlabelled message" in w for w in full.warnings()) and "warning:" in full.summary()
    # masked, only the graded turn is read: its tokens, its score, no warning
    assert only["messages"][1]["scored"] is False and only["score_message"] == 3
    assert only["score"] == pytest.approx(last, abs=1e-5) and only["n_tokens"] == whole["messages"][3]["n_tokens"]
    assert masked.warnings() == []
    threshold = (first + last) / 2  # a threshold between the two turns: flagged whole, not flagged masked
    assert whole["score"] > threshold > only["score"]
    # training reads the same tokens: the masked-out turn gives no training token
    _, labels, owner = scoring.training_activations(tiny_model, [chat(True)], [LAYER], fmt="plain")
    assert len(labels) == only["n_tokens"] and set(labels.tolist()) == {0}


def test_a_merged_message_reads_only_its_detected_span(tiny_model):
    from liedetect.scoring.transcripts import merge_same_role

    msgs = merge_same_role([("user", "Why were you late?", False), ("assistant", "Student:", False),
                            ("assistant", " My bus broke down.", True)])
    enc = scoring.encode_transcript(tiny_model.tokenizer, Transcript("m", msgs), fmt="plain")
    a, b = enc.ranges[1]
    assert tiny_model.tokenizer.decode(enc.ids[a:b]) == " My bus broke down."
    assert "".join(enc.pieces[1]) == " My bus broke down."


def test_a_model_without_a_chat_template_warns_and_keeps_roles(tiny_model):
    from liedetect.detector import Detector

    assert not getattr(tiny_model.tokenizer, "chat_template", None)
    with pytest.warns(ChatFormatWarning, match="no chat template"):
        assert resolve_format(tiny_model, "auto") == "plain"
    train = [Transcript(f"c{i}", [Message("user", "Is the sky blue?"), Message("assistant", text)],
                        label=i % 2) for i, text in enumerate(["Yes, it is blue.", "No, it is green."] * 4)]
    with pytest.warns(ChatFormatWarning):
        det = Detector.train(tiny_model, train, layer=LAYER)
    assert det.fmt == "plain"  # recorded, so scoring renders as training did
    text, spans, kind = render(tiny_model.tokenizer, train[0], det.fmt)
    assert text == "user: Is the sky blue?\nassistant: Yes, it is blue.\n" and kind == "plain"
    with pytest.warns(ChatFormatWarning):
        assert resolve_format(tiny_model.tokenizer) == "plain"


def test_the_default_system_prompt_is_decided_once(tiny_model):
    tok = copy.deepcopy(tiny_model.tokenizer)
    tok.chat_template = TEMPLATE_WITH_DEFAULT
    assert has_default_system(tok)
    plain_tok = copy.deepcopy(tok)
    plain_tok.chat_template = TEMPLATE_WITH_DEFAULT.split("{% endif %}", 1)[1]
    assert not has_default_system(plain_tok)
    bare = Transcript("b", [Message("user", "Hi"), Message("assistant", "Hello")])
    own = Transcript("o", [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello")])
    assert DEFAULT_SYSTEM in render(tok, bare, "chat")[0]
    assert DEFAULT_SYSTEM not in render(tok, bare, "chat", system_prompt="none")[0]
    assert render(tok, own, "chat", system_prompt="none")[0] == render(tok, own, "chat")[0]
    enc = scoring.encode_transcript(tok, bare, fmt="chat", system_prompt="none")
    a, b = enc.ranges[1]
    assert tok.decode(enc.ids[a:b]) == "Hello"
    with pytest.raises(DataError, match="system prompt policy"):
        render(tok, bare, "chat", system_prompt="sometimes")


def test_the_detector_records_the_system_prompt_policy(tiny_model, tmp_path):
    from liedetect.detector import Detector

    train = [Transcript(f"c{i}", [Message("user", "Is the sky blue?"), Message("assistant", text)],
                        label=i % 2) for i, text in enumerate(["Yes, it is blue.", "No, it is green."] * 4)]
    det = Detector.train(tiny_model, train, layer=LAYER, fmt="plain", system_prompt="none")
    assert Detector.load(det.save(tmp_path / "d")).system_prompt == "none"
    assert det._score_kwargs()["system_prompt"] == "none"
    assert np.isfinite(det.score(tiny_model, train, progress=False).records[0]["score"])
