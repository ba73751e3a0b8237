"""The K-at-a-time walk inside the feasible set (paper §3.3–3.4, eqs. 6, 9, 10).

K walkers start at the seeds with the seeds' final multipliers and penalties ``lambda*, mu*``,
which then stay fixed. Each round is one forward/backward pass of the K walkers: the walkers that
are inside the real band are accepted (they become samples and join the pool), then all K take a
single step of the augmented Lagrangian of eq. (10): the diversity term pushes them away from each
other and from the pool, the penalty pulls back any walker that left the band.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..diversity import Pool, PoolStats
from ..driver.emit import keep_certified
from ..options import check_options, option
from ..state import SampleBuffer, State
from .base import Sampler, Seeds
from .common import Loss, Moments, descend


#: default of ``WalkConfig.band_step``
BAND_STEP = 0.5

#: the least fraction of the band kept free at each end by the folded move across it (float32
#: rounding of a step moves h by about D * 6e-8 * |grad h|_inf)
FOLD_EDGE = 0.01


@dataclass(frozen=True)
class WalkConfig:
    """Settings of the paper's walk (``method="walk"``).

    Attributes:
        walk_lr: the walk's step length (``None``: the seed phase's ``lr``).
        walk_margin: fraction of the band's width kept free by the walk's penalty target
            (``None``: the seed phase's ``seed_margin``).
        max_rounds: rounds before giving up (``None``: ``10 * ceil((n - k) / k) + 50``).
        max_idle: rounds in a row without an accepted sample before giving up (``None``: never).
        band_step: the walk's step across the band follows the band's width (the default,
            ``BAND_STEP``; ``None``: off, the paper's plain step). Per walker, the step splits into
            its part along the constraint gradients (across the band) and the rest (along the
            band); the part along the band is untouched. For a walker inside the band, the part
            across moves ``h`` to ``h + dh`` folded back (reflected) into the walk's target band;
            for a walker outside, each ``h_j`` moves at most ``band_step`` times its room to the
            band's end it moves to. In a box, the limit applies to the step after clipping.
            It costs ``m`` vector-Jacobian products per walker and round through the walk's own
            forward pass (``stats["vjp_evals"]``). Measured in docs/coverage.md (thin bands).
    """

    walk_lr: Optional[float] = option(None, gt=0)
    walk_margin: Optional[float] = option(None, ge=0, lt=1)
    max_rounds: Optional[int] = option(None, ge=1)
    max_idle: Optional[int] = option(200, ge=1)
    band_step: Optional[float] = option(BAND_STEP, gt=0, le=1)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class WalkState(State):
    """Everything the walk carries from round to round.

    Attributes:
        codes: ``(K, *code_shape)`` the walkers.
        multipliers: ``(K, m, 2)`` and penalty ``(K,)``: fixed at the seeds' final values.
        moments: the optimizer's state.
        samples: the accepted samples (codes, values and, in ``extra["embedding"]``, the
            embeddings that form the pool).
        pool: running sums of the pool's embeddings.
        rounds: walk steps taken; model_evals: per-sample forward passes spent in the walk.
        idle_rounds: rounds since the last acceptance.
        alive: ``(K,)`` walkers still moving (a walker stops when the model returns NaN/inf).
        seeds: seeds the walk started from; seed_evals: the seed phase's evaluations.
        check_evals, rejected_by_check: certification passes and refusals.
        vjp_evals: per-sample vector-Jacobian products beyond ``model_evals`` (``band_step``).
        max_rounds: rounds before the walk gives up (fixed at init).
    """

    codes: Tensor
    multipliers: Tensor
    penalty: Tensor
    moments: Moments
    samples: SampleBuffer
    pool: PoolStats
    rounds: int = 0
    model_evals: int = 0
    idle_rounds: int = 0
    alive: Optional[Tensor] = None
    seeds: int = 0
    check_evals: int = 0
    rejected_by_check: int = 0
    vjp_evals: int = 0
    max_rounds: int = 0


def _toward(g: Tensor, err: Tensor, free: Optional[Tensor]) -> Tensor:
    """The least-norm step ``(B, D)`` in the span of ``g`` (restricted to the ``free`` coordinates)
    that changes ``g @ step`` by ``err`` ``(B, m)``."""
    if free is not None:
        g = g * free.unsqueeze(1)
    gram = g @ g.transpose(1, 2)                  # (B, m, m); the pseudo-inverse skips dead rows
    coef = (torch.linalg.pinv(gram, hermitian=True) @ err.unsqueeze(-1)).squeeze(-1)
    return torch.einsum("bmd,bm->bd", g, coef)


def limit_across(codes: Tensor, proposed: Tensor, values: Tensor, grads: Tensor, lo: Tensor,
                 hi: Tensor, band_step: float, box: Optional[tuple] = None,
                 refine: int = 4, fold: Optional[tuple] = None) -> Tensor:
    """The step ``proposed - codes`` with its part across the band limited (``WalkConfig.band_step``).

    Per row: the step ``s`` splits into its projection onto the span of the constraint gradients
    ``G`` (``(m, D)``, the normal part) and the rest (the tangent part, kept as is). The predicted
    change ``dh = G s`` is clipped, per constraint, to ``band_step`` times the room left towards the
    band's end it moves to (zero room when it moves further out of the band); for a row inside the
    band and a ``fold`` interval ``(a, b)`` (``(m,)`` each, inside the band), ``h + dh`` is instead
    folded back into ``[a, b]`` (reflected at its ends), so that the walker keeps moving across the
    band without leaving it and without settling on its edge. The normal part is
    replaced by the least-norm vector in the span of ``G`` with that change, ``G^T (G G^T)^+ dh'``.
    In a box, the clipping at the walls changes ``G s`` again; up to ``refine`` more corrections,
    each on the coordinates strictly inside the box, bring it back to ``dh'``. Rows with a
    non-finite value, and constraints with an infinite end, are left alone.

    Args:
        codes, proposed: ``(B, ...)`` the walkers and the optimizer's proposal (inside the box).
        values: ``(B, m)`` the constraint values at ``codes``; grads: ``(B, m, D)`` their gradients.
        lo, hi: ``(m,)`` the band's ends (the real band, the one a sample must be inside).
        band_step: the fraction of the room one step may use.
        box: ``(low, high)`` of the codes, or ``None``.
        refine: corrections after the box's clipping.
        fold: ``(a, b)`` where moves of rows inside the band fold back into, or ``None``.
    Returns:
        ``(B, ...)`` the new codes, inside the box.
    """
    shape, dtype = codes.shape, codes.dtype
    g = grads.double()
    x0 = codes.reshape(shape[0], -1).double()
    step_ = proposed.reshape(shape[0], -1).double() - x0
    h, lo, hi = values.double(), lo.double().to(values.device), hi.double().to(values.device)
    dh = torch.einsum("bmd,bd->bm", g, step_)
    up = band_step * (hi - h).clamp(min=0)       # room when h moves up, inf for an open end
    down = band_step * (h - lo).clamp(min=0)
    target = torch.minimum(torch.maximum(dh, -down), up)
    if fold is not None:  # inside the band: the move across folds back into ``fold``, no pinning
        a_, b_ = fold[0].double().to(h.device), fold[1].double().to(h.device)
        span = b_ - a_
        inner = (h >= lo) & (h <= hi) & torch.isfinite(span) & (span > 0)
        y = torch.remainder(h + dh - a_, torch.where(inner, 2 * span, torch.ones_like(span)))
        folded = a_ + torch.where(y > span, 2 * span - y, y) - h
        target = torch.where(inner, folded, target)
    target = torch.where(torch.isfinite(h), target, dh)
    step_ = step_ + _toward(g, target - dh, None)
    if box is not None:
        low, high = (float(box[0]), float(box[1])) if not torch.is_tensor(box[0]) else \
            (box[0].double().reshape(1, -1), box[1].double().reshape(1, -1))
        for _ in range(refine):
            x = torch.clamp(x0 + step_, low, high)
            step_ = x - x0
            err = target - torch.einsum("bmd,bd->bm", g, step_)
            free = ((x > low) & (x < high)).to(g.dtype)
            step_ = step_ + _toward(g, err, free)
        step_ = torch.clamp(x0 + step_, low, high) - x0
    return (x0 + step_).to(dtype).reshape(shape)


def init(seeds: Tensor, seed_values: Tensor, seed_embedding: Tensor, multipliers: Tensor,
         penalty: Tensor, n: int) -> WalkState:
    """Walkers at the accepted seeds ``(K, ...)``, which are also the first samples."""
    k = seeds.shape[0]
    if k > n:
        seeds, seed_values, seed_embedding = seeds[:n], seed_values[:n], seed_embedding[:n]
        multipliers, penalty, k = multipliers[:n], penalty[:n], n
    walker = torch.arange(k, device=seeds.device)  # which walker kept each row (diagnostics)
    buffer = SampleBuffer.empty(n, seeds, seed_values, embedding=seed_embedding, walker=walker)
    buffer.append(seeds, seed_values, embedding=seed_embedding, walker=walker)
    return WalkState(codes=seeds.detach().clone(), multipliers=multipliers.clone(),
                     penalty=penalty.clone(), moments=Moments.zeros(seeds), samples=buffer,
                     pool=PoolStats.of(seed_embedding), seeds=k,
                     alive=torch.ones(k, dtype=torch.bool, device=seeds.device))


def _unseen(codes: Tensor, take: Tensor, buf: SampleBuffer) -> Tensor:
    """The rows ``take`` of ``codes`` whose code is not kept in ``buf`` yet, each code once (its
    first row): an optimizer's walker stuck against a wall returns the same point round after
    round, and a point is kept once."""
    if take.numel() == 0:
        return take
    cand = codes[take].flatten(1)
    kept = buf.codes[: buf.count].flatten(1)
    old = torch.zeros(cand.shape[0], dtype=torch.bool, device=cand.device)
    if kept.shape[0]:
        # a few coordinates first ((K, n, 4) compares, not (K, n, D)): only the kept rows that
        # agree there are compared in full
        pairs = (cand[:, None, :4] == kept[None, :, :4].to(cand)).all(-1).nonzero()
        full = (cand[pairs[:, 0]] == kept[pairs[:, 1]].to(cand)).all(1)
        old[pairs[full, 0]] = True
    same = (cand[:, None, :] == cand[None]).all(-1)
    first = ~torch.tril(same, diagonal=-1).any(1)  # no earlier row of the round has this code
    return take[~old & first]


def step(state: WalkState, loss: Loss, move, certify: bool = True, dedup: bool = True,
         band_step: Optional[float] = None) -> tuple[WalkState, dict]:
    """One round: evaluate the walkers, keep those inside the band (certified by the problem's
    independent check, ``driver.emit.keep_certified``, with ``certify``; with ``dedup``, only codes
    not kept before), take one step (with ``band_step``, its part across the band limited)."""
    problem = loss.problem
    live = state.alive.nonzero().squeeze(1)
    codes = state.codes[live]
    buf = state.samples
    pool = Pool(state.pool, buf.extra["embedding"][: buf.count] if loss.objective.needs_points else None)
    ev = loss.evaluate(codes, state.multipliers[live], state.penalty[live], pool,
                       value_grads=band_step is not None)
    state.model_evals += codes.shape[0]
    if band_step is not None:
        state.vjp_evals += codes.shape[0] * problem.bands.m
    broken = ~torch.isfinite(ev.values).all(1) | ~torch.isfinite(ev.embedding).all(1)
    new = 0
    if state.rounds > 0:
        inside = problem.bands.feasible(ev.values) & ~broken
        if problem.box is not None:
            flat = codes.flatten(1)
            inside &= ((flat >= problem.box[0]) & (flat <= problem.box[1])).all(1)
        take = inside.nonzero().squeeze(1)
        if dedup:
            take = _unseen(codes, take, buf)
        take = take[: buf.capacity - buf.count]
        if certify and take.numel():
            kept = keep_certified(problem, buf, codes[take], ev.values[take], walker=live[take],
                                  columns={"embedding": ev.embedding[take]})
            state.check_evals += kept.evals
            state.rejected_by_check += kept.refused
            take, new = take[kept.ok], kept.kept
        elif take.numel():
            new = buf.append(codes[take], ev.values[take], embedding=ev.embedding[take], walker=live[take])
        if take.numel():
            state.pool = state.pool.add(ev.embedding[take])
            state.idle_rounds = 0
        else:
            state.idle_rounds += 1
    moments = state.moments.rows(live)
    new_codes, moments = descend(codes, ev.grad, moments, move)
    if band_step is not None:  # the box clips first, so the limit sees the step actually taken
        lo, hi = problem.bands.tensors(ev.values)
        a, b = loss.target.tensors(ev.values)  # the walk's target band, at least FOLD_EDGE inside
        a = torch.maximum(a, lo + FOLD_EDGE * (hi - lo))
        b = torch.minimum(b, hi - FOLD_EDGE * (hi - lo))
        new_codes = limit_across(codes, problem.project(new_codes), ev.values, ev.value_grads,
                                 lo, hi, band_step, box=problem.box, fold=(a, b))
    state.codes[live] = problem.project(new_codes)
    state.moments.put(live, moments)
    if bool(broken.any()):  # stop walkers whose model output is NaN/inf; the others go on
        state.alive[live[broken]] = False
    state.rounds += 1
    return state, {"round": state.rounds, "accepted": new}


def done(state: WalkState, max_rounds: int, max_idle: Optional[int] = None) -> bool:
    """The walk ends with ``n`` samples, after ``max_rounds``, after ``max_idle`` idle rounds, or
    when no walker is left."""
    if state.samples.full or state.rounds >= max_rounds:
        return True
    if not bool(state.alive.any()):
        return True
    return max_idle is not None and state.idle_rounds >= max_idle


class Walk(Sampler):
    """The paper's K-at-a-time walk (``method="walk"``): seeds, then one augmented-Lagrangian step
    per round with the seeds' multipliers fixed, accepting the walkers inside the band."""

    name = "walk"
    Config = WalkConfig
    state_class = WalkState
    needs_seeds = True

    def bind(self, problem, run) -> None:
        super().bind(problem, run)
        seeding, cfg = run.seeding, self.config
        margin = seeding.seed_margin if cfg.walk_margin is None else cfg.walk_margin
        self.loss = Loss(problem, run.diversity(), problem.bands.shrink(margin))
        self.move = seeding.step_rule(lr=cfg.walk_lr)

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> WalkState:
        self.bind(problem, run)
        _, ok = problem.check(seeds.codes)  # seeds are the first samples: certify them too
        ok = ok.to(seeds.codes.device)
        state = init(seeds.codes[ok], seeds.values[ok], seeds.embedding[ok], seeds.multipliers[ok],
                     seeds.penalty[ok], run.n)
        state.check_evals = int(seeds.codes.shape[0])
        state.rejected_by_check = int((~ok).sum())
        state.seeds = int(seeds.codes.shape[0])
        state.max_rounds = self.config.max_rounds or 10 * math.ceil(max(run.n - run.k, 0) / run.k) + 50
        return state

    def step(self, state: WalkState) -> tuple[WalkState, dict]:
        return step(state, self.loss, self.move, band_step=self.config.band_step)

    def done(self, state: WalkState) -> bool:
        return done(state, state.max_rounds, self.config.max_idle)

    def finalize(self, state: WalkState) -> tuple[Tensor, dict]:
        n, k = self.run.n, self.run.k
        stats = {"rounds": state.rounds, "model_evals": state.model_evals, "check_evals": state.check_evals,
                 "rejected_by_check": state.rejected_by_check,
                 "nan_walkers": int((~state.alive).sum()),
                 "rounds_min": math.ceil(max(n - state.seeds, 0) / k),
                 "walk_lr": self.move.lr}
        if self.config.band_step is not None:
            stats["vjp_evals"] = state.vjp_evals
        if not state.samples.full:
            if not bool(state.alive.any()):
                why = "every walker's model output became NaN or infinite"
            elif self.config.max_idle is not None and state.idle_rounds >= self.config.max_idle:
                why = f"the walk stalled ({self.config.max_idle} rounds without a new sample)"
            else:
                why = f"the round budget ({state.max_rounds}) ran out"
            stats["why"] = f"{why}. Raise max_rounds, lower walk_lr, or widen the band"
        elif stats["nan_walkers"]:
            stats["why"] = f"{stats['nan_walkers']} walker(s) stopped: non-finite model output"
        return state.samples.codes[: state.samples.count], stats


__all__ = ["WalkConfig", "WalkState", "Walk", "init", "step", "done", "limit_across"]
