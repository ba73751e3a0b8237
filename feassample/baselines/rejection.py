"""Rejection sampling from the prior: draw codes (``problem.init_codes``) in batches, keep those
inside the band. One forward pass per draw; the samples are iid from the prior restricted to the
set (for the slab: exactly uniform on it)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import common
from ..core.options import check_options, option
from .common import Baseline, BaselineState


@dataclass(frozen=True)
class RejectionConfig:
    """Options of ``method="rejection"``.

    Attributes:
        batch: largest number of draws per forward pass (the batch shrinks to what the estimated
            acceptance rate says is still needed, so few draws are wasted past ``n``).
        max_evals: budget of draws, i.e. forward passes (default ``200 * n``).
    """

    batch: int = option(1024, ge=1)
    max_evals: Optional[int] = option(None, ge=1)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class RejectionState(BaselineState):
    drawn: int = 0
    hits: int = 0


class Rejection(Baseline):
    """Rejection sampling (``method="rejection"``)."""

    name = "rejection"
    uses_gradients = False  # checked by core.sampling.validate: no gradient needed
    Config = RejectionConfig
    state_class = RejectionState

    def init(self, problem, run, key: int, seeds=None) -> RejectionState:
        return RejectionState(**self.start(problem, run, key))

    def step(self, state: RejectionState) -> tuple[RejectionState, dict]:
        need = self.run.n - state.samples.count
        rate = (state.hits + 1) / (state.drawn + 2)  # a smoothed acceptance estimate
        size = min(self.config.batch, self.left(state), max(64, math.ceil(1.2 * need / rate)))
        with self.generator(state) as gen:
            codes = common.random_codes(self.problem, size, gen, self.device, self.dtype)
        with torch.no_grad():
            values = common.measure(self.problem, codes)[0].values
        self.spend(state, size)
        state.drawn += size
        inside = self.problem.bands.feasible(values)
        state.hits += int(inside.sum())
        new = self.accept(state, codes[inside], values[inside])
        self.consider(state, codes, values)
        state.rounds += 1
        return state, {"drawn": size, "accepted": new}

    def method_stats(self, state: RejectionState) -> dict:
        return {"drawn": state.drawn, "acceptance": state.hits / max(state.drawn, 1)}


__all__ = ["RejectionConfig", "Rejection"]
