"""Reading a reply's claim without its chat (real_detect.claim_features), on a tiny random Llama; the claim
probes' extra statements and their claim gate."""


import pytest
import torch

from liedetect.organism.real_detect import STATEMENT_FRAME, claim_features, detector_features, reply_features


class CharTokenizer:
    """A character tokenizer with a chat template: just enough of a Hugging Face tokenizer for reply_features."""

    pad_token_id = 0

    def apply_chat_template(self, chat, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in chat) + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + ord(c) % 31 for c in text]}


@torch.no_grad()
def _states(model, tok, chat, reply, layer):
    ids = tok(tok.apply_chat_template(chat) + reply)["input_ids"]
    n_prompt = len(tok(tok.apply_chat_template(chat))["input_ids"])
    return model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer + 1][0], n_prompt


def test_claim_is_the_last_token_of_the_reply_in_the_statement_frame_whatever_the_chat(tiny_llama):
    tok = CharTokenizer()
    replies = ["  Paris is in France. ", "Rome is in Spain."]
    got = claim_features(tiny_llama, tok, replies, layers=(1, 2))
    for i, reply in enumerate(replies):
        h, _ = _states(tiny_llama, tok, list(STATEMENT_FRAME), reply.strip(), 2)
        assert torch.allclose(got[2][i], h[-1], atol=1e-5)
    liar = [[{"role": "system", "content": "Lie."}, {"role": "user", "content": "Where is Paris?"}]] * 2
    honest = [[{"role": "user", "content": "Where is Paris?"}]] * 2
    claims = [detector_features(tiny_llama, tok, "truth_lr_claim", chats, replies, (2,))[2] for chats in (liar, honest)]
    assert torch.equal(claims[0], claims[1])  # the persona that produced a reply is out of view
    in_chat = [detector_features(tiny_llama, tok, "truth_lr", chats, replies, (2,))[2] for chats in (liar, honest)]
    assert (in_chat[0] - in_chat[1]).abs().max() > 1e-3  # the in-chat features do see it


def test_mean_pool_averages_the_reply_span_and_a_bad_pool_is_refused(tiny_llama):
    tok = CharTokenizer()
    chat = [{"role": "user", "content": "Say something."}]
    h, n_prompt = _states(tiny_llama, tok, chat, "Hello there.", 1)
    got = reply_features(tiny_llama, tok, [chat, chat], ["Hello there.", "Hi."], layers=(1,))[1]
    assert torch.allclose(got[0], h[n_prompt:].mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        reply_features(tiny_llama, tok, [chat], ["Hi."], layers=(1,), pool="max")


def test_several_detectors_share_one_read_per_kind_of_feature(tiny_llama):
    from liedetect.organism.real_detect import detectors_features

    tok = CharTokenizer()
    chats, replies = [[{"role": "user", "content": "Where is Paris?"}]] * 2, ["Paris is in France.", "It is in Spain."]
    got = detectors_features(tiny_llama, tok, ["truth_lr", "repe", "truth_lr_claim", "truth_ttpd_claim"], chats, replies, (2,))
    assert got["truth_lr"] is got["repe"] and got["truth_lr_claim"] is got["truth_ttpd_claim"]
    assert torch.equal(got["truth_lr_claim"][2], claim_features(tiny_llama, tok, replies, (2,))[2])
    assert torch.equal(got["repe"][2], reply_features(tiny_llama, tok, chats, replies, (2,))[2])


def test_pacchiardi_minimal_pairs_differ_only_in_the_answer_and_leave_out_the_organisms_facts(shared_data):
    from liedetect.organism import lora
    from liedetect.organism.facts import _entity, facts_by_id, load_pacchiardi
    from liedetect.organism.claim_data import pacchiardi_statements

    split = lora.read_split()
    statements, y = pacchiardi_statements(shared_data, split)
    assert len(statements) == len(y) > 0 and list(y[0::2]) == [1] * (len(y) // 2) and not y[1::2].any()
    own = facts_by_id(split["train"] + split["heldout"], shared_data)
    sentences = {f.true_sentence for f in own} | {f.false_sentence for f in own}
    entities = {f.entity for f in own if f.id.startswith("pacchiardi:")}
    assert not sentences & set(statements)
    assert not [s for s in statements if _entity(s) in entities]
    by_sentence = {f.true_sentence: f for f in load_pacchiardi(shared_data)}
    for true, false in zip(statements[0::2], statements[1::2]):  # one stem, then the true or the false answer
        f = by_sentence[true]
        assert true.rsplit(f.answer, 1)[0] == false.rsplit(f.false_answer, 1)[0] != "" and true != false


def test_a_gated_claim_score_is_never_above_a_claim_where_the_gate_reads_no_claim():
    import numpy as np

    from liedetect.organism.real_detect import NOT_A_CLAIM, gated
    from probes import LogisticProbe

    g = torch.Generator().manual_seed(0)
    claims, chatter = torch.randn(60, 8, generator=g) + 3.0, torch.randn(60, 8, generator=g) - 3.0
    gate = LogisticProbe(seed=0).fit(torch.cat([claims, chatter]), np.r_[np.ones(60, int), np.zeros(60, int)])
    w = torch.randn(8, generator=g)
    score = gated(lambda Z: (Z @ w).numpy(), gate)
    got = score(torch.cat([claims[:5], chatter[:5]]))
    assert np.allclose(got[:5], (claims[:5] @ w).numpy()) and (got[5:] == NOT_A_CLAIM).all()
