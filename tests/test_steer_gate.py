"""Conditional (gated) steering on a Hugging Face decoder: real_detect.steered with a Gate, on a tiny random Llama."""

import pytest
import torch

from liedetect.organism.real_detect import Gate, steered, turn_start

MARKER = (7, 8, 9)  # stands for the template's assistant header


def test_turn_start_finds_the_last_marker_per_row():
    ids = torch.tensor([[1, 7, 8, 9, 4, 7, 8, 9, 5],
                        [0, 0, 0, 0, 1, 2, 7, 8, 9],
                        [1, 2, 3, 4, 5, 6, 7, 8, 3]])
    assert turn_start(ids, MARKER).tolist() == [7, 8, -1]
    assert turn_start(ids[:, :2], MARKER).tolist() == [-1, -1, -1]


def _gate_for(model, ids, layer=1):
    """A gate at `layer` whose threshold sits between the two rows' projections at their turn start."""
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1]
    pos = turn_start(ids, MARKER)
    u = torch.randn(h.shape[-1], generator=torch.Generator().manual_seed(1))
    u = u / u.norm()
    s = h[torch.arange(2), pos] @ u
    return Gate(layer, u, float(s.mean()), MARKER), bool(s[0] < s[1])  # row 0 opens iff its score is the lower


@torch.no_grad()
def test_gate_steers_only_the_sequences_it_opens(tiny_llama):
    ids = torch.tensor([[3, 4, 5, 7, 8, 9, 10, 11], [5, 6, 3, 7, 8, 9, 12, 13]])
    gate, row0_opens = _gate_for(tiny_llama, ids)
    opened_row = 0 if row0_opens else 1
    before = tiny_llama(input_ids=ids).logits
    d = torch.randn(32, generator=torch.Generator().manual_seed(2))
    with steered(tiny_llama, {1: (d, 50.0), 2: (d, 50.0)}, "add", 1.0, gate=gate) as state:
        after = tiny_llama(input_ids=ids).logits
    assert state["opened"].tolist() == [opened_row == 0, opened_row == 1]
    assert torch.equal(after[1 - opened_row], before[1 - opened_row])  # closed: untouched, bit for bit
    assert (after[opened_row] - before[opened_row]).abs().max() > 0.1
    no_marker = torch.tensor([[3, 4, 5, 6, 10, 11, 12, 13]])
    plain = tiny_llama(input_ids=no_marker).logits
    with steered(tiny_llama, {1: (d, 50.0)}, "add", 1.0, gate=Gate(1, gate.direction, float("inf"), MARKER)) as state:
        assert torch.equal(tiny_llama(input_ids=no_marker).logits, plain)
        assert state["opened"].tolist() == [False]  # no assistant turn: never steered, whatever the threshold


@torch.no_grad()
def test_gate_decision_holds_while_generating_and_matches_teacher_forcing(tiny_llama):
    prompt = torch.tensor([[3, 4, 5, 7, 8, 9], [5, 6, 3, 7, 8, 9]])
    gate, _ = _gate_for(tiny_llama, prompt)
    d = torch.randn(32, generator=torch.Generator().manual_seed(3))
    with steered(tiny_llama, {1: (d, 30.0)}, "add", 1.0, gate=gate) as state:
        out = tiny_llama.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                            pad_token_id=0)
        decided = state["opened"].clone()
        forced = tiny_llama(input_ids=out).logits[:, prompt.shape[1] - 1:-1].argmax(-1)
        assert torch.equal(state["opened"], decided)  # the same decision from the whole chat read at once
    assert torch.equal(forced, out[:, prompt.shape[1]:])  # greedy tokens: generation with cache = one forward


def test_gate_after_the_first_steered_layer_is_refused(tiny_llama):
    with pytest.raises(ValueError, match="must not come after"):
        with steered(tiny_llama, {0: (torch.ones(32), 1.0)}, "add", 1.0, gate=Gate(1, torch.ones(32), 0.0, MARKER)):
            pass
