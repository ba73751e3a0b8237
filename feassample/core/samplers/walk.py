"""The K-at-a-time walk inside the feasible set (paper §3.3–3.4, eqs. 6, 9, 10).

K walkers start at the seeds with the seeds' final multipliers and penalties ``lambda*, mu*``,
which then stay fixed. Each round is one forward/backward pass of the K walkers: the walkers that
are inside the real band are accepted (they become samples and join the pool), then all K take a
single step of the augmented Lagrangian of eq. (10): the diversity term pushes them away from each
other and from the pool, the penalty pulls back any walker that left the band.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor

from ..diversity import Pool, PoolStats
from ..state import SampleBuffer, State
from .base import Sampler, Seeds
from .common import Loss, Moments, descend


#: default of ``WalkConfig.band_step`` (off: the cap trades the walk's spread for fewer steps)
BAND_STEP = None


@dataclass(frozen=True)
class WalkConfig:
    """Settings of the paper's walk (``method="walk"``).

    Attributes:
        walk_lr: the walk's step length (``None``: the seed phase's ``lr``).
        walk_margin: fraction of the band's width kept free by the walk's penalty target
            (``None``: the seed phase's ``seed_margin``).
        max_rounds: rounds before giving up (``None``: ``10 * ceil((n - k) / k) + 50``).
        max_idle: rounds in a row without an accepted sample before giving up (``None``: never).
        band_step: the step length follows the band's width (``None``, the default: off). With
            Adam, a step moves every coordinate by about ``lr``, so it changes ``h_j`` by about
            ``lr * |grad h_j|`` (a sum of ``D`` terms ``g_i * (+-lr)``). The rule caps the step at
            ``lr <= band_step * width_j / median |grad h_j|`` over the constraints with a finite band
            (the median over the seeds, measured once at the start of the walk, ``K`` extra
            evaluations), so that one step crosses at most a fraction ``band_step`` of the band
            (the same factor scales the plain ``"gd"`` step). Measured (``benchmarks/walk_bands.py``,
            d = 784 and 64, bands 0.2, 0.02, 5e-4 wide in z, 3 seeds): ``band_step=0.03`` keeps
            every band within 1.85x of ``walk_steps_min`` (12.6x without), but the cap also
            shortens the steps ALONG the band, so on thin bands the samples barely leave their
            seeds (mean nearest-neighbour distance 0.194 -> 0.000 on d = 784, 5e-4): fewer steps
            for copies of the seeds. It is therefore off by default; see docs/troubleshooting.md.
    """

    walk_lr: Optional[float] = None
    walk_margin: Optional[float] = None
    max_rounds: Optional[int] = None
    max_idle: Optional[int] = 200
    band_step: Optional[float] = BAND_STEP  # measured suggestion when steps matter: 0.03

    def __post_init__(self) -> None:
        if self.band_step is not None and (isinstance(self.band_step, bool) or not self.band_step > 0):
            raise ValueError(f"band_step must be > 0 or None, got {self.band_step!r}")
        if self.walk_lr is not None and not self.walk_lr > 0:
            raise ValueError(f"walk_lr must be > 0, got {self.walk_lr}")
        if self.walk_margin is not None and not 0 <= self.walk_margin < 1:
            raise ValueError(f"walk_margin must be in [0, 1), got {self.walk_margin}")
        for name in ("max_rounds", "max_idle"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {v!r}")


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
        lr: the step length in use (``0``: the configured one; set by ``band_step`` at init).
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
    lr: float = 0.0


def band_lr(problem, codes: Tensor, lr: float, band_step: float) -> tuple[float, int]:
    """The step length under ``WalkConfig.band_step``: ``min(lr, band_step * width_j / median_k
    |grad h_j(codes_k)|)`` over the constraints with a finite band, and the evaluations spent
    (one forward and backward per code)."""
    from .cover import evaluate  # the constraint gradients of flattened codes
    flat = codes.detach().reshape(codes.shape[0], -1)
    _, grads = evaluate(problem, flat)
    lo, hi = problem.bands.tensors(grads)
    width = (hi - lo).to(grads.dtype)
    gnorm = grads.norm(dim=2).median(dim=0).values  # (m,)
    finite = torch.isfinite(width) & (gnorm > 0)
    if not bool(finite.any()):
        return lr, int(flat.shape[0])
    cap = float((band_step * width[finite] / gnorm[finite]).min())
    return min(lr, cap), int(flat.shape[0])


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


def step(state: WalkState, loss: Loss, move, certify=None, seen: Optional[set] = None) -> tuple[WalkState, dict]:
    """One round: evaluate the walkers, accept those inside the band (and, with ``certify``, those
    its independent check confirms; with ``seen``, a set of the kept rows' bytes, only rows not
    kept before), take one step."""
    problem = loss.problem
    live = state.alive.nonzero().squeeze(1)
    codes = state.codes[live]
    buf = state.samples
    pool = Pool(state.pool, buf.extra["embedding"][: buf.count] if loss.objective.needs_points else None)
    ev = loss.evaluate(codes, state.multipliers[live], state.penalty[live], pool)
    state.model_evals += codes.shape[0]
    broken = ~torch.isfinite(ev.values).all(1) | ~torch.isfinite(ev.embedding).all(1)
    new = 0
    if state.rounds > 0:
        inside = problem.bands.feasible(ev.values) & ~broken
        if problem.box is not None:
            flat = codes.flatten(1)
            inside &= ((flat >= problem.box[0]) & (flat <= problem.box[1])).all(1)
        take = inside.nonzero().squeeze(1)
        if seen is not None and take.numel():
            # an optimizer's walker stuck against a wall returns the same point round after round:
            # keep a point once (new rows that repeat each other within the round count once too)
            fresh = []
            for i, row in zip(take.tolist(), codes[take].detach().cpu().numpy()):
                key = row.tobytes()
                if key not in seen:
                    seen.add(key)
                    fresh.append(i)
            take = torch.tensor(fresh, dtype=torch.long, device=codes.device)
        take = take[: buf.capacity - buf.count]
        if certify is not None and take.numel():
            _, ok = certify(codes[take])
            state.check_evals += int(take.numel())
            state.rejected_by_check += int((~ok).sum())
            take = take[ok.to(take.device)]
        if take.numel():
            walker = {"walker": live[take]} if "walker" in buf.extra else {}
            new = buf.append(codes[take], ev.values[take], embedding=ev.embedding[take], **walker)
            state.pool = state.pool.add(ev.embedding[take])
            state.idle_rounds = 0
        else:
            state.idle_rounds += 1
    moments = state.moments.rows(live)
    new_codes, moments = descend(codes, ev.grad, moments, move)
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
        self.max_rounds = cfg.max_rounds or 10 * math.ceil(max(run.n - run.k, 0) / run.k) + 50

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> WalkState:
        self.bind(problem, run)
        _, ok = problem.check(seeds.codes)  # seeds are the first samples: certify them too
        ok = ok.to(seeds.codes.device)
        state = init(seeds.codes[ok], seeds.values[ok], seeds.embedding[ok], seeds.multipliers[ok],
                     seeds.penalty[ok], run.n)
        state.check_evals = int(seeds.codes.shape[0])
        state.rejected_by_check = int((~ok).sum())
        state.seeds = int(seeds.codes.shape[0])
        if self.config.band_step is not None and state.codes.shape[0]:
            state.lr, spent = band_lr(problem, state.codes, self.move.lr, self.config.band_step)
            state.model_evals += spent
        return state

    def step(self, state: WalkState) -> tuple[WalkState, dict]:
        move = replace(self.move, lr=state.lr) if state.lr > 0 else self.move
        if getattr(self, "_seen_of", None) is not state:  # the kept rows, as bytes (rebuilt on resume)
            buf = state.samples
            self._seen = {row.tobytes() for row in buf.codes[: buf.count].detach().cpu().numpy()}
            self._seen_of = state
        return step(state, self.loss, move, certify=self.problem.check, seen=self._seen)

    def done(self, state: WalkState) -> bool:
        return done(state, self.max_rounds, self.config.max_idle)

    def finalize(self, state: WalkState) -> tuple[Tensor, dict]:
        n, k = self.run.n, self.run.k
        stats = {"walk_steps": state.rounds, "walk_evals": state.model_evals,
                 "model_evals": state.model_evals, "check_evals": state.check_evals,
                 "rejected_by_check": state.rejected_by_check,
                 "nan_walkers": int((~state.alive).sum()),
                 "walk_steps_min": math.ceil(max(n - state.seeds, 0) / k),
                 "walk_lr": state.lr if state.lr > 0 else self.move.lr}
        if not state.samples.full:
            if not bool(state.alive.any()):
                why = "every walker's model output became NaN or infinite"
            elif self.config.max_idle is not None and state.idle_rounds >= self.config.max_idle:
                why = f"the walk stalled ({self.config.max_idle} rounds without a new sample)"
            else:
                why = f"the round budget ({self.max_rounds}) ran out"
            stats["why"] = f"{why}. Raise max_rounds, lower walk_lr, or widen the band"
        elif stats["nan_walkers"]:
            stats["why"] = f"{stats['nan_walkers']} walker(s) stopped: non-finite model output"
        return state.samples.codes[: state.samples.count], stats


__all__ = ["WalkConfig", "WalkState", "Walk", "init", "step", "done"]
