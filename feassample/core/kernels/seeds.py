"""The seeding phase (paper §3.4, eq. 8) and, with ``freeze=False``, the joint solve (eq. 5/15).

B codes are optimized together by the augmented Lagrangian: ``inner_steps`` gradient steps per
outer iteration, then the multiplier and penalty updates. With ``freeze=True`` (seeding) a row
stops moving as soon as it is inside the target band (the real band shrunk by the seed margin)
and joins the frozen pool that the others are pushed away from: this is the paper's "stop as soon
as all K are feasible", done per row so no model evaluation is spent on finished rows.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
from torch import Tensor

from ..bands import Bands
from ..diversity import Pool
from ..lagrangian import (ALConfig, grow_penalty, initial_multipliers, max_violation,
                          residuals, side_masks, update_multipliers)
from ..state import State
from ..options import option
from .base import Sampler, Seeds
from .common import Loss, Moments, StepConfig, descend


@dataclass(frozen=True)
class SeedConfig(ALConfig):
    """Settings of the seed phase (and of the joint solve): the augmented Lagrangian's fields
    (``ALConfig``: penalty0, growth, inner_steps, max_outer, penalty_rule, lr_decay...) plus the
    step rule and the margin.

    Attributes:
        optimizer, lr: the step rule (``"adam"`` or the paper's plain ``"gd"``) and its length.
        seed_margin: fraction of the band's width kept free on each side by the target band
            (0.5 is the paper's ``eps0 = eps/2``).
    """

    optimizer: str = option("adam", choices=("adam", "gd"))
    lr: float = option(0.05, gt=0)
    seed_margin: float = option(0.5, ge=0, lt=1)

    def __post_init__(self) -> None:
        super().__post_init__()  # checks every field (check_options), then ALConfig's cross-checks

    def al(self) -> ALConfig:
        """The augmented-Lagrangian part of these settings."""
        return ALConfig(**{f.name: getattr(self, f.name) for f in fields(ALConfig)})

    def step_rule(self, lr: Optional[float] = None) -> StepConfig:
        return StepConfig(optimizer=self.optimizer, lr=self.lr if lr is None else lr)


@dataclass
class SeedState(State):
    """Everything the seeding phase carries from step to step (a value you can save).

    Attributes:
        codes: ``(B, *code_shape)`` current codes.
        frozen: ``(B,)`` rows that reached the target band and stopped.
        multipliers: ``(B, m, 2)``; penalty: ``(B,)``.
        moments: the optimizer's state.
        values: ``(B, m)`` constraint values at the last evaluation of each row (NaN: never).
        embedding: ``(B, p)`` embeddings at the last evaluation (used as the frozen pool).
        best_violation: ``(B,)`` smallest violation of the real band seen per row.
        best_codes: ``(B, *code_shape)`` the codes where it was seen.
        steps: batched gradient steps taken; outer: outer iterations completed.
        model_evals: per-sample forward passes spent.
        stationarity: ``(B,)`` norm of the (projected) gradient at the last step of each row.
        outer_violation: ``(B,)`` violation at the last outer update (for ``penalty_rule``).
        dead: ``(B,)`` rows stopped because the model returned NaN or infinity for them.
    """

    codes: Tensor
    frozen: Tensor
    multipliers: Tensor
    penalty: Tensor
    moments: Moments
    values: Tensor
    embedding: Optional[Tensor]
    best_violation: Tensor
    best_codes: Tensor
    steps: int = 0
    outer: int = 0
    model_evals: int = 0
    stationarity: Optional[Tensor] = None
    outer_violation: Optional[Tensor] = None
    dead: Optional[Tensor] = None


def init(codes: Tensor, m: int, al: ALConfig) -> SeedState:
    """A fresh state for starting codes ``(B, ...)`` (zero multipliers, ``rho = rho0``)."""
    b = codes.shape[0]
    return SeedState(
        codes=codes.detach().clone(),
        frozen=torch.zeros(b, dtype=torch.bool, device=codes.device),
        multipliers=initial_multipliers(b, m, codes),
        penalty=torch.full((b,), al.penalty0, dtype=codes.dtype, device=codes.device),
        moments=Moments.zeros(codes),
        values=torch.full((b, m), float("nan"), dtype=codes.dtype, device=codes.device),
        embedding=None,
        best_violation=torch.full((b,), float("inf"), dtype=codes.dtype, device=codes.device),
        best_codes=codes.detach().clone(),
        stationarity=torch.full((b,), float("nan"), dtype=codes.dtype, device=codes.device),
        outer_violation=torch.full((b,), float("inf"), dtype=codes.dtype, device=codes.device),
        dead=torch.zeros(b, dtype=torch.bool, device=codes.device),
    )


def _projected_grad_norm(codes: Tensor, grad: Tensor, box) -> Tensor:
    """Norm of the gradient with components that push against an active box bound removed."""
    if box is not None:
        at_lo = (codes <= box[0]) & (grad > 0)
        at_hi = (codes >= box[1]) & (grad < 0)
        grad = torch.where(at_lo | at_hi, torch.zeros_like(grad), grad)
    return grad.flatten(1).norm(dim=1)


def step(state: SeedState, loss: Loss, bands: Bands, al: ALConfig, move: StepConfig,
         freeze: bool = True, pool: Optional[Pool] = None) -> SeedState:
    """One batched gradient step on the unfinished rows (and the outer update when it is due).

    Args:
        state: the current state (updated in place and returned).
        loss: the per-step loss (problem, diversity, target band).
        bands: the real band (for best-iterate bookkeeping).
        al: augmented-Lagrangian settings.
        move: step rule.
        freeze: stop rows once inside the target band (seeding) or not (joint solve).
        pool: an external frozen pool to stay away from (e.g. earlier samples), or ``None``.
    """
    problem = loss.problem
    active = (~state.frozen).nonzero().squeeze(1)
    codes = state.codes[active]
    mult, pen = state.multipliers[active], state.penalty[active]

    # Frozen rows enter the objective as the pool (their statistics, and their points for
    # objectives that need them).
    frozen_pool = pool
    pooled = state.frozen & ~state.dead
    if state.embedding is not None and bool(pooled.any()):
        frozen_pool = Pool.of(state.embedding[pooled], keep_points=loss.objective.needs_points)
        if pool is not None:
            frozen_pool = pool.merge(frozen_pool)

    # Outer iteration boundary: update multipliers and penalty from the residuals of the last
    # evaluation (one step old, which saves a forward pass per outer iteration).
    if state.steps > 0 and state.steps % al.inner_steps == 0:
        last = state.values[active]
        lo, hi = loss.target.tensors(last)
        masks = side_masks(loss.target, last)
        c = residuals(last, lo, hi, masks)
        mult = update_multipliers(c, mult, pen, masks, al.multiplier_max)
        viol = torch.nan_to_num(max_violation(c, masks), nan=float("inf"))
        pen = grow_penalty(pen, ~loss.target.feasible(last), al, viol, state.outer_violation[active])
        state.outer_violation[active] = viol
        state.outer += 1

    ev = loss.evaluate(codes, mult, pen, frozen_pool)
    state.model_evals += codes.shape[0]
    b = codes.shape[0]
    if state.embedding is None:
        state.embedding = torch.zeros(state.codes.shape[0], ev.embedding.shape[1],
                                      dtype=ev.embedding.dtype, device=ev.embedding.device)
    state.values[active] = ev.values
    state.embedding[active] = ev.embedding

    viol = bands.violation(ev.values).amax(dim=1) if b else ev.values.new_zeros(0)
    viol = torch.nan_to_num(viol, nan=float("inf"))
    better = viol < state.best_violation[active]
    state.best_violation[active] = torch.where(better, viol, state.best_violation[active])
    state.best_codes[active[better]] = codes[better]

    finished = loss.target.feasible(ev.values) if freeze else torch.zeros(b, dtype=torch.bool,
                                                                           device=codes.device)
    # A row whose model output is NaN/inf stops here (reported), the others go on.
    broken = ~torch.isfinite(ev.values).all(1) | ~torch.isfinite(ev.embedding).all(1)
    if bool(broken.any()):
        state.dead[active[broken]] = True
        finished = finished | broken
    moving = ~finished
    if al.lr_decay != 1.0:
        move = replace(move, lr=move.lr * al.lr_decay ** state.outer)
    new_codes, moments = descend(codes, ev.grad, state.moments.rows(active), move)
    new_codes = problem.project(new_codes)
    keep = moving.view((-1,) + (1,) * (codes.dim() - 1))
    state.codes[active] = torch.where(keep, new_codes, codes)
    state.moments.put(active, moments)
    state.multipliers[active], state.penalty[active] = mult, pen
    state.stationarity[active] = _projected_grad_norm(codes, ev.grad, problem.box)
    state.frozen[active] = finished
    state.steps += 1
    return state


def refresh(state: SeedState, loss: Loss) -> SeedState:
    """Re-measure the rows that moved after their last evaluation (unfrozen rows), so that
    ``values`` and ``embedding`` describe the final codes."""
    moved = (~state.frozen).nonzero().squeeze(1)
    if moved.numel():
        with torch.no_grad():
            codes = state.codes[moved]
            x = loss.problem.decode(codes)
            meas = loss.problem.measure(x)
            state.values[moved] = meas.values.detach()
            if state.embedding is not None:
                state.embedding[moved] = loss.embed(codes, x, meas.embedding).detach()
        state.model_evals += moved.numel()
    return state


def budget_spent(state: SeedState, al: ALConfig) -> bool:
    """True once ``max_outer`` outer iterations of ``inner_steps`` steps have run."""
    return state.steps >= al.max_outer * al.inner_steps


def done(state: SeedState, al: ALConfig) -> bool:
    """Seeding ends when every row is frozen or the budget is spent."""
    return bool(state.frozen.all()) or budget_spent(state, al)


def residual_report(state: SeedState, loss: Loss) -> dict:
    """KKT residuals of the last iterate: max violation (real band) and max stationarity."""
    masks = side_masks(loss.target, state.values)
    lo, hi = loss.target.tensors(state.values)
    viol = max_violation(residuals(state.values, lo, hi, masks), masks)
    return {"max_violation": float(torch.nan_to_num(viol, nan=float("inf")).max()) if viol.numel() else 0.0,
            "max_stationarity": float(torch.nan_to_num(state.stationarity, nan=0.0).max())
            if state.stationarity is not None and state.stationarity.numel() else 0.0}


def initial_codes(problem, count: int, run, key: int) -> Tensor:
    """Starting codes ``(count, *code_shape)``: ``run.initial_codes`` when given, else draws from
    the problem's prior (``init_codes``) with a generator seeded by ``key``; projected."""
    device, dtype = run.device_dtype(problem)
    if run.initial_codes is not None:
        return problem.project(run.initial_codes.detach().to(device=device, dtype=dtype).clone())
    generator = torch.Generator(device="cpu").manual_seed(int(key))
    codes = problem.init_codes(count, generator, dtype=dtype, device=device)
    return problem.project(codes.to(device=device, dtype=dtype))


class SeedPhase(Sampler):
    """The shared seed phase: ``k`` codes optimized by the augmented Lagrangian until each is
    inside the target band (paper §3.4, eq. 8). Methods with ``needs_seeds`` start from it."""

    name = "seeds"
    Config = SeedConfig
    state_class = SeedState
    checkpoint_every_s = 2.0

    def bind(self, problem, run) -> None:
        super().bind(problem, run)
        self.al = self.config.al()
        self.move = self.config.step_rule()
        self.loss = Loss(problem, run.diversity(), problem.bands.shrink(self.config.seed_margin))

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> SeedState:
        self.bind(problem, run)
        return init(initial_codes(problem, run.k, run, key), problem.bands.m, self.al)

    def step(self, state: SeedState) -> tuple[SeedState, dict]:
        state = step(state, self.loss, self.problem.bands, self.al, self.move)
        worst = float(state.best_violation.max()) if state.best_violation.numel() else 0.0
        return state, {"step": state.steps, "outer": state.outer, "max_violation": worst}

    def done(self, state: SeedState) -> bool:
        return done(state, self.al)

    def progress(self, state: SeedState) -> tuple[int, int]:
        return int(state.frozen.sum()), int(state.frozen.numel())

    def samples(self, state: SeedState) -> None:
        return None

    def finalize(self, state: SeedState) -> tuple[Tensor, dict]:
        refresh(state, self.loss)
        usable = self.problem.bands.feasible(state.values)
        stats = {"seed_steps": state.steps, "seed_outer": state.outer, "seed_evals": state.model_evals,
                 "seeds_accepted": int(usable.sum()), "model_evals": state.model_evals,
                 **{f"seed_{k}": v for k, v in residual_report(state, self.loss).items()}}
        if bool(usable.any()):
            return state.codes[usable], stats
        best = float(state.best_violation.min())
        stats["why"] = (f"no starting point reached the band within {state.steps} steps ({state.outer} "
                        f"outer iterations); the closest came within {best:.4g} of it "
                        f"({self.problem.bands.describe()}). The band may be unreachable: widen it, or "
                        "raise max_outer. The closest iterates are returned, closest first")
        return state.best_codes[torch.argsort(state.best_violation)], stats

    def handoff(self, state: SeedState) -> Optional[Seeds]:
        usable = self.problem.bands.feasible(state.values)
        if not bool(usable.any()):
            return None
        idx = usable.nonzero().squeeze(1)
        return Seeds(state.codes[idx], state.values[idx], state.embedding[idx],
                     state.multipliers[idx], state.penalty[idx], state.model_evals)
