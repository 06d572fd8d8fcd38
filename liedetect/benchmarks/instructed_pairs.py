"""RepE's true/false facts as instructed honest / dishonest pairs (Zou et al. 2023; Apollo's training recipe).

Each true fact becomes two chats: the user asks the model to pretend to be an honest (or a dishonest) person
making statements about the world, and the assistant states the fact. Only the fact's start is read: its last
five words are not (they belong to a later, undetected part of the same assistant message, as in Apollo's
recipe), so the probe reads the model while it is about to state something it was told to say honestly or
dishonestly. Facts of five words or fewer have no start to read and are counted as dropped.

The facts come from a CSV ``statement,label`` (RepE's ``data/facts/facts_true_false.csv``, Apollo's
``data/repe/true_false_facts.csv``): a file path, a folder holding one of those names (or ``repe/`` with one),
or the folder named by $LIEDETECT_DATA. Available as ``builtin:instructed-pairs`` (the facts from
$LIEDETECT_DATA) or ``builtin:instructed-pairs:PATH``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import List, Optional, Tuple, Union

from liedetect.errors import DataError
from liedetect.scoring.transcripts import Transcript, TranscriptSet, merge_same_role

NAME = "instructed-pairs"
DATA_ENV = "LIEDETECT_DATA"
FACT_FILES = ("facts_true_false.csv", "true_false_facts.csv")
UNREAD_WORDS = 5


def facts_path(where: Union[None, str, Path] = None) -> Path:
    """The facts CSV: `where` (a file or a folder holding it, directly or under repe/), else $LIEDETECT_DATA."""
    if where is None or not str(where):
        if not os.environ.get(DATA_ENV):
            raise DataError(f"builtin:{NAME} needs RepE's true/false facts: pass builtin:{NAME}:FACTS.csv or set "
                            f"${DATA_ENV} to a folder holding repe/facts_true_false.csv.")
        where = os.environ[DATA_ENV]
    path = Path(where).expanduser()
    if path.is_file():
        return path
    for folder in (path, path / "repe"):
        for name in FACT_FILES:
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"No RepE facts at {path} (looked for {' or '.join(FACT_FILES)} there and under repe/); pass "
                    f"the CSV of representation-engineering's data/facts or Apollo's data/repe.")


def read_facts(where: Union[None, str, Path] = None) -> Tuple[List[str], Counter]:
    """The true facts of the CSV, and the rows left out counted by reason (false facts, unreadable rows)."""
    from liedetect.datasets import _rows_csv, parse_label

    facts: List[str] = []
    dropped: Counter = Counter()
    for _line, row in _rows_csv(facts_path(where)):
        try:
            label = None if isinstance(row, Exception) else parse_label(row.get("label", ""))
        except ValueError:
            label = None
        text = row.get("statement") if isinstance(row, dict) else None
        if label is None or not isinstance(text, str) or not text.strip():
            dropped["unreadable row"] += 1
        elif label == 0:
            dropped["false fact (the pairs use true facts)"] += 1
        else:
            facts.append(text)
    return facts, dropped


def split_statement(statement: str, unread: int = UNREAD_WORDS) -> Tuple[str, str]:
    """(the part read, the last `unread` words) of a statement; the first part is empty for short statements."""
    words = statement.split(" ")
    if len(words) <= unread:
        return "", statement
    return " ".join(words[:-unread]), " " + " ".join(words[-unread:])


def instructed_pair_transcripts(where: Union[None, str, Path] = None, limit: Optional[int] = None
                                ) -> Tuple[TranscriptSet, "ReadSummary"]:  # noqa: F821 - see apollo.ReadSummary
    """Honest and dishonest chats for each true fact (`limit` facts at most), with the rows left out counted."""
    from liedetect.benchmarks.apollo import ReadSummary
    from liedetect.datasets import HONEST_PERSONAS

    facts, dropped = read_facts(where)
    out = TranscriptSet([], [], f"builtin:{NAME}")
    for k, fact in enumerate(facts[:limit] if limit is not None else facts):
        start, end = split_statement(fact.strip())
        if not start:
            dropped[f"fact of {UNREAD_WORDS} words or fewer"] += 1
            continue
        for persona, label in zip(HONEST_PERSONAS, (1, 0)):
            messages = merge_same_role([("user", persona, False), ("assistant", start, True), ("assistant", end, False)])
            out.transcripts.append(Transcript(id=f"fact-{k}-{'honest' if label else 'dishonest'}", messages=messages,
                                              label=label, line=k + 1))
    n_rows = len(facts) + sum(dropped.values()) - dropped[f"fact of {UNREAD_WORDS} words or fewer"]
    summary = ReadSummary(source=str(facts_path(where)), name=NAME, n_rollouts=n_rows, n_samples=n_rows,
                          n_honest=sum(t.label == 1 for t in out.transcripts),
                          n_deceptive=sum(t.label == 0 for t in out.transcripts), dropped=dict(dropped))
    return out, summary


def load_builtin(spec: str) -> TranscriptSet:
    """`builtin:instructed-pairs[:PATH]` as a TranscriptSet (for every command that reads transcripts)."""
    rest = spec.split(":", 2)[2] if spec.count(":") >= 2 else None
    return instructed_pair_transcripts(rest)[0]
