"""The joint solve (paper eq. 5/15): all ``n`` codes optimized together by the augmented
Lagrangian, with the diversity term over the whole set. The paper's Fig. 9 comparison; the seed
phase's machinery (``seeds.step`` with ``freeze=False``) on ``n`` rows instead of ``k``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from . import seeds as seeding
from ..options import check_options, option
from .base import Sampler, Seeds
from .common import Loss


@dataclass(frozen=True)
class JointConfig:
    """Settings of the joint solve (``method="joint"``); the optimizer and the augmented
    Lagrangian are the seed phase's settings (``SeedConfig``).

    Attributes:
        joint_until: ``"feasible"`` (stop each row once inside) or ``"converged"`` (run the
            full augmented-Lagrangian budget, as the paper's Fig. 9 experiment).
    """

    joint_until: str = option("feasible", choices=("feasible", "converged"))

    def __post_init__(self) -> None:
        check_options(self)


class Joint(Sampler):
    """All ``n`` codes at once (``method="joint"``); no seed phase."""

    name = "joint"
    Config = JointConfig
    state_class = seeding.SeedState
    checkpoint_every_s = 2.0
    initial_rows = "n"

    def bind(self, problem, run) -> None:
        super().bind(problem, run)
        self.al = run.seeding.al()
        self.move = run.seeding.step_rule()
        self.freeze = self.config.joint_until == "feasible"
        self.loss = Loss(problem, run.diversity(), problem.bands.shrink(run.seeding.seed_margin))

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> seeding.SeedState:
        self.bind(problem, run)
        return seeding.init(seeding.initial_codes(problem, run.n, run, key), problem.bands.m, self.al)

    def step(self, state: seeding.SeedState) -> tuple[seeding.SeedState, dict]:
        state = seeding.step(state, self.loss, self.problem.bands, self.al, self.move, freeze=self.freeze)
        inside = int(self.problem.bands.feasible(state.values).sum())
        return state, {"step": state.steps, "outer": state.outer, "inside": inside}

    def done(self, state: seeding.SeedState) -> bool:
        return seeding.done(state, self.al) if self.freeze else seeding.budget_spent(state, self.al)

    def progress(self, state: seeding.SeedState) -> tuple[int, int]:
        return int(self.problem.bands.feasible(state.values).sum()), int(state.codes.shape[0])

    def samples(self, state) -> None:
        return None

    def finalize(self, state: seeding.SeedState) -> tuple[Tensor, dict]:
        seeding.refresh(state, self.loss)
        stats = {"seed_steps": state.steps, "joint_steps": state.steps, "seed_outer": state.outer,
                 "rounds": 0, "model_evals": state.model_evals,
                 **{f"joint_{k}": v for k, v in seeding.residual_report(state, self.loss).items()}}
        inside = self.problem.bands.feasible(state.values)
        if bool(inside.any()):
            if not bool(inside.all()):
                stats["why"] = (f"{int((~inside).sum())} rows ended outside the band after "
                                f"{state.outer} outer iterations; raise max_outer")
            return state.codes[inside], stats
        best = float(state.best_violation.min())
        stats["why"] = (f"no row reached the band within {state.steps} steps; the closest came within "
                        f"{best:.4g} of it ({self.problem.bands.describe()}). The closest iterates "
                        "are returned, closest first")
        return state.best_codes[torch.argsort(state.best_violation)], stats


__all__ = ["JointConfig", "Joint"]
