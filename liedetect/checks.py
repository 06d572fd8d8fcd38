"""Checks that catch runs whose numbers would be nonsense; each returns a number, the CLI turns it into a warning."""

from __future__ import annotations

from typing import Any, Optional, Sequence


def unknown_token_rate(tokenizer: Any, texts: Sequence[str], limit: int = 500) -> float:
    """Fraction of the tokens of (the first `limit`) `texts` that are the tokenizer's unknown token (0 when it has none)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not texts:
        return 0.0
    ids = tokenizer(list(texts[:limit]), add_special_tokens=False)["input_ids"]
    total = sum(len(row) for row in ids)
    return sum(row.count(unk) for row in ids) / total if total else 0.0


def same_training_data(meta: dict, fingerprint: Optional[str]) -> bool:
    """Whether data with `fingerprint` is the data a probe/detector recorded as its training data."""
    trained = (meta or {}).get("dataset_fingerprint")
    return bool(trained) and trained == fingerprint
