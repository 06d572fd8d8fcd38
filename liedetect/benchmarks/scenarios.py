"""Truth_is_Universal's real-world scenarios (Bürger et al. 2024) as chats: role-play transcripts answered by
Llama-3-8B-Instruct and labelled by hand, one CSV row ``statement,label`` holding the whole transcript.

The transcript is split at its speaker markers (``Human:`` / ``AI:``, ``Buyer:`` / ``Agent:``, ...) into a
system message (the scenario, before the first marker), a user message (after it) and the reply, after the first
marker of another speaker, which alone is read. Labels: 1.0 a
truthful reply (honest), 0.0 a lie (deceptive); a blank label (the ambiguous sets) and a row without both
markers are counted as dropped by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Optional, Tuple, Union

from liedetect.benchmarks.apollo import ReadSummary
from liedetect.errors import DataError
from liedetect.scoring.transcripts import Message, Transcript, TranscriptSet

SPEAKER = re.compile(r"(?:^|(?<=\s))([A-Z][A-Za-z]*(?: [A-Za-z]+)?):\s")


def split_turns(text: str) -> Optional[Tuple[str, str, str]]:
    """(scenario, question, reply) of a one-exchange transcript, or None without two speakers."""
    marks = list(SPEAKER.finditer(text))
    if not marks:
        return None
    first = marks[0]
    second = next((m for m in marks[1:] if m.group(1) != first.group(1)), None)
    if second is None:
        return None
    return text[:first.start()].strip(), text[first.end():second.start()].strip(), text[second.end():].strip()


def read_scenarios(path: Union[str, Path]) -> Tuple[TranscriptSet, ReadSummary]:
    """Each labelled row as a system / user / assistant chat whose reply is read; dropped rows counted by reason."""
    from liedetect.datasets import _rows_csv, parse_label

    path = Path(path)
    if not path.is_file():
        raise DataError(f"No real-world scenarios CSV at {path}; pass one of Truth_is_Universal's "
                        f"datasets/real_world_scenarios/*.csv.")
    out = TranscriptSet([], [], str(path))
    dropped: Counter = Counter()
    n = 0
    for line, row in _rows_csv(path):
        n += 1
        text = row.get("statement") if isinstance(row, dict) else None
        try:
            label = None if not isinstance(row, dict) else parse_label(row.get("label", ""))
        except ValueError:
            label = None
        turns = split_turns(text) if isinstance(text, str) else None
        if turns is None:
            dropped["no two speakers"] += 1
            continue
        if label is None:
            dropped["unlabelled (ambiguous)"] += 1
            continue
        parts = [("system", turns[0]), ("user", turns[1]), ("assistant", turns[2])]
        if not turns[2] or not turns[1]:
            dropped["empty question or reply"] += 1
            continue
        messages = [Message(role, content, detect=(role == "assistant")) for role, content in parts if content]
        out.transcripts.append(Transcript(id=f"{path.stem}-{n}", messages=messages, label=label, line=line))
    summary = ReadSummary(source=str(path), name=path.stem, model="Llama-3-8B-Instruct", n_rollouts=n, n_samples=n,
                          n_honest=sum(t.label == 1 for t in out.transcripts),
                          n_deceptive=sum(t.label == 0 for t in out.transcripts), dropped=dict(dropped))
    return out, summary
