"""L-BFGS on many independent problems at once: one tensor program, each problem on its own trajectory.

``minimize(f, x0)`` takes ``x0`` [B, p] (B problems of p parameters) and ``f(x) -> (loss [B], grad [B, p])``.
Every problem keeps its own curvature history, its own step length (backtracking Armijo line search) and
its own stopping test, so row b of the result is what L-BFGS on problem b alone would give; the batch
only shares the matrix products (which is where the time goes on layers x restarts or layers x C).
Used by CCS (``optimizer="lbfgs"``, the default, as elk fits it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class LBFGSResult:
    """Solutions [B, p], final losses [B], loss after every iteration [n_iter + 1, B], iterations per problem [B]."""

    x: torch.Tensor
    loss: torch.Tensor
    curve: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _direction(g: torch.Tensor, S: list[torch.Tensor], Y: list[torch.Tensor], rho: list[torch.Tensor],
               gamma: torch.Tensor) -> torch.Tensor:
    """The two-loop recursion, batched; a pair with rho = 0 (rejected curvature) contributes nothing."""
    q = g.clone()
    alphas = []
    for s, y, r in zip(reversed(S), reversed(Y), reversed(rho)):
        a = r * _dot(s, q)
        q -= a[:, None] * y
        alphas.append(a)
    z = gamma[:, None] * q
    for s, y, r, a in zip(S, Y, rho, reversed(alphas)):
        b = r * _dot(y, z)
        z += s * (a - b)[:, None]
    return -z


def minimize(f: Objective, x0: torch.Tensor, max_iter: int = 200, history: int = 10, gtol: float = 1e-5,
             ftol: float = 1e-9, max_backtrack: int = 30) -> LBFGSResult:
    """Minimise B independent smooth objectives; see the module docstring.

    A problem stops when its largest gradient entry is below ``gtol`` or its loss changes by less than
    ``ftol`` (relative) in an iteration; stopped problems keep their parameters while the rest go on.
    """
    x = x0.detach().clone()
    B = x.shape[0]
    loss, g = f(x)
    curve = [loss.clone()]
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    rho: list[torch.Tensor] = []
    gamma = 1.0 / g.norm(dim=-1).clamp_min(1e-12)  # first step: unit length along -g
    done = g.abs().amax(-1) < gtol
    n_iter = torch.zeros(B, dtype=torch.long)
    for _ in range(max_iter):
        if bool(done.all()):
            break
        d = _direction(g, S, Y, rho, gamma)
        slope = _dot(g, d)
        bad = ~(slope < 0)  # not a descent direction (or NaN): fall back to steepest descent
        if bool(bad.any()):
            d[bad] = -g[bad] / g[bad].norm(dim=-1, keepdim=True).clamp_min(1e-12)
            slope = _dot(g, d)
        d[done] = 0.0
        slope = torch.where(done, torch.zeros_like(slope), slope)
        t = torch.ones(B, dtype=x.dtype, device=x.device)
        for _ls in range(max_backtrack):
            x_new = x + t[:, None] * d
            loss_new, g_new = f(x_new)
            ok = (loss_new <= loss + 1e-4 * t * slope) & torch.isfinite(loss_new)
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t * 0.5)
        else:  # no decrease found for some problems: they stay where they are
            keep = ~ok
            x_new[keep], loss_new[keep], g_new[keep] = x[keep], loss[keep], g[keep]
            done = done | keep
        s, y = x_new - x, g_new - g
        sy = _dot(s, y)
        good = sy > 1e-10
        S.append(s)
        Y.append(y)
        rho.append(torch.where(good, 1.0 / sy.clamp_min(1e-10), torch.zeros_like(sy)))
        if len(S) > history:
            S.pop(0), Y.pop(0), rho.pop(0)
        gamma = torch.where(good, sy / _dot(y, y).clamp_min(1e-20), gamma)
        change = (loss - loss_new).abs() <= ftol * torch.maximum(loss.abs(), torch.ones_like(loss))
        n_iter += (~done).long()
        x, loss, g = x_new, loss_new, g_new
        done = done | (g.abs().amax(-1) < gtol) | change
        curve.append(loss.clone())
    return LBFGSResult(x, loss, torch.stack(curve), n_iter, done)
