"""A PPGN-style Langevin chain in code space (Nguyen et al. 2017, eq. 11, with a Gaussian prior).

Each of ``k`` chains moves by

    c <- c + eps1 * prior(c) - eps2 * d penalty(h(decode(c))) / dc + eps3 * N(0, I)

where ``prior(c) = -c`` is the score of the Gaussian prior N(0, I) on codes (for problems with a
box the prior is uniform on the box: no drift, and the chain is reflected into the box), and
``penalty = 1/2 * sum_j dist(h_j, band_j)^2`` is zero inside the band, so inside the band the chain
only diffuses. Every ``thin`` steps (after ``burn``), the chains that are inside the band are
kept. One step of ``k`` chains costs ``k`` model evaluations (a forward and a backward pass each);
one ``step`` of the sampler is one step of the ``k`` chains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from . import common
from ..core.options import check_options, option
from .common import Baseline, BaselineState


def reflect(codes: Tensor, lo: float, hi: float) -> Tensor:
    """Codes reflected into ``[lo, hi]`` (the uniform law on the box stays invariant)."""
    width = hi - lo
    u = torch.remainder(codes - lo, 2 * width)
    return lo + torch.where(u > width, 2 * width - u, u)


@dataclass(frozen=True)
class LangevinConfig:
    """Options of ``method="langevin"``.

    Attributes:
        eps1: weight of the prior's score (``-c``; unused with a box).
        eps2: step along minus the gradient of the band penalty.
        eps3: noise standard deviation per step (default ``sqrt(2 eps1)``, which leaves N(0, I)
            invariant without the penalty; with a box: ``0.02`` times its width).
        thin: keep the chains inside the band every ``thin`` steps.
        burn: steps before the first keep.
        max_evals: budget of per-sample model evaluations (default ``200 * n``).

    ``initial_codes`` ``(k, *code_shape)`` (a setting of the run) start the chains (default: the prior).
    """

    eps1: float = option(0.01, ge=0)
    eps2: float = option(0.01, ge=0)
    eps3: Optional[float] = option(None, ge=0)
    thin: int = option(10, ge=1)
    burn: int = option(0, ge=0)
    max_evals: Optional[int] = option(None, ge=1)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class LangevinState(BaselineState):
    """The chains ``(k', *code_shape)``, the steps taken, the chain-steps spent inside the band
    and the noise level in use (``eps3`` resolved against the problem's box)."""

    chains: Optional[Tensor] = None
    steps: int = 0
    inside_steps: int = 0
    eps3: float = 0.0


class Langevin(Baseline):
    """PPGN-style Langevin chains toward the band (``method="langevin"``)."""

    name = "langevin"
    Config = LangevinConfig
    state_class = LangevinState
    initial_rows = "k"

    def init(self, problem, run, key: int, seeds=None) -> LangevinState:
        box, eps3 = problem.box, self.config.eps3
        if eps3 is None:
            eps3 = 0.02 * (box[1] - box[0]) if box is not None else math.sqrt(2 * self.config.eps1)
        state = LangevinState(**self.start(problem, run, key, walkers=True), eps3=float(eps3))
        if run.initial_codes is not None:
            given = run.initial_codes.detach().to(device=self.device, dtype=self.dtype).clone()
            state.chains = problem.project(given)
        else:
            with self.generator(state) as gen:
                state.chains = common.random_codes(problem, run.k, gen, self.device, self.dtype)
        return state

    def step(self, state: LangevinState) -> tuple[LangevinState, dict]:
        cfg, problem, box = self.config, self.problem, self.problem.box
        rows = min(state.chains.shape[0], self.left(state))
        codes = state.chains[:rows].detach().requires_grad_(True)
        m, _ = common.measure(problem, codes)
        penalty = common.band_penalty(problem, m.values).sum()
        (grad,) = torch.autograd.grad(penalty, codes)
        self.spend(state, rows)
        new = 0
        with torch.no_grad():
            values = m.values.detach()
            inside = problem.bands.feasible(values)
            state.inside_steps += int(inside.sum())
            self.consider(state, codes, values)
            if state.steps >= cfg.burn and (state.steps - cfg.burn) % cfg.thin == 0:
                chain = torch.arange(rows, device=inside.device)[inside]
                new = self.accept(state, codes.detach()[inside], values[inside], walker=chain)
            with self.generator(state) as gen:
                noise = torch.randn(codes.shape, generator=gen, dtype=self.dtype).to(self.device)
            drift = -cfg.eps2 * grad
            if box is None:
                drift = drift - cfg.eps1 * codes
            codes = codes.detach() + drift + state.eps3 * noise
            if box is not None:
                codes = reflect(codes, float(box[0]), float(box[1]))
            state.chains = problem.project(codes)
        state.steps += 1
        state.rounds += 1
        return state, {"step": state.steps, "inside": int(inside.sum()), "accepted": new}

    def method_stats(self, state: LangevinState) -> dict:
        cfg = self.config
        return {"steps": state.steps, "chains": self.run.k, "thin": cfg.thin, "burn": cfg.burn,
                "eps1": cfg.eps1, "eps2": cfg.eps2, "eps3": state.eps3,
                "inside_fraction": state.inside_steps / max(state.used, 1)}


__all__ = ["LangevinConfig", "LangevinState", "Langevin", "reflect"]
