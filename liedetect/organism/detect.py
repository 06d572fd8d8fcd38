"""Truth probes and lie detection on the organism, where every statement's truth and every lie is known.

A lie detector here is a truth probe read at the answer position, compared with what the model said:
the lie score is P_probe(true) when the model answered False and 1 - P_probe(true) when it answered True.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from liedetect.organism.behaviour import answer_margins
from liedetect.organism.world import Prompt
from probes.metrics import auroc, recall_at_fpr

__all__ = ["FAST_PARAMS", "PromptSet", "capture", "lie_scores", "auroc", "recall_at_fpr", "detection_metrics",
           "fit_truth_probe"]


# Settings that keep the demo within its time budget on 2 CPU cores (the defaults cross-validate C / run 10 restarts).
FAST_PARAMS: Dict[str, Dict[str, Any]] = {"lr": {"C": 1.0}, "ccs": {"n_restarts": 4, "n_steps": 400}}


@dataclass
class PromptSet:
    """Prompts with their activations at the answer position and what the model answered."""

    prompts: List[Prompt]
    acts: torch.Tensor  # [n, n_layers, d]
    said_true: np.ndarray  # bool [n]
    layers: List[int]

    @property
    def truth(self) -> np.ndarray:
        """1 where the statement is true."""
        return np.array([int(p.truth) for p in self.prompts])

    @property
    def lied(self) -> np.ndarray:
        """1 where the model's answer contradicts the statement's truth."""
        return (self.said_true.astype(int) != self.truth).astype(int)

    def layer(self, layer: int) -> torch.Tensor:
        """Activations at one model layer, [n, d]."""
        return self.acts[:, self.layers.index(layer)]

    def subset(self, mask: np.ndarray) -> "PromptSet":
        """The rows where `mask` is true."""
        idx = np.flatnonzero(mask)
        return PromptSet([self.prompts[i] for i in idx], self.acts[torch.as_tensor(idx, dtype=torch.long)],
                         self.said_true[idx], self.layers)


def capture(model: Any, prompts: Sequence[Prompt], layers="all", batch_size: int = 256, progress: bool = False) -> PromptSet:
    """Residual stream (resid_post) at each prompt's last token, plus the model's answer."""
    from liedetect.activations import extract

    texts = [p.text for p in prompts]
    acts = extract(model, texts, layers=layers, position="last", hook="resid_post", batch_size=batch_size, progress=progress)
    return PromptSet(list(prompts), acts.acts, answer_margins(model, texts, batch_size) > 0, list(acts.layers))


def lie_scores(p_true: Any, said_true: np.ndarray) -> np.ndarray:
    """How strongly the probe's reading of the truth disagrees with the answer (high = likely lie)."""
    p = np.asarray(p_true.detach().cpu() if torch.is_tensor(p_true) else p_true, dtype=float)
    return np.where(said_true, 1.0 - p, p)


def detection_metrics(p_true: Any, data: PromptSet, negatives: np.ndarray, positives: np.ndarray) -> Dict[str, float]:
    """AUROC and recall at 1% FPR separating `positives` (lies) from `negatives` (honest answers) rows."""
    scores = lie_scores(p_true, data.said_true)
    labels = np.r_[np.zeros(negatives.sum()), np.ones(positives.sum())]
    s = np.r_[scores[negatives], scores[positives]]
    recall, threshold = recall_at_fpr(scores[negatives], scores[positives], 0.01)
    return {"auroc": auroc(labels, s), "recall_at_1pct_fpr": recall, "threshold_at_1pct_fpr": threshold,
            "n_negatives": int(negatives.sum()), "n_positives": int(positives.sum())}


def fit_truth_probe(method: str, train: PromptSet, layer: int, pairs: Optional[Tuple[PromptSet, PromptSet]] = None,
                    seed: int = 0) -> Any:
    """Fit one probes/ method on the statement truth at a layer (contrast methods use `pairs`)."""
    from probes import make_probe

    probe = make_probe(method, seed=seed, **FAST_PARAMS.get(method, {}))
    if probe.paired:
        if pairs is None:
            raise ValueError(f"method {method} needs contrast pairs")
        pos, neg = pairs
        probe.fit(pos.layer(layer), neg.layer(layer), pos.truth)
    else:
        probe.fit(train.layer(layer), train.truth)
    return probe
