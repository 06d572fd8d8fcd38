"""Contrast-Consistent Search (Burns et al. 2022), with every restart trained in one batched program.

Each side of the contrast pairs is normalised separately (mean, and with ``normalize="full"`` the
per-feature standard deviation), so the probe cannot latch onto the constant difference between
"... True" and "... False". The loss is consistency ``(p+ - (1 - p-))^2`` plus confidence
``min(p+, p-)^2``. ``optimizer="lbfgs"`` (the default, as elk fits CCS) minimises it plus a small L2
penalty ``l2 * |w|^2`` with full-batch L-BFGS (at most ``n_steps`` iterations, default 200);
``optimizer="adam"`` is Burns et al.'s recipe (full-batch AdamW, lr 1e-3, weight decay 0.01,
``n_steps`` default 1000). ``n_restarts`` random initialisations are stacked into one weight matrix
``[R, d]`` and optimised together; both optimisers keep every restart on its own trajectory (AdamW is
element-wise; ``probes.lbfgs`` keeps one history and line search per problem), so this is exactly R
independent runs. The restart with the lowest final CCS loss is kept, and its loss curve is stored.
With ``fit_layers`` every layer's restarts run in the same program.

Probabilities: with labels for the sign (below) and ``platt=True``, the pair logit is also rescaled
(Platt: one slope and offset fitted on the same ``n_calibration`` labels), so P(true) is calibrated
rather than CCS's raw, over-confident output; ``fit_info_["platt"]`` holds the two numbers.

Sign convention: CCS cannot tell "true" from "false". With ``calibration="labels"`` and labels
passed to ``fit``, the sign is set from ``n_calibration`` randomly chosen training labels (the
only use of labels): if the probe is right on fewer than half of them, it is flipped. With
``calibration="none"`` (or no labels) the probe stays uncalibrated, which ``fit_info_["sign"]`` and
``calibrated_`` report.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from probes.base import ContrastProbe, data_hash
from probes.calibration import platt
from probes.errors import ProbeError
from probes.lbfgs import minimize
from probes.registry import register

NORMALIZE = ("full", "mean", "none")
CALIBRATION = ("labels", "none")
OPTIMIZERS = ("lbfgs", "adam")
DEFAULT_STEPS = {"lbfgs": 200, "adam": 1000}


def ccs_loss(zp: torch.Tensor, zn: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CCS loss of each of R probes (rows of W [R, d], b [R]) on normalised pairs; returns [R]."""
    pp = torch.sigmoid(zp @ W.T + b)
    pn = torch.sigmoid(zn @ W.T + b)
    consistency = (pp - (1.0 - pn)).pow(2).mean(0)
    confidence = torch.minimum(pp, pn).pow(2).mean(0)
    return consistency + confidence


