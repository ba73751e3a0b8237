"""Batched augmented Lagrangian for two-sided bands (Nocedal & Wright, 2nd ed., §17.3–17.4).

Each band ``lo <= h <= hi`` is split into two inequalities written as ``c >= 0``:
the lower side ``c = h - lo`` and the upper side ``c = hi - h`` (an infinite side is dropped).
An equality (``lo == hi``) keeps one row, ``c = h - lo = 0``.

Inequalities are handled with slacks ``c - s = 0, s >= 0``; minimizing the augmented Lagrangian
over ``s`` in closed form (the slack step of the paper's §3.4) gives N&W eq. (17.65), written
here with the penalty ``rho`` (N&W's ``1/mu``, the paper's ``mu``)::

    psi(c, lam, rho) = -lam c + rho/2 c^2    if c - lam/rho <= 0
                     = -lam^2 / (2 rho)       otherwise

with the first-order multiplier update N&W eq. (17.66), ``lam <- max(lam - rho c, 0)``.
Equalities use ``-lam c + rho/2 c^2`` (eq. 17.36) and ``lam <- lam - rho c`` (eq. 17.39).
Multipliers are per sample and per constraint side, ``(B, m, 2)``; the penalty is per sample,
``(B,)``, so one sample's trouble does not stiffen the others. No Python loops: ``torch.where``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .bands import Bands
from .options import check_options, option


@dataclass(frozen=True)
class ALConfig:
    """Augmented-Lagrangian settings (paper defaults: rho0 = 10, growth a = 10, 100 inner steps).

    Attributes:
        penalty0: initial penalty ``rho0`` (the paper's ``mu0``).
        growth: penalty factor ``a > 1`` applied after each outer iteration to unfinished rows.
        inner_steps: gradient steps per outer iteration.
        max_outer: outer iterations before the phase gives up.
        penalty_max: cap on the penalty.
        multiplier_max: cap on ``|lam|``.
        penalty_rule: ``"always"`` grows the penalty of every unfinished row after each outer
            iteration (the paper); ``"progress"`` grows it only where the violation did not fall
            below ``progress_ratio`` times the previous one (N&W Algorithm 17.4 / LANCELOT), so
            the multipliers, not an exploding penalty, do the work.
        progress_ratio: the required decrease of the violation for ``"progress"``.
        lr_decay: factor applied to the step length after each outer iteration (1: none).
    """

    penalty0: float = option(10.0, gt=0)
    growth: float = option(10.0, ge=1)
    inner_steps: int = option(100, ge=1)
    max_outer: int = option(8, ge=1)
    penalty_max: float = option(1e8, gt=0, inf=True)
    multiplier_max: float = option(1e8, gt=0, inf=True)
    penalty_rule: str = option("always", choices=("always", "progress"))
    progress_ratio: float = option(0.25, gt=0, lt=1)
    lr_decay: float = option(1.0, gt=0, le=1)

    def __post_init__(self) -> None:
        check_options(self)
        if not self.penalty_max >= self.penalty0:
            raise ValueError(f"penalty_max must be >= penalty0, got {self.penalty_max!r} < {self.penalty0!r}")


@dataclass(frozen=True)
class SideMasks:
    """Which constraint sides exist: ``active (m, 2)`` and which rows are equalities ``(m,)``."""

    active: Tensor
    equality: Tensor


def side_masks(bands: Bands, like: Tensor) -> SideMasks:
    """The sides of each band that carry a constraint, on ``like``'s device."""
    lo = torch.tensor(bands.lo, dtype=torch.float64)
    hi = torch.tensor(bands.hi, dtype=torch.float64)
    equality = lo == hi
    active = torch.stack([torch.isfinite(lo), torch.isfinite(hi) & ~equality], dim=1)
    return SideMasks(active.to(like.device), equality.to(like.device))


def residuals(values: Tensor, lo: Tensor, hi: Tensor, masks: SideMasks) -> Tensor:
    """Constraint residuals ``c (B, m, 2)`` with ``c >= 0`` meaning satisfied; 0 where inactive."""
    lower = values - lo
    upper = hi - values
    c = torch.stack([lower, upper], dim=-1)
    return torch.where(masks.active, c, torch.zeros_like(c))


def penalty_terms(c: Tensor, multipliers: Tensor, penalty: Tensor, masks: SideMasks) -> Tensor:
    """The augmented-Lagrangian terms ``sum_j psi(c_j)`` per sample, ``(B,)`` (eq. 17.65).

    Args:
        c: residuals ``(B, m, 2)``.
        multipliers: ``(B, m, 2)``.
        penalty: ``(B,)``.
    """
    rho = penalty[:, None, None]
    quadratic = -multipliers * c + 0.5 * rho * c * c
    slack_free = -multipliers * multipliers / (2 * rho)
    eq = masks.equality[None, :, None].expand_as(c)
    psi = torch.where(eq | (c - multipliers / rho <= 0), quadratic, slack_free)
    psi = torch.where(masks.active, psi, torch.zeros_like(psi))
    return psi.sum(dim=(1, 2))


def update_multipliers(c: Tensor, multipliers: Tensor, penalty: Tensor, masks: SideMasks,
                       cap: float) -> Tensor:
    """First-order multiplier update: ``max(lam - rho c, 0)`` (17.66), ``lam - rho c`` (17.39)."""
    step = multipliers - penalty[:, None, None] * c
    eq = masks.equality[None, :, None].expand_as(c)
    new = torch.where(eq, step, step.clamp(min=0))
    new = new.clamp(-cap, cap)
    return torch.where(masks.active, new, torch.zeros_like(new))


def grow_penalty(penalty: Tensor, unfinished: Tensor, cfg: ALConfig,
                 violation: Tensor | None = None, previous: Tensor | None = None) -> Tensor:
    """``rho <- min(a rho, rho_max)`` for unfinished rows ``(B,)``; finished rows keep theirs.

    With ``penalty_rule="progress"`` only rows whose ``violation`` is above ``progress_ratio``
    times their ``previous`` violation grow.
    """
    if cfg.penalty_rule == "progress" and violation is not None and previous is not None:
        unfinished = unfinished & (violation > cfg.progress_ratio * previous)
    return torch.where(unfinished, (penalty * cfg.growth).clamp(max=cfg.penalty_max), penalty)


def max_violation(c: Tensor, masks: SideMasks) -> Tensor:
    """Largest violation per sample ``(B,)``: ``max(-c)`` over inequality sides, ``|c|`` over
    equalities (the primal-feasibility part of the KKT residual, N&W eq. 12.34)."""
    eq = masks.equality[None, :, None].expand_as(c)
    viol = torch.where(eq, c.abs(), (-c).clamp(min=0))
    viol = torch.where(masks.active, viol, torch.zeros_like(viol))
    return viol.flatten(1).amax(dim=1) if viol.numel() else c.new_zeros(c.shape[0])


def initial_multipliers(batch: int, m: int, like: Tensor) -> Tensor:
    """Zero multipliers ``(B, m, 2)`` (the paper's ``lambda = 0``)."""
    return torch.zeros(batch, m, 2, dtype=like.dtype, device=like.device)


def finite_or(value: float, default: float) -> float:
    """``value`` when finite, else ``default`` (for reporting infinite band ends)."""
    return value if math.isfinite(value) else default
