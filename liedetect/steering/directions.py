"""Where steering directions come from: a probe, contrast pairs (mean difference), and the residual norm that
scales them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch

from liedetect.errors import DataError, SteeringError
from liedetect.models import resolve_layers
from liedetect.steering.checks import as_rows

# A few plain sentences to measure the typical residual norm of a layer when the user gives none.
NORM_TEXTS = (
    "The capital of France is Paris, and it lies on the river Seine.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the window and looked at the garden for a long time.",
    "Mathematics is the study of numbers, shapes and patterns.",
    "The train to the city leaves every hour from the main station.",
    "Honey bees live in colonies with a single queen.",
    "He wrote a letter to his grandmother about the summer holidays.",
    "The museum is closed on Mondays but open late on Fridays.",
)


def direction_from_probe(probe: Any) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """The unit direction and metadata of a saved probe (path) or of a fitted probe object."""
    meta: Dict[str, Any] = {}
    if isinstance(probe, (str, Path)):
        from liedetect.probe_io import read_probe
        from probes.errors import ProbeError

        try:
            obj = read_probe(probe)  # the files' checks first (finite weights, keys, width), as every command does
        except ProbeError as exc:
            raise SteeringError(f"Cannot read the probe at {probe}: {exc}") from None
        meta["path"] = str(probe)
        probe = obj
    direction = getattr(probe, "direction_", None)
    if direction is None:
        raise SteeringError("The probe has no direction_; fit it before steering with it.")
    for attr in ("meta_", "meta", "metadata_", "metadata"):
        found = getattr(probe, attr, None)
        if isinstance(found, dict):
            meta = {**found, **meta}
            break
    meta.setdefault("method", type(probe).__name__)
    return as_rows(direction, "the probe")[0], meta


def contrast_directions(model: Any, pos_texts: Sequence[str], neg_texts: Sequence[str],
                        layers: Union[str, int, Sequence[int]], position: Any = "last", hook: str = "resid_post",
                        progress: bool = False) -> Dict[int, torch.Tensor]:
    """Unit mean-difference directions {layer: [d]} from paired contrast texts (CAA / ActAdd)."""
    from liedetect.activations import extract

    if len(pos_texts) != len(neg_texts) or not pos_texts:
        raise DataError(f"Contrast pairs need as many positive as negative texts, and at least one "
                        f"(got {len(pos_texts)} and {len(neg_texts)}).")
    layer_list = resolve_layers(layers, model.cfg.n_layers)
    acts = extract(model, list(pos_texts) + list(neg_texts), layers=layer_list, position=position, hook=hook,
                   progress=progress)
    n = len(pos_texts)
    out = {}
    for layer in layer_list:
        x = acts.layer(layer)
        diff = x[:n].mean(0) - x[n:].mean(0)
        out[layer] = as_rows(diff, f"layer {layer} (the two sides have equal means)")[0]
    return out


def residual_norms(model: Any, layers: Sequence[int], texts: Optional[Sequence[str]] = None,
                   hook: str = "resid_post") -> Dict[int, float]:
    """Median L2 norm of the residual stream per token at each layer, measured on `texts`."""
    from liedetect.activations import extract

    if not texts:
        world = getattr(model, "organism_world", None)  # the organism speaks its own language, not English
        texts = [p.text for p in world.prompts(16, split="train", seed=0)] if world is not None else NORM_TEXTS
    acts = extract(model, list(texts), layers=list(layers), position="all", hook=hook, progress=False)
    return {layer: float(acts.layer(layer).norm(dim=-1).median()) for layer in layers}
