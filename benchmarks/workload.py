"""Workloads shared by the scoring benchmarks: synthetic chats and a fixed random probe."""

from __future__ import annotations

import random
from typing import List

import torch

from liedetect import scoring

WORDS = ("the report says that revenue grew in the third quarter while costs fell and the team shipped "
         "two products on time although the audit found a small gap in the records of the northern office").split()


class FixedProbe:
    """A fixed random linear read-out at one layer (speed does not depend on the direction)."""

    def __init__(self, d: int, layer: int) -> None:
        self.coef_ = torch.randn(d, generator=torch.Generator().manual_seed(0))
        self.bias_ = 0.0
        self.n_features_in_ = d
        self.meta_ = {"layer": layer, "hook": "resid_post"}

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.coef_.to(X.device) + self.bias_


def transcripts(n: int, seed: int = 0, max_words: int = 120) -> List[scoring.Transcript]:
    """Chats of a system prompt, a question and a 20-`max_words` word answer."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, max_words)))
        out.append(scoring.Transcript(f"b{i}", [scoring.Message("system", "You are a helpful assistant."),
                                                scoring.Message("user", q.capitalize() + "?"),
                                                scoring.Message("assistant", a.capitalize() + ".")], label=i % 2))
    return out