def ccs_grad(Z: torch.Tensor, n: int, W: torch.Tensor, b: torch.Tensor,
             ZT: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss [R] and its exact gradients (dW [R, d], db [R]) for R probes; Z = cat(z_pos, z_neg) [2n, d].

    Written out by hand (two matrix products per step) because autograd's bookkeeping costs more
    than the arithmetic at these sizes; ``tests/test_probes_ccs.py`` checks it against autograd.
    Logits are laid out [R, 2n] (``ZT`` = Z.T made contiguous once), which BLAS runs faster for small R.
    """
    ZT = Z.transpose(-1, -2).contiguous() if ZT is None else ZT
    if W.dim() == 2:
        P = torch.sigmoid(torch.addmm(b[:, None], W, ZT))  # [R, 2n]
    else:  # a stack of problems (one per layer): W [L, R, d], Z [L, 2n, d]
        P = torch.sigmoid(torch.baddbmm(b[..., None], W, ZT))
    pp, pn = P[..., :n], P[..., n:]
    c = pp + pn - 1.0
    m = torch.minimum(pp, pn)
    loss = (c.square() + m.square()).mean(-1)
    pos_lower = (pp <= pn).to(P.dtype)
    g = torch.cat([c + m * pos_lower, c + m * (1.0 - pos_lower)], dim=-1).mul_(2.0 / n).mul_(P * (1.0 - P))  # dloss/dlogit
    return loss, g @ Z, g.sum(-1)


def train_ccs(zp: torch.Tensor, zn: torch.Tensor, W0: torch.Tensor, b0: torch.Tensor, n_steps: int,
              lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-batch AdamW on R stacked probes at once; returns (W [R, d], b [R], loss curves [n_steps, R]).

    AdamW is element-wise and the restarts' losses do not interact, so row r of the result is exactly
    what training restart r alone would give (same update rule as ``torch.optim.AdamW``). With a leading
    layer axis (zp, zn [L, n, d], W0 [L, R, d], b0 [L, R]) every layer's restarts train in one program.
    """
    n = zp.shape[-2]
    Z = torch.cat([zp, zn], dim=-2)
    ZT = Z.transpose(-1, -2).contiguous()
    W, b = W0.clone(), b0.clone()
    mW, vW, mb, vb = torch.zeros_like(W), torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(b)
    b1, b2 = betas
    curves = torch.empty(n_steps, *W.shape[:-1], device=W.device)
    for step in range(1, n_steps + 1):
        loss, gW, gb = ccs_grad(Z, n, W, b, ZT)
        curves[step - 1] = loss
        W.mul_(1.0 - lr * weight_decay)
        b.mul_(1.0 - lr * weight_decay)
        mW.mul_(b1).add_(gW, alpha=1.0 - b1)
        mb.mul_(b1).add_(gb, alpha=1.0 - b1)
        vW.mul_(b2).addcmul_(gW, gW, value=1.0 - b2)
        vb.mul_(b2).addcmul_(gb, gb, value=1.0 - b2)
        step_size = lr / (1.0 - b1**step)
        denom_scale = math.sqrt(1.0 - b2**step)
        W.addcdiv_(mW, vW.sqrt().div_(denom_scale).add_(eps), value=-step_size)
        b.addcdiv_(mb, vb.sqrt().div_(denom_scale).add_(eps), value=-step_size)
    return W, b, curves


def train_ccs_lbfgs(zp: torch.Tensor, zn: torch.Tensor, W0: torch.Tensor, b0: torch.Tensor, max_iter: int,
                    l2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L-BFGS on the CCS loss + ``l2 * |w|^2`` for every probe in W0 [..., R, d] at once (see ``train_ccs``).

    Returns (W, b, loss curves [n_iterations + 1, ..., R]); a restart that stopped early repeats its last loss.
    """
    n, d = zp.shape[-2], W0.shape[-1]
    dtype = W0.dtype
    Z = torch.cat([zp, zn], dim=-2)
    ZT = Z.transpose(-1, -2).contiguous()
    shape = W0.shape

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W, b = x[:, :d].reshape(shape), x[:, d].reshape(shape[:-1])
        loss, gW, gb = ccs_grad(Z, n, W, b, ZT)
        loss = loss + l2 * W.square().sum(-1)
        gW = gW + 2.0 * l2 * W
        return loss.reshape(-1), torch.cat([gW.reshape(-1, d), gb.reshape(-1, 1)], dim=-1)

    res = minimize(objective, torch.cat([W0.reshape(-1, d), b0.reshape(-1, 1)], dim=-1), max_iter=max_iter,
                   gtol=1e-5, ftol=1e-6)
    W, b = res.x[:, :d].reshape(shape).to(dtype), res.x[:, d].reshape(shape[:-1]).to(dtype)
    return W, b, res.curve.reshape(-1, *shape[:-1]).to(dtype)


@register
class CCSProbe(ContrastProbe):
    """Unsupervised CCS probe on contrast pairs; see the module docstring for normalisation and sign."""

    method = "ccs"
    extra_tensors: ClassVar[tuple[str, ...]] = (
        "mean_pos_", "std_pos_", "mean_neg_", "std_neg_", "weight_", "weight_bias_", "loss_curve_", "restart_losses_",
    )

    def __init__(self, n_restarts: int = 10, n_steps: int | None = None, lr: float = 1e-3, weight_decay: float = 0.01,
                 normalize: str = "full", calibration: str = "labels", n_calibration: int = 32,
                 batched: bool = True, device: str | None = None, seed: int = 0, optimizer: str = "lbfgs",
                 l2: float = 1e-3, platt: bool = True) -> None:
        self.n_restarts = n_restarts
        self.n_steps = n_steps
        self.optimizer = optimizer
        self.l2 = l2
        self.platt = platt
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize = normalize
        self.calibration = calibration
        self.n_calibration = n_calibration
        self.batched = batched
        self.device = device
        self.seed = seed

    @property
    def calibrated_(self) -> bool:
        """Whether the sign was calibrated (otherwise P(true) may be P(false))."""
        self._check_fitted()
        return bool(self.fit_info_.get("sign", {}).get("calibrated", False))

    def _side_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = x.shape[1]
        mean = x.mean(0) if self.normalize in ("full", "mean") else torch.zeros(d)
        std = x.std(0, unbiased=False).clamp_min(1e-6) if self.normalize == "full" else torch.ones(d)
        return mean, std

    def _normalised(self, xp: torch.Tensor, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (xp - self.mean_pos_) / self.std_pos_, (xn - self.mean_neg_) / self.std_neg_

    def fit(self, X_pos: Any, X_neg: Any, y: Any = None) -> "CCSProbe":
        """Fit on contrast pairs; y (optional) is used only to calibrate the sign (``n_calibration`` labels)."""
        xp, xn, labels, zp, zn, W0, b0 = self._start(X_pos, X_neg, y)
        device = torch.device(self.device or "cpu")
        zp_d, zn_d = zp.to(device), zn.to(device)
        if self.batched:
            W, b, curves = self._train(zp_d, zn_d, W0.to(device), b0.to(device))
        else:  # the reference: the same program, one restart at a time
            runs = [self._train(zp_d, zn_d, W0[r:r + 1].to(device), b0[r:r + 1].to(device)) for r in range(self.n_restarts)]
            steps = max(r[2].shape[0] for r in runs)  # L-BFGS restarts may stop after different numbers of iterations
            curves = torch.cat([torch.cat([r[2], r[2][-1:].expand(steps - r[2].shape[0], -1)]) for r in runs], dim=1)
            W, b = torch.cat([r[0] for r in runs]), torch.cat([r[1] for r in runs])
        return self._finish(xp, xn, labels, zp, zn, W, b, curves)

    def fit_layers(self, X_pos: Any, X_neg: Any, y: Any = None) -> list["CCSProbe"]:
        """One fitted probe per layer of stacks [n, L, d], all layers' restarts trained in one batched program."""
        if torch.as_tensor(X_pos).dim() != 3:
            raise ProbeError("fit_layers takes stacks [n_examples, n_layers, d_model].")
        P, N = torch.as_tensor(X_pos), torch.as_tensor(X_neg)
        probes = [type(self)(**self.get_params()) for _ in range(P.shape[1])]
        starts = [p._start(P[:, i], N[:, i], y) for i, p in enumerate(probes)]
        device = torch.device(self.device or "cpu")
        stack = [torch.stack([s[k] for s in starts]).to(device) for k in (3, 4, 5, 6)]
        W, b, curves = self._train(*stack)
        return [p._finish(*s[:5], W[i], b[i], curves[:, i]) for i, (p, s) in enumerate(zip(probes, starts))]

    @property
    def steps_(self) -> int:
        """The iteration budget: ``n_steps``, or the optimiser's default."""
        return int(self.n_steps) if self.n_steps is not None else DEFAULT_STEPS[self.optimizer]

    def _train(self, zp: torch.Tensor, zn: torch.Tensor, W0: torch.Tensor, b0: torch.Tensor) -> tuple:
        if self.optimizer == "adam":
            return train_ccs(zp, zn, W0, b0, self.steps_, self.lr, self.weight_decay)
        return train_ccs_lbfgs(zp, zn, W0, b0, self.steps_, self.l2)

    def _start(self, X_pos: Any, X_neg: Any, y: Any) -> tuple:
        if self.normalize not in NORMALIZE:
            raise ProbeError(f"normalize must be one of {NORMALIZE}, not {self.normalize!r}.")
        if self.calibration not in CALIBRATION:
            raise ProbeError(f"calibration must be one of {CALIBRATION}, not {self.calibration!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ProbeError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}.")
        if self.n_restarts < 1 or self.steps_ < 1:
            raise ProbeError("n_restarts and n_steps must both be at least 1.")
        xp, xn, labels = self._pairs(X_pos, X_neg, y)
        n, d = xp.shape
        self.mean_pos_, self.std_pos_ = self._side_stats(xp)
        self.mean_neg_, self.std_neg_ = self._side_stats(xn)
        zp, zn = self._normalised(xp, xn)
        gen = torch.Generator().manual_seed(self.seed)
        W0 = torch.randn(self.n_restarts, d, generator=gen) / math.sqrt(d)
        return xp, xn, labels, zp, zn, W0, torch.zeros(self.n_restarts)

    def _finish(self, xp: torch.Tensor, xn: torch.Tensor, labels: Any, zp: torch.Tensor, zn: torch.Tensor,
                W: torch.Tensor, b: torch.Tensor, curves: torch.Tensor) -> "CCSProbe":
        n = xp.shape[0]
        zp_d, zn_d = zp.to(W.device), zn.to(W.device)
        with torch.no_grad():
            final = ccs_loss(zp_d, zn_d, W, b).cpu()
        best = int(torch.argmin(final))
        w, bias = W[best].cpu().clone(), float(b[best])

        sign: dict[str, Any]
        scale = None  # Platt's (slope, offset) on the pair logit, from the same calibration labels
        if self.calibration == "labels" and labels is not None:
            idx = np.sort(np.random.default_rng(self.seed).permutation(n)[: min(self.n_calibration, n)])
            p = self._pair_proba(zp, zn, w, bias).numpy()
            acc = float(((p[idx] >= 0.5).astype(int) == labels[idx]).mean())
            flipped = acc < 0.5
            if flipped:
                w, bias = -w, -bias
            sign = {"calibrated": True, "method": "labels", "n_labels": int(len(idx)),
                    "accuracy_before_flip": acc, "flipped": flipped}
            if self.platt and len(np.unique(labels[idx])) == 2:
                logit = self._pair_logit(self._pair_proba(zp, zn, w, bias)).numpy()
                scale = platt(logit[idx], labels[idx])
        else:
            reason = "calibration='none'" if self.calibration == "none" else "no labels were given"
            sign = {"calibrated": False, "method": "none",
                    "note": f"uncalibrated ({reason}): CCS is sign-ambiguous, so P(true) may be P(false)"}
        self.weight_ = w
        self.weight_bias_ = torch.tensor([bias], dtype=torch.float32)
        curve = curves[:, best].cpu().clone()
        if self.optimizer == "lbfgs":  # drop the padding after this restart stopped (its loss repeated)
            moved = torch.nonzero(curve[1:] != curve[:-1])
            curve = curve[: int(moved[-1]) + 2] if len(moved) else curve[:1]
        self.loss_curve_ = curve
        self.restart_losses_ = final

        # single activations: both sides' statistics pooled (midpoint mean, root-mean-square std)
        mean = (self.mean_pos_ + self.mean_neg_) / 2
        std = ((self.std_pos_.pow(2) + self.std_neg_.pow(2)) / 2).sqrt()
        coef = w / std
        info = {"chosen_restart": best, "final_loss": float(final[best]), "restart_losses": final.tolist(),
                "optimizer": self.optimizer, "n_steps": self.steps_, "sign": sign, "normalize": self.normalize}
        if scale is not None:
            info["platt"] = [float(scale[0]), float(scale[1])]
        if labels is not None:
            p = self._pair_proba(zp, zn, w, bias).numpy()
            info["train_pair_accuracy"] = float(((p >= 0.5).astype(int) == labels).mean())
        self._set_fitted(coef, coef, bias - float(mean @ coef), mean=mean, std=std,
                         train_hash=data_hash(xp, xn, labels), n_train=n, info=info)
        return self

    @staticmethod
    def _pair_proba(zp: torch.Tensor, zn: torch.Tensor, w: torch.Tensor, b: float) -> torch.Tensor:
        pp = torch.sigmoid(zp @ w + b)
        pn = torch.sigmoid(zn @ w + b)
        return 0.5 * (pp + 1.0 - pn)

    def decision_function_pairs(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """Logit of the CCS pair probability 0.5 * (p+ + 1 - p-), using the training normalisation."""
        xp, xn = self._pair_input(X_pos, X_neg)
        zp, zn = self._normalised(xp, xn)
        logit = self._pair_logit(self._pair_proba(zp, zn, self.weight_, float(self.weight_bias_[0])))
        a, c = self.fit_info_.get("platt") or (1.0, 0.0)
        return a * logit + c

    @staticmethod
    def _pair_logit(p: torch.Tensor) -> torch.Tensor:
        p = p.clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
