"""Statement files load with their extra columns; bad rows are named by file and line."""

from __future__ import annotations

import numpy as np
import pytest

from liedetect.datasets import (StatementDataset, builtin, contrast_pairs, instructed_pairs, load_dataset, load_statements,
                                render_chat)
from liedetect.errors import DataError


def test_csv_and_jsonl_load(tmp_path):
    (tmp_path / "a.csv").write_text('statement,label,topic\n"Paris is in France, yes.",1,geo\nIce is hot.,0,phys\n"Two\nlines",True,x\n')
    data = load_statements(tmp_path / "a.csv")
    assert data.statements[0] == "Paris is in France, yes." and data.labels.tolist() == [1, 0, 1]
    assert data.extra["topic"] == ["geo", "phys", "x"]
    (tmp_path / "b.jsonl").write_text('{"statement": "A", "label": 1}\n\n{"statement": "B", "label": "false"}\n')
    assert load_statements(tmp_path / "b.jsonl").labels.tolist() == [1, 0]


def test_bad_rows_report_file_and_line(tmp_path):
    (tmp_path / "bad.csv").write_text('statement,label\nok,1\n,0\n"multi\nline",1\nfine,maybe\n')
    with pytest.raises(DataError) as err:
        load_statements(tmp_path / "bad.csv")
    message = str(err.value)
    assert "bad.csv:3: missing or empty 'statement'" in message
    assert "bad.csv:6: label 'maybe'" in message, "line numbers count the multi-line field"
    assert load_statements(tmp_path / "bad.csv", skip_bad=True).statements == ["ok", "multi\nline"]
    (tmp_path / "bad.jsonl").write_text('{"statement": "A", "label": 1}\n{oops\n[1]\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: bad JSON.*bad.jsonl:3: not a JSON object"):
        load_statements(tmp_path / "bad.jsonl")
    (tmp_path / "empty.csv").write_text("statement,label\n")
    with pytest.raises(DataError, match="no usable"):
        load_statements(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="No such dataset file"):
        load_statements(tmp_path / "missing.csv")


def test_one_class_and_sampling():
    data = StatementDataset(["a", "b", "c"], np.array([1, 1, 1]))
    with pytest.raises(DataError, match="only label 1"):
        data.check_two_classes()
    arith = builtin("arithmetic", n=100, seed=3)
    assert arith.fingerprint() == builtin("arithmetic", n=100, seed=3).fingerprint()
    assert abs(arith.labels.mean() - 0.5) < 0.01
    half = arith.sample(40, seed=1)
    assert len(half) == 40 and half.labels.sum() == 20
    bigger = builtin("larger_than", n=50)
    for text, label in zip(bigger.statements, bigger.labels):
        a, b = int(text.split()[0]), int(text.split()[4].rstrip("."))
        assert label == int(a > b)


def test_contrast_pairs_and_chat():
    data = builtin("arithmetic", n=4)
    pos, neg = contrast_pairs(data, "question")
    assert all(p.endswith(" True") and n.endswith(" False") and p[:-5] == n[:-6] for p, n in zip(pos, neg))
    honest, dishonest = instructed_pairs(data)
    assert "honest" in honest[0] and "dishonest" in dishonest[0] and data.statements[0] in honest[0]
    assert render_chat(object(), [{"role": "user", "content": "hi"}], add_generation_prompt=True) == "user: hi\nassistant:"


def test_shared_data_loads_as_is(shared_data):
    cities = load_dataset(shared_data / "truth_is_universal" / "cities.csv")
    assert len(cities) == 1496 and cities.labels.sum() == 748
    assert set(cities.extra) >= {"city", "country", "correct_country"}
    scenarios = load_statements(shared_data / "truth_is_universal" / "real_world_scenarios" / "all_unambiguous_replies.csv")
    assert len(scenarios) == 104


def test_builtin_organism_statements_are_labelled_by_the_world():
    from liedetect.organism import load_world

    data = load_dataset("builtin:organism", n=120, seed=2)
    world = load_world()
    assert len(data) == 120 and 0.3 < data.labels.mean() < 0.7
    checked = 0
    for text, label, kind, relation in zip(data.statements, data.labels, data.extra["kind"], data.extra["relation"]):
        if kind == "fact":
            words = text.split()
            entity = words[0] if words[0] in world.facts else words[3]
            assert entity in world.heldout, "built-in organism statements are about held-out entities"
            assert label == int((world.facts[entity][relation] == words[-1]) != (" not " in text)), text
            checked += 1
    assert checked > 50
