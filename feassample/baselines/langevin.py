"""A PPGN-style Langevin chain in code space (Nguyen et al. 2017, eq. 11, with a Gaussian prior).

Each of ``k`` chains moves by

    c <- c + eps1 * prior(c) - eps2 * d penalty(h(decode(c))) / dc + eps3 * N(0, I)

where ``prior(c) = -c`` is the score of the Gaussian prior N(0, I) on codes (for problems with a
box the prior is uniform on the box: no drift, and the chain is reflected into the box), and
``penalty = 1/2 * sum_j dist(h_j, band_j)^2`` is zero inside the band, so inside the band the chain
only diffuses. Every ``thin`` steps (after ``burn``), the chains that are inside the band are
kept. One step of ``k`` chains costs ``k`` model evaluations (a forward and a backward pass each).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..core.problem import FeasibleSet
from ..core.sample import SamplerConfig
from . import common
from .common import Budget, Collector


def reflect(codes: Tensor, lo: float, hi: float) -> Tensor:
    """Codes reflected into ``[lo, hi]`` (the uniform law on the box stays invariant)."""
    width = hi - lo
    u = torch.remainder(codes - lo, 2 * width)
    return lo + torch.where(u > width, 2 * width - u, u)


def langevin(problem: FeasibleSet, cfg: SamplerConfig, device, dtype, callbacks, t0, *,
             eps1: float = 0.01, eps2: float = 0.01, eps3: Optional[float] = None,
             thin: int = 10, burn: int = 0, max_evals: Optional[int] = None,
             initial_codes: Optional[Tensor] = None):
    """Langevin chains toward the band.

    Options:
        eps1: weight of the prior's score (``-c``; unused with a box).
        eps2: step along minus the gradient of the band penalty.
        eps3: noise standard deviation per step (default ``sqrt(2 eps1)``, which leaves N(0, I)
            invariant without the penalty; with a box: ``0.02`` times its width).
        thin: keep the chains inside the band every ``thin`` steps.
        burn: steps before the first keep.
        max_evals: budget of per-sample model evaluations (default ``200 * n``).
        initial_codes: ``(k, *code_shape)`` starting codes (default: the prior).
    """
    for name, v in (("eps1", eps1), ("eps2", eps2)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    box = problem.box
    if eps3 is None:
        eps3 = 0.02 * (box[1] - box[0]) if box is not None else math.sqrt(2 * eps1)
    if not (math.isfinite(eps3) and eps3 >= 0):
        raise ValueError(f"eps3 must be a finite number >= 0, got {eps3!r}")
    if isinstance(thin, bool) or not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    if isinstance(burn, bool) or not isinstance(burn, int) or burn < 0:
        raise ValueError(f"burn must be an integer >= 0, got {burn!r}")
    gen = common.generator(cfg)
    budget = Budget(max_evals, cfg)
    if initial_codes is not None:
        codes = common.given_codes(problem, initial_codes, device, dtype)
    else:
        codes = common.random_codes(problem, cfg.k, gen, device, dtype)
    collector = Collector(cfg.n)
    closest = common.Closest(cfg.k)
    step = 0
    inside_steps = 0
    while not collector.full:
        rows = min(codes.shape[0], budget.left)
        if rows < 1:
            break
        codes = codes[:rows].detach().requires_grad_(True)
        m, _ = common.measure(problem, codes)
        penalty = common.band_penalty(problem, m.values).sum()
        (grad,) = torch.autograd.grad(penalty, codes)
        budget.spend(rows)
        with torch.no_grad():
            values = m.values.detach()
            inside = problem.bands.feasible(values)
            inside_steps += int(inside.sum())
            closest.update(problem, codes, values)
            if step >= burn and (step - burn) % thin == 0:
                collector.add(codes.detach()[inside])
            noise = torch.randn(codes.shape, generator=gen, dtype=dtype).to(device)
            drift = -eps2 * grad
            if box is None:
                drift = drift - eps1 * codes
            codes = codes.detach() + drift + eps3 * noise
            if box is not None:
                codes = reflect(codes, float(box[0]), float(box[1]))
            codes = problem.project(codes)
        step += 1
        common.notify(callbacks, "langevin", collector, budget)
    stats = {"steps": step, "chains": cfg.k, "thin": thin, "burn": burn, "eps1": eps1, "eps2": eps2,
             "eps3": eps3, "inside_fraction": inside_steps / max(budget.used, 1)}
    return common.conclude(problem, cfg, t0, "langevin", collector, budget, stats, device, dtype,
                           closest=closest)
