"""The covering walk's kernel: ``init`` (walkers at the seeds), ``step`` (one round of the
schedule's move; after the burn-in, every ``thin`` rounds the walkers' codes are certified and
kept), ``done``, and ``Cover``, the sampler that runs them after the shared seed phase."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...driver.emit import keep_certified
from ...driver.passes import judge_pass
from ...evaluate import band_ends, in_band
from ...problem import FeasibleSet
from ...state import SampleBuffer
from ..base import Sampler, Seeds
from ..proposals import per_evaluation
from . import moves
from .config import AUTO_START, CoverConfig, CoverState


def init(problem: FeasibleSet, seeds: Tensor, n: int, cfg: CoverConfig, seed: int,
         seed_evals: int = 0) -> CoverState:
    """Walkers at feasible seeds ``(K, *code_shape)``; evaluates them once (K evaluations)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 7919)
    x = seeds.detach().reshape(seeds.shape[0], -1).clone()
    K, D = x.shape
    schedule = cfg.schedule or (("pairs", "level", "normal") if problem.box is not None else ("manifold", "level"))
    if "pairs" in schedule and problem.box is None:
        raise ValueError("the pairs move needs a box domain (problem.box); use the manifold move")
    state = CoverState(codes=x, values=x.new_zeros(K, problem.bands.m), grads=x.new_zeros(K, problem.bands.m, D),
                       level_scale=x.new_zeros(K), pairs_scale=x.new_ones(K), tangent_scale=x.new_zeros(K),
                       samples=SampleBuffer.empty(n, x, x.new_zeros(1, problem.bands.m),
                                                  walker=torch.zeros(1, dtype=torch.long)),
                       rng=gen.get_state(), schedule=tuple(schedule), burn=cfg.burn, seed_evals=seed_evals,
                       auto=cfg.schedule is None, auto_budget=cfg.budget == "auto",
                       alive=torch.ones(K, dtype=torch.bool, device=x.device))
    values, grads = moves.evaluate_into(problem, state, x)
    state.values, state.grads = values, grads
    lo, hi, width = band_ends(problem.bands, values)
    gnorm = grads.norm(dim=2).clamp(min=1e-12)  # (K, m)
    span = (problem.box[1] - problem.box[0]) if problem.box is not None else \
        float(x.norm(dim=1).mean().clamp(min=1e-3)) / math.sqrt(D) * 2
    fin = torch.isfinite(width)
    per = torch.where(fin, width / gnorm, torch.full_like(gnorm, math.inf)).amin(1)
    level0 = min(0.5 * float(per[torch.isfinite(per)].median()) if bool(torch.isfinite(per).any()) else math.inf,
                 0.1 * span)
    state.level_scale = torch.full_like(per, level0)  # one scale shared by the walkers
    state.tangent_scale = torch.full_like(per, 0.1 * span)
    # level spans of the constraints (the manifold move's level steps and Newton tolerance): the
    # band's width, or for a one-sided band the change of h over a tangent step (fixed at init)
    typical = (state.tangent_scale[:, None] * gnorm).median(dim=0).values
    state.spans = torch.where(torch.isfinite(width), width, typical)
    state.alive = in_band(values, lo, hi)
    budget = cfg.max_budget if cfg.budget == "auto" else cfg.budget
    state.max_rounds = cfg.max_rounds or (state.burn + 4 * max(cfg.thin or 0, int(budget) + 2) *
                                          math.ceil(n / max(int(state.alive.sum()), 1)) + 100)
    return state


