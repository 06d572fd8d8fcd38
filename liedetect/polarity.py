"""Polarity for TTPD: which statements are affirmative and which negated, from a column or a set's `neg_` twin.

TTPD (probes.ttpd) separates a general truth direction from a polarity-sensitive one, so it needs statements of
both polarities and the topic each came from. A set brings them in one of two ways:
- a ``polarity`` column (affirmative/negated, 1/0 or +1/-1), with an optional ``topic`` column;
- the Truth_is_Universal layout: ``cities.csv`` and ``neg_cities.csv`` side by side. Either file names the pair;
  each file is one topic, centred on its own mean as in the paper's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from liedetect.datasets import StatementDataset, load_statements
from liedetect.errors import DataError
from probes.errors import ProbeError
from probes.ttpd import as_polarity

NEG_PREFIX = "neg_"


def negated_twin(path: Union[str, Path]) -> Path:
    """The other file of a Truth_is_Universal pair: neg_NAME for NAME, NAME for neg_NAME (it may not exist)."""
    p = Path(path)
    stem = p.stem
    other = stem[len(NEG_PREFIX):] if stem.startswith(NEG_PREFIX) else NEG_PREFIX + stem
    return p.with_name(other + p.suffix)


def _tagged(data: StatementDataset, polarity: int) -> StatementDataset:
    extra = {k: list(v) for k, v in data.extra.items()}
    extra["polarity"] = [polarity] * len(data)
    extra["topic"] = [data.name] * len(data)
    return StatementDataset(list(data.statements), data.labels, data.name, extra)


def _concat(a: StatementDataset, b: StatementDataset, name: str) -> StatementDataset:
    keys = [k for k in a.extra if k in b.extra]
    return StatementDataset(a.statements + b.statements, np.concatenate([a.labels, b.labels]), name,
                            {k: list(a.extra[k]) + list(b.extra[k]) for k in keys})


def with_polarity(dataset: StatementDataset, source: Union[str, Path], limit: Optional[int] = None,
                  seed: int = 0) -> StatementDataset:
    """`dataset` with `polarity` (1 affirmative, 0 negated) and `topic` columns: from its own polarity column, or
    joined with its neg_ twin read from beside `source` (sampled to `limit` rows like the first); else DataError."""
    if "polarity" in dataset.extra:
        try:
            pol = as_polarity(dataset.extra["polarity"], len(dataset))
        except ProbeError as exc:
            raise DataError(f"{source}: {exc}") from None
        extra = {**dataset.extra, "polarity": pol.tolist()}
        extra.setdefault("topic", [dataset.name] * len(dataset))
        out = StatementDataset(list(dataset.statements), dataset.labels, dataset.name, extra)
    else:
        twin = negated_twin(source)
        if not (Path(source).is_file() and twin.is_file()):
            raise DataError(f"TTPD needs affirmative and negated statements: {source} has no 'polarity' column and no "
                            f"negated twin {twin.name} beside it; add a polarity column (affirmative/negated) or put "
                            f"both files of the pair side by side.")
        other = load_statements(twin)
        other = other.sample(limit, seed) if limit else other
        negated = Path(source).stem.startswith(NEG_PREFIX)
        aff, neg = (other, dataset) if negated else (dataset, other)
        out = _concat(_tagged(aff, 1), _tagged(neg, 0), f"{aff.name}+{neg.name}")
    if len(set(out.extra["polarity"])) < 2:
        raise DataError(f"{source} holds statements of one polarity only; TTPD needs affirmative and negated ones.")
    return out
