"""Steer a model along truth directions at inference: add, ablate or set a projection, from hooks that always come off.

Modules: ``spec`` (what to apply: directions per layer, operation, alpha, positions), ``directions`` (where
directions come from: a probe, contrast pairs, residual norms), ``checks`` (validation they share), ``gate``
(conditional steering: steer only the prompts a gate opens), ``hooks`` (the context manager and position
tracker), ``generation``, ``sweeps`` (alpha / layer sweeps and their metrics), ``orthogonalize`` (bake an
ablation into the weights) and ``gguf_export`` (llama.cpp control vectors).
"""

from liedetect.steering.checks import as_rows
from liedetect.steering.directions import NORM_TEXTS, contrast_directions, direction_from_probe, residual_norms
from liedetect.steering.gate import SteeringGate
from liedetect.steering.generation import chat_prompts, compare_generations, generate
from liedetect.steering.hooks import Steering, _Tracker, maybe_steer, steer  # noqa: F401  (_Tracker: tests, benchmarks)
from liedetect.steering.spec import OPS, POSITIONS, SCALES, Positions, SteeringSpec
from liedetect.steering.sweeps import Metric, SweepResult, organism_truthfulness_metric, p_true_metric, steering_sweep

__all__ = [
    "OPS", "POSITIONS", "SCALES", "NORM_TEXTS", "Positions", "Metric", "SteeringSpec", "SteeringGate", "as_rows",
    "direction_from_probe", "contrast_directions", "residual_norms", "Steering", "steer", "maybe_steer",
    "generate", "compare_generations", "chat_prompts", "SweepResult", "p_true_metric", "organism_truthfulness_metric", "steering_sweep",
]