def _plan_thin(state: CoverState, cfg: CoverConfig, n: int) -> int:
    """Rounds between samples so that the whole run fits ``cfg.budget`` evaluations per sample."""
    if cfg.thin is not None:
        return cfg.thin
    k = int(state.alive.sum())
    # evaluations per walker and round of the schedule that will run, from the burn-in's costs
    # (the box moves cost one per proposal once the walkers have left the walls: burn-in
    # proposals refused for free, on a line pinned by seed coordinates lying on the box walls,
    # would make later rounds look cheaper than they are)
    cost = {kind: state.move_evals.get(kind, 0) / max(state.proposed.get(kind, 0), 1)
            for kind in state.schedule}
    cost = {kind: max(c, 1.0) if kind in ("pairs", "normal") or not state.proposed.get(kind) else c
            for kind, c in cost.items()}
    per_round = sum(cost[kind] for kind in state.schedule) / len(state.schedule)
    spent = state.model_evals + state.seed_evals
    per_walker = math.ceil((n - state.samples.count) / max(k, 1))
    left = (AUTO_START if cfg.budget == "auto" else cfg.budget) * n - spent
    thin = int(left / max(per_walker * k * per_round, 1e-9))
    return max(cfg.min_thin, thin)


def choose_schedule(state: CoverState, box: bool) -> tuple:
    """The schedule after the burn-in (``schedule=None``), from the burn-in's expected squared
    jumps per model evaluation.

    On a box: the pairs move (within level sets) plus whichever of the level and normal moves
    moves ``h`` across the band further per evaluation (normal: thin bands; level: wide bands,
    where the box cuts the normal line short). Off a box: the manifold move (plus level) only
    where its squared jump in codes beats the level move's (thin bands), else the level move."""
    def rate(book, kind):
        return per_evaluation(book, state.move_evals).get(kind, 0.0)
    if box:
        return ("pairs", "normal") if rate(state.hjump2, "normal") > rate(state.hjump2, "level") else ("pairs", "level")
    return ("manifold", "level") if rate(state.jump2, "manifold") > rate(state.jump2, "level") else ("level",)


def step(state: CoverState, problem: FeasibleSet, cfg: CoverConfig) -> tuple[CoverState, dict]:
    """One round: every walker that the round's move concerns proposes once; after the burn-in,
    every ``thin`` rounds the walkers' current codes are certified and kept as samples."""
    gen = torch.Generator(device="cpu")
    gen.set_state(state.rng)
    kind = state.schedule[state.rounds % len(state.schedule)]
    band = band_ends(problem.bands, state.values)
    live = state.alive.nonzero().squeeze(1)
    n = state.samples.capacity
    before = state.samples.count
    if kind == "level":
        moves.level_move(state, problem, live, gen, band, cfg)
    elif kind == "manifold":
        moves.manifold_move(state, problem, live, gen, band, cfg)
    else:
        move = moves.pairs_move if kind == "pairs" else moves.normal_move
        k = live.numel()
        if cfg.directions == "own" or k < 2:
            move(state, problem, live, live, gen, band, cfg)
        else:
            # red-black: each half moves along directions from the other half's gradients
            half = torch.arange(k, device=live.device) % 2 == 0
            for movers, others in ((live[half], live[~half]), (live[~half], live[half])):
                partner = others[torch.arange(movers.numel(), device=live.device) % others.numel()]
                move(state, problem, movers, partner, gen, band, cfg)
    state.rounds += 1
    if state.rounds == state.burn or (state.burn == 0 and state.thin == 0):
        if state.auto:
            state.schedule = choose_schedule(state, problem.box is not None)
        state.thin = _plan_thin(state, cfg, n)
        state.next_emit = state.rounds + state.thin
        state.budget_rounds, state.pass_evals0 = 1, state.model_evals
    elif state.thin and state.rounds >= state.next_emit and not state.samples.full:
        _emit(state, problem)
        state.next_emit = state.rounds + state.thin
        if state.auto_budget and state.samples.full and not state.budget_stop:
            _next_pass(state, problem, cfg)
    state.rng = gen.get_state()
    return state, {"round": state.rounds, "move": kind, "accepted": state.samples.count - before}


