"""What every part of the SMC kernel reads and never changes (``Env``: the problem, the settings,
the move kind, dtype and device, derived once from the run), and the evaluations it counts in the
state: constraint values, values with gradients, the score, the prior draws."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ...evaluate import in_domain, values_and_grads_of, values_of
from ...problem import FeasibleSet
from ..proposals import probit
from .config import SMCConfig, SMCState


@dataclass(frozen=True)
class Env:
    """The run's fixed context: ``problem``, ``cfg`` (``SMCConfig``), ``k`` (rows of the closest
    particles an unreachable band returns), ``move`` (``"reflect"`` or ``"pcn"``), ``dtype`` and
    ``device``."""

    problem: FeasibleSet
    cfg: SMCConfig
    k: int
    move: str
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, problem: FeasibleSet, cfg: SMCConfig, run) -> "Env":
        """The context of one run (``run``: the ``SamplerConfig``); a refused move fails here."""
        device, dtype = run.device_dtype(problem)
        move = ("reflect" if problem.box is not None else "pcn") if cfg.move == "auto" else cfg.move
        if move == "reflect" and problem.box is None:
            raise ValueError("move='reflect' needs a problem with a box; use move='pcn'")
        return cls(problem, cfg, run.k, move, dtype, device)


def values(env: Env, state: SMCState, codes: Tensor) -> Tensor:
    """Constraint values ``(B, m)`` of flattened codes, in batches of ``cfg.batch`` (counted)."""
    out = values_of(env.problem, codes, env.cfg.batch)
    state.model_evals += codes.shape[0]
    return out


def values_and_grads(env: Env, state: SMCState, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Values and gradients ``(B, m, D)`` in batches of ``cfg.batch`` (counted)."""
    out = values_and_grads_of(env.problem, codes, env.cfg.batch)
    state.model_evals += codes.shape[0]
    return out


def evaluate(env: Env, state: SMCState, codes: Tensor) -> tuple[Tensor, Optional[Tensor]]:
    """Values ``(B, m)`` and, when the pairs move is on (``state.grads`` is kept), gradients
    ``(B, m, D)`` of flattened codes; one evaluation per code."""
    if state.grads is None:
        return values(env, state, codes), None
    return values_and_grads(env, state, codes)


def score(env: Env, values: Tensor, scale: Tensor) -> Tensor:
    """0 inside the band (``bands.feasible``), else the largest violation beyond ``tol`` over
    the constraints, each divided by its scale; ``inf`` for NaN values."""
    bands = env.problem.bands
    excess = (bands.violation(values) - bands.tol).clamp(min=0) / scale
    score = excess.amax(1)
    return torch.where(torch.isnan(values).any(1) | torch.isnan(score), torch.full_like(score, math.inf), score)


def prior(env: Env, n: int, gen: torch.Generator) -> Tensor:
    """``n`` flattened codes from the prior: the box's uniform law (``prior_codes``), or
    ``N(0, I)`` restricted to the domain (rows outside it are drawn again)."""
    p = env.problem
    if p.box is not None:
        return p.prior_codes(n, gen, dtype=env.dtype, device=env.device).reshape(n, -1)
    codes = torch.randn((n, *p.code_shape), generator=gen, dtype=env.dtype).to(env.device).reshape(n, -1)
    for _ in range(1000):
        out = ~in_domain(p, codes)
        if not bool(out.any()):
            return codes
        fresh = torch.randn((int(out.sum()), *p.code_shape), generator=gen, dtype=env.dtype)
        codes[out] = fresh.to(env.device).reshape(fresh.shape[0], -1)
    raise ValueError("the code domain (problem.project) holds almost none of the N(0, I) prior: "
                     "raise code_radius")


def coords(env: Env, codes: Tensor) -> Tensor:
    """The coordinates the moves act in: probit coordinates for ``pcn`` on a box, else codes."""
    box = env.problem.box
    return probit(codes, *box) if env.move == "pcn" and box is not None else codes


__all__ = ["Env", "values", "values_and_grads", "evaluate", "score", "prior", "coords"]
