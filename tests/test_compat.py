"""Known-broken upstream combinations are refused with a sentence, not run into garbage."""

import pytest

from liedetect import compat
from liedetect.compat import IncompatibleVersionsError, kv_cache_problem


def test_known_bad_kv_cache_combination_is_named():
    msg = kv_cache_problem("5.24.0", "4.3.0")
    assert msg is not None and "5.24.0" in msg and "4.3.0" in msg and "transformers<5.24" in msg
    assert kv_cache_problem("5.25.1", "4.2.0") is not None


def test_working_combinations_pass():
    assert kv_cache_problem("5.23.0", "4.3.0") is None
    assert kv_cache_problem("4.57.6", "4.3.0") is None
    assert kv_cache_problem("5.24.0", "4.4.0") is None  # a newer lens release is not assumed broken


def test_installed_lock_is_not_the_bad_combination():
    assert kv_cache_problem() is None


def test_generate_refuses_bad_combination(tiny_model, monkeypatch):
    from liedetect.steering import generate

    real = compat.kv_cache_problem
    monkeypatch.setattr(compat, "kv_cache_problem", lambda: real("5.24.0", "4.3.0"))
    with pytest.raises(IncompatibleVersionsError, match="wrong tokens"):
        generate(tiny_model, "The capital of France is", max_new_tokens=3)
