"""TCAV scores (Kim et al., ICML 2018) for a probe direction: does the model *use* the direction to answer?

For each input, the directional derivative of the answer logit difference (e.g. logit(" True") - logit(" False")
at the last token) with respect to the residual stream at a layer, along the direction, is computed by autograd
through a hook (a zero perturbation added at the hook point; its gradient is the sensitivity vector). The TCAV
score is the fraction of inputs whose answer rises when the residual moves along the direction. One backward pass
gives the gradient, so any number of random directions are scored for free: the significance test compares the
direction's score with the scores of random unit directions (two-sided one-sample t-test, and an exact rank test:
how many random directions are at least as far from 0.5), and the size of its mean directional derivative with
theirs (rank test). Random directions' scores spread widely when the inputs' gradients point alike, so the score's
rank test is weak; the derivative-size rank says more about whether the model uses the direction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import stats

from liedetect.errors import DataError, SteeringError
from liedetect.models import check_hook
from liedetect.zero_shot import answer_token_id

POSITIONS = ("last", "all")


def answer_gradients(model: Any, texts: Sequence[str], layer: int, answers: Tuple[str, str] = (" True", " False"),
                     hook: str = "resid_post", position: str = "last", batch_size: int = 16) -> torch.Tensor:
    """d(logit(answers[0]) - logit(answers[1]))/d(residual at `layer`) for each text: [n, d_model] (float32).

    position 'last': the residual at the last token only; 'all': moving the residual at every token together
    (the gradients of all positions summed)."""
    return layer_gradients(model, texts, [layer], answers, hook, position, batch_size)[layer]


def layer_gradients(model: Any, texts: Sequence[str], layers: Sequence[int], answers: Tuple[str, str] = (" True", " False"),
                    hook: str = "resid_post", position: str = "last", batch_size: int = 16) -> Dict[int, torch.Tensor]:
    """`answer_gradients` at several layers from one forward and backward pass per batch: {layer: [n, d_model]}."""
    from liedetect.activations import encode, pad_batch

    if position not in POSITIONS:
        raise DataError(f"Unknown position {position!r}; use one of {', '.join(POSITIONS)}.")
    if not texts:
        raise DataError("No texts to compute TCAV scores on.")
    names = {layer: check_hook(model, layer, hook) for layer in layers}
    yes, no = (answer_token_id(model.tokenizer, a) for a in answers)
    enc = encode(model, texts)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out: Dict[int, List[torch.Tensor]] = {layer: [] for layer in names}
    for i in range(0, len(texts), batch_size):
        ids, mask = pad_batch(enc.ids[i:i + batch_size], pad, "right")
        ids, mask = ids.to(device), mask.to(device)
        last = mask.sum(1) - 1
        rows = torch.arange(ids.shape[0], device=device)
        deltas = {layer: torch.zeros(ids.shape[0], ids.shape[1], model.cfg.d_model, device=device, requires_grad=True)
                  for layer in names}

        def add(delta: torch.Tensor):
            def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
                return x + delta.to(x.dtype)
            return fn

        with torch.enable_grad(), model.hooks(fwd_hooks=[(names[layer], add(deltas[layer])) for layer in names]):
            logits = model(ids, attention_mask=mask)[rows, last].float()
            margin = (logits[:, yes] - logits[:, no]).sum()  # rows are independent: one backward for the batch
            grads = torch.autograd.grad(margin, [deltas[layer] for layer in names])
        for layer, grad in zip(names, grads):
            grad = grad.float() * mask[..., None]
            out[layer].append((grad[rows, last] if position == "last" else grad.sum(1)).detach().cpu())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def random_directions(d: int, n: int, seed: int = 0) -> torch.Tensor:
    """n random unit directions in R^d (Gaussian, normalised), reproducible under `seed`."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n, d, generator=g)
    return r / r.norm(dim=1, keepdim=True)


def tcav_scores(grads: torch.Tensor, directions: torch.Tensor) -> np.ndarray:
    """For each direction: the fraction of inputs whose directional derivative is positive."""
    dirs = directions.float().reshape(-1, grads.shape[1])
    return ((grads.float() @ dirs.T) > 0).float().mean(0).numpy()


@dataclass
class TCAVResult:
    """A direction's TCAV score beside the scores of random directions, with p-values."""

    score: float
    n_inputs: int
    layer: int
    answers: Tuple[str, str]
    random_scores: List[float]
    p_value_ttest: float
    p_value_rank: float
    mean_derivative: float
    mean_abs_derivative_random: float
    p_value_magnitude: float  # rank of |mean directional derivative| among the random directions' (how strongly it is used)

    @property
    def significant(self) -> bool:
        """The t-test and the derivative-size rank test both below 0.05."""
        return self.p_value_ttest < 0.05 and self.p_value_magnitude < 0.05

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "significant": self.significant, "random_mean": float(np.mean(self.random_scores)),
                "random_std": float(np.std(self.random_scores))}


def significance(score: float, random_scores: np.ndarray) -> Tuple[float, float]:
    """(two-sided one-sample t-test of the random scores against `score`, rank p-value of |score - 0.5|)."""
    r = np.asarray(random_scores, dtype=np.float64)
    if len(r) < 2:
        raise DataError("The significance test needs at least 2 random directions.")
    if np.ptp(r) == 0:
        p_t = 1.0 if r[0] == score else 0.0
    else:
        p_t = float(stats.ttest_1samp(r, score).pvalue)
    p_rank = float((1 + np.sum(np.abs(r - 0.5) >= abs(score - 0.5))) / (len(r) + 1))
    return p_t, p_rank


def tcav(model: Any, texts: Sequence[str], direction: Any, layer: int, answers: Tuple[str, str] = (" True", " False"),
         n_random: int = 50, seed: int = 0, hook: str = "resid_post", position: str = "last",
         batch_size: int = 16, grads: Optional[torch.Tensor] = None) -> TCAVResult:
    """TCAV score of `direction` at `layer` on `texts`, tested against `n_random` random directions."""
    d = torch.as_tensor(np.asarray(direction.detach().cpu() if torch.is_tensor(direction) else direction), dtype=torch.float32).flatten()
    if d.numel() != model.cfg.d_model:
        raise SteeringError(f"The direction has width {d.numel()} but this model's residual stream has {model.cfg.d_model}; "
                            f"use a direction found on this model.")
    if not torch.isfinite(d).all() or d.norm() == 0:
        raise SteeringError("The direction is zero or not finite.")
    d = d / d.norm()
    if grads is None:
        grads = answer_gradients(model, texts, layer, answers, hook, position, batch_size)
    rand = random_directions(d.numel(), n_random, seed)
    score = float(tcav_scores(grads, d[None])[0])
    rscores = tcav_scores(grads, rand)
    p_t, p_rank = significance(score, rscores)
    mean_d, mean_r = (grads @ d).mean(), (grads @ rand.T).mean(0)
    p_mag = float((1 + (mean_r.abs() >= mean_d.abs()).sum()) / (n_random + 1))
    return TCAVResult(score, int(grads.shape[0]), layer, tuple(answers), [float(v) for v in rscores], p_t, p_rank,
                      float(mean_d), float(mean_r.abs().mean()), p_mag)
