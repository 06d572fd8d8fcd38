"""The batch plan: which transcripts are scored together, fixed by their lengths alone."""

from __future__ import annotations

from typing import List, Sequence


def plan_batches(lengths: Sequence[int], batch_size: int = 16, max_batch_tokens: int = 16384,
                 chunk: int = 512) -> List[List[int]]:
    """Length-bucketed batches of indices: input order in chunks, sorted by length within each chunk.

    The plan depends only on the lengths, so a resumed run and a Ray run compute exactly the same
    batches (and therefore bit-identical scores) as an uninterrupted local run.
    """
    batches: List[List[int]] = []
    for c0 in range(0, len(lengths), chunk):
        order = sorted(range(c0, min(c0 + chunk, len(lengths))), key=lambda i: (lengths[i], i))
        batch: List[int] = []
        for i in order:
            width = max([lengths[j] for j in batch] + [lengths[i]])
            if batch and (len(batch) >= batch_size or width * (len(batch) + 1) > max_batch_tokens):
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    return batches
