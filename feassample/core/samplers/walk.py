"""The K-at-a-time walk inside the feasible set (paper §3.3–3.4, eqs. 6, 9, 10).

K walkers start at the seeds with the seeds' final multipliers and penalties ``lambda*, mu*``,
which then stay fixed. Each round is one forward/backward pass of the K walkers: the walkers that
are inside the real band are accepted (they become samples and join the pool), then all K take a
single step of the augmented Lagrangian of eq. (10): the diversity term pushes them away from each
other and from the pool, the penalty pulls back any walker that left the band.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..bands import Bands
from ..diversity import PoolStats
from .common import Loss, Moments, StepConfig, descend


@dataclass
class WalkState:
    """Everything the walk carries from round to round.

    Attributes:
        codes: ``(K, *code_shape)`` the walkers.
        multipliers: ``(K, m, 2)`` and penalty ``(K,)``: fixed at the seeds' final values.
        moments: the optimizer's state.
        sample_codes: ``(n, *code_shape)`` accepted codes; the first ``accepted`` rows are filled.
        sample_values: ``(n, m)`` their constraint values (from the walk's forward pass).
        sample_embedding: ``(n, p)`` their embeddings (the pool).
        pool: running sums of the pool's embeddings.
        accepted: number of samples so far; rounds: walk steps taken.
        model_evals: per-sample forward passes spent in the walk.
        idle_rounds: rounds since the last acceptance.
        alive: ``(K,)`` walkers still moving (a walker stops when the model returns NaN/inf).
    """

    codes: Tensor
    multipliers: Tensor
    penalty: Tensor
    moments: Moments
    sample_codes: Tensor
    sample_values: Tensor
    sample_embedding: Tensor
    pool: PoolStats
    accepted: int = 0
    rounds: int = 0
    model_evals: int = 0
    idle_rounds: int = 0
    alive: Optional[Tensor] = None


def init(seeds: Tensor, seed_values: Tensor, seed_embedding: Tensor, multipliers: Tensor,
         penalty: Tensor, n: int) -> WalkState:
    """Walkers at the accepted seeds ``(K, ...)``, which are also the first samples."""
    k = seeds.shape[0]
    if k > n:
        seeds, seed_values, seed_embedding = seeds[:n], seed_values[:n], seed_embedding[:n]
        multipliers, penalty, k = multipliers[:n], penalty[:n], n
    sample_codes = seeds.new_zeros((n, *seeds.shape[1:]))
    sample_values = seed_values.new_zeros((n, seed_values.shape[1]))
    sample_embedding = seed_embedding.new_zeros((n, seed_embedding.shape[1]))
    sample_codes[:k], sample_values[:k], sample_embedding[:k] = seeds, seed_values, seed_embedding
    return WalkState(codes=seeds.detach().clone(), multipliers=multipliers.clone(),
                     penalty=penalty.clone(), moments=Moments.zeros(seeds),
                     sample_codes=sample_codes, sample_values=sample_values,
                     sample_embedding=sample_embedding, pool=PoolStats.of(seed_embedding),
                     accepted=k, alive=torch.ones(k, dtype=torch.bool, device=seeds.device))


def step(state: WalkState, loss: Loss, bands: Bands, move: StepConfig) -> WalkState:
    """One round: evaluate the walkers, accept those inside the band, take one step."""
    live = state.alive.nonzero().squeeze(1)
    codes = state.codes[live]
    ev = loss.evaluate(codes, state.multipliers[live], state.penalty[live], state.pool)
    state.model_evals += codes.shape[0]
    broken = ~torch.isfinite(ev.values).all(1) | ~torch.isfinite(ev.embedding).all(1)
    if state.rounds > 0:
        inside = bands.feasible(ev.values) & ~broken
        if loss.problem.box is not None:
            flat = codes.flatten(1)
            inside &= ((flat >= loss.problem.box[0]) & (flat <= loss.problem.box[1])).all(1)
        take = inside.nonzero().squeeze(1)[: state.sample_codes.shape[0] - state.accepted]
        if take.numel():
            a, b = state.accepted, state.accepted + take.numel()
            state.sample_codes[a:b] = codes[take]
            state.sample_values[a:b] = ev.values[take]
            state.sample_embedding[a:b] = ev.embedding[take]
            state.pool = state.pool.add(ev.embedding[take])
            state.accepted = b
            state.idle_rounds = 0
        else:
            state.idle_rounds += 1
    moments = state.moments.rows(live)
    new_codes, moments = descend(codes, ev.grad, moments, move)
    state.codes[live] = loss.problem.project(new_codes)
    state.moments.put(live, moments)
    if bool(broken.any()):  # stop walkers whose model output is NaN/inf; the others go on
        state.alive[live[broken]] = False
    state.rounds += 1
    return state


def done(state: WalkState, max_rounds: int, max_idle: Optional[int] = None) -> bool:
    """The walk ends with ``n`` samples, after ``max_rounds``, after ``max_idle`` idle rounds, or
    when no walker is left."""
    if state.accepted >= state.sample_codes.shape[0] or state.rounds >= max_rounds:
        return True
    if not bool(state.alive.any()):
        return True
    return max_idle is not None and state.idle_rounds >= max_idle


def drop(state: WalkState, keep: Tensor) -> WalkState:
    """Remove samples that failed certification (``keep``: ``(accepted,)`` bool) from the pool."""
    a = state.accepted
    kept = keep.nonzero().squeeze(1)
    codes, values, emb = state.sample_codes[:a][kept], state.sample_values[:a][kept], state.sample_embedding[:a][kept]
    state.sample_codes[: kept.numel()], state.sample_values[: kept.numel()] = codes, values
    state.sample_embedding[: kept.numel()] = emb
    state.accepted = kept.numel()
    state.pool = PoolStats.of(emb) if kept.numel() else PoolStats.empty(emb.shape[1], emb)
    return state


def resize(state: WalkState, n: int) -> WalkState:
    """The same walk with room for ``n`` samples (to continue a resumed run to a larger n)."""
    if n < state.accepted:
        raise ValueError(f"cannot resume to n={n}: the run already has {state.accepted} samples")
    def grow(t: Tensor) -> Tensor:
        out = t.new_zeros((n, *t.shape[1:]))
        out[: state.accepted] = t[: state.accepted]
        return out
    state.sample_codes = grow(state.sample_codes)
    state.sample_values = grow(state.sample_values)
    state.sample_embedding = grow(state.sample_embedding)
    return state