def _emit(state: CoverState, problem: FeasibleSet) -> None:
    """Certify the live walkers' codes (as many as there is room for) and keep them; each row's
    walker is its chain for the diagnostics."""
    live = state.alive.nonzero().squeeze(1)
    rows = live[: state.samples.capacity - state.samples.count]
    kept = keep_certified(problem, state.samples, state.codes[rows], state.values[rows], walker=rows)
    state.check_evals += kept.evals
    state.rejected_by_check += kept.refused


def _next_pass(state: CoverState, problem: FeasibleSet, cfg: CoverConfig) -> None:
    """``budget="auto"``: the full pass is judged (``driver.passes.judge_pass``); another pass
    doubles the thinning and starts a fresh pass.

    A fresh pass empties the buffer (the driver cuts the run directory's shards to it) while the
    chains go on, so the returned rows are one pass: every ``thin``-th state of each walker after
    a longer burn-in."""
    spent = state.model_evals + state.seed_evals
    cost = state.model_evals - state.pass_evals0
    verdict = judge_pass(problem, state.samples, spent=spent, next_cost=2 * cost,
                         max_budget=cfg.max_budget, passes=state.budget_rounds,
                         detail=f", thin {state.thin}")
    state.diagnostic_evals += verdict.evals
    diag = verdict.diagnostics
    state.budget_history.append({"thin": state.thin, "evals": cost, "mixed": diag["mixed"],
                                 "rhat_max": diag.get("rhat_max"), "worst": diag.get("worst", "")})
    state.budget_stop = verdict.stop
    if not verdict.stop:
        state.thin *= 2
        state.samples.count = 0
        state.next_emit = state.rounds + state.thin
        state.pass_evals0 = state.model_evals
        state.budget_rounds += 1


def done(state: CoverState) -> bool:
    """The walk ends with ``n`` samples, after ``state.max_rounds`` rounds, or with no walker left."""
    return state.samples.full or state.rounds >= state.max_rounds or not bool(state.alive.any())


class Cover(Sampler):
    """``method="cover"`` (the default): the shared seed phase for ``K`` feasible seeds, then the
    covering walk; ``options`` are ``CoverConfig`` fields."""

    name = "cover"
    Config = CoverConfig
    state_class = CoverState
    needs_seeds = True

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> CoverState:
        self.bind(problem, run)
        state = init(problem, seeds.codes, run.n, self.config, key, seeds.model_evals)
        if not bool(state.alive.any()):
            raise RuntimeError("no seed was inside the band when measured with gradients")
        return state

    def step(self, state: CoverState) -> tuple[CoverState, dict]:
        return step(state, self.problem, self.config)

    def done(self, state: CoverState) -> bool:
        return done(state)

    def finalize(self, state: CoverState) -> tuple[Tensor, dict]:
        proposed = sum(state.proposed.values())
        accepted_moves = sum(state.accepted_moves.values())
        count = state.samples.count
        stats = dict(
            rounds=state.rounds, model_evals=state.model_evals,
            vjp_evals=state.vjp_evals, check_evals=state.check_evals,
            rejected_by_check=state.rejected_by_check, burn=state.burn, thin=state.thin,
            schedule=list(state.schedule), acceptance=accepted_moves / max(proposed, 1),
            **{f"acceptance_{k}": state.accepted_moves[k] / max(v, 1) for k, v in state.proposed.items()},
            evals_per_sample=(state.seed_evals + state.model_evals) / max(count, 1),
            nan_walkers=int((~state.alive).sum()))
        if state.auto_budget:
            stats.update(budget_rounds=state.budget_rounds, budget_stop=state.budget_stop or "not finished",
                         budget_history=list(state.budget_history),
                         diagnostic_evals=state.diagnostic_evals)
        if not state.samples.full:
            stats["why"] = (f"the round budget ({state.max_rounds}) ran out or every walker stopped. "
                            "Raise the options max_rounds or budget")
        codes = state.samples.codes[:count].reshape(count, *self.problem.code_shape)
        return codes, stats


__all__ = ["Cover", "init", "step", "done", "choose_schedule"]
