"""The SMC kernel: ``init`` (``N`` particles from the prior; the rejection phase when the band is
common), ``step`` (a new level and one round of moves above the band; rounds of moves and
emissions in it), the emissions and the ``budget="auto"`` passes, and ``SMC``, the sampler."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...driver.emit import keep_certified
from ...driver.passes import judge_pass
from ...state import SampleBuffer
from ..base import Sampler, Seeds
from ..proposals import per_evaluation
from . import moves
from .config import SMCConfig, SMCState
from .env import Env, prior, score, values, values_and_grads
from .levels import FIRST, band_population, log_prob_estimate, new_level, population
from .rejection import rejection_round


def emit(env: Env, state: SMCState, gen: torch.Generator) -> int:
    """Certify the particles (a random subset when fewer are needed) and keep them: each row's
    walker is its particle's index (one chain of the band's fixed kernel), its ancestor the
    particle's initial ancestor."""
    need = state.samples.capacity - state.samples.count
    N = state.codes.shape[0]
    rows = torch.randperm(N, generator=gen)[: min(need, N)].to(state.codes.device)
    inside = rows[state.score[rows] <= 0]
    kept = keep_certified(env.problem, state.samples, state.codes[inside], state.values[inside],
                          walker=inside, ancestor=state.ancestor[inside])
    state.check_evals += kept.evals
    state.rejected_by_check += kept.refused
    return kept.kept


def next_period(env: Env, state: SMCState) -> None:
    """After an emission: measure the rounds since the last anchor, re-anchor (the spread and
    the step stay frozen in the band) and plan the rounds to the next emission."""
    moves.measure(env, state)
    if state.galilean and not state.band_jumps:
        state.band_jumps = per_evaluation(state.kind_jump2, state.kind_evals)
        state.band_kinds = moves.band_cycle(state.band_jumps)
        state.flat = state.flat or state.band_kinds == ["pairs", "line"]
    moves.anchor(env, state, spread=False)
    state.since_emit = 0
    state.plan = moves.plan(env, state)


def next_pass(env: Env, state: SMCState) -> None:
    """``budget="auto"``: the rows are complete; diagnose them and stop (mixed, no
    diagnostics, or the next pass would pass ``max_budget``) or start a fresh pass (the buffer
    is emptied, the driver cuts the run directory's shards to it). Everything decided here
    derives from the state and the rows, so a resumed run decides the same."""
    cfg = env.cfg
    if state.budget_stop and state.samples.count != state.budget_count:
        state.budget_stop = ""  # resumed with a larger n: the new rows are diagnosed again
    if cfg.budget != "auto" or not state.samples.full or state.budget_stop:
        return
    count = state.samples.count
    state.budget_count = count
    cost = state.model_evals - state.pass_evals0
    band_cost = state.model_evals - max(state.pass_evals0, state.band_evals0)
    # the next pass costs about twice this pass's moves in the band (its target is tighter and
    # its max_moves doubled), at least the rounds planned to its first emission
    verdict = judge_pass(env.problem, state.samples, spent=state.model_evals,
                         next_cost=max(2 * band_cost, state.plan * state.codes.shape[0]),
                         max_budget=cfg.max_budget, passes=state.budget_rounds)
    state.diagnostic_evals += verdict.evals
    diag = verdict.diagnostics
    state.budget_history.append({"evals": cost, "mixed": diag["mixed"], "rhat_max": diag.get("rhat_max"),
                                 "worst": diag.get("worst", "")})
    state.budget_stop = verdict.stop
    if not verdict.stop:
        state.samples.count = 0
        state.budget_rounds += 1
        state.pass_evals0 = state.model_evals


def closest(env: Env, state: SMCState, stats: dict) -> Tensor:
    """No certified sample (the levels stopped short of the band): the ``k`` distinct particles
    closest to the band (smallest largest violation), closest first, as the other methods
    return their closest iterates; ``stats["best_violation"]`` says how close they came."""
    viol = env.problem.bands.violation(state.values).amax(1)
    viol = torch.where(torch.isnan(viol), torch.full_like(viol, math.inf), viol)
    order = torch.argsort(viol, stable=True)
    codes = state.codes[order]
    _, group = torch.unique(codes, dim=0, return_inverse=True)
    index = torch.arange(codes.shape[0], device=codes.device)
    first = torch.full((int(group.max()) + 1,), codes.shape[0], device=codes.device)
    first = first.scatter_reduce(0, group, index, reduce="amin")  # each distinct code's closest row
    rows = torch.sort(first).values[: env.k]
    best = float(viol[order[0]])
    stats.update(best_violation=best, returned_closest=True)
    stats["why"] = (stats.get("why") or "no particle reached the band") + (
        f"; the closest came within {best:.4g} of the band "
        f"({env.problem.bands.describe()}); the {rows.numel()} closest distinct particles are "
        "returned, closest first")
    return codes[rows].reshape(rows.numel(), *env.problem.code_shape)


def progress_line(state: SMCState) -> dict:
    """What a user reads on a long run (the progress bar's line, and every step's ``info``):
    ``level`` (the current level of the score: the largest scaled violation still allowed, 0 in
    the band), ``log_p`` (the estimate of ``log P(set)`` so far: the product of the survival
    fractions, or the rejection mode's accepted fraction), ``evals_per_sample`` (model evaluations
    so far per requested sample) and, in the band, ``eta_evals`` (the evaluations the remaining
    emissions of this pass are expected to cost at the rounds planned per emission)."""
    samples = state.samples
    out = {"evals_per_sample": state.model_evals / max(samples.capacity, 1)}
    if state.mode == "rejection":
        out["log_p"] = math.log(state.hits / state.drawn) if state.hits else -math.inf
        return out
    out["level"] = state.level
    if state.fractions:
        out["log_p"] = math.fsum(math.log(f) for f in state.fractions)
    if state.inside:
        N = state.codes.shape[0]
        emissions = math.ceil((samples.capacity - samples.count) / max(N, 1))
        out["eta_evals"] = emissions * max(state.plan, 1) * N
    return out


class SMC(Sampler):
    """``method="smc"``: adaptive multilevel splitting on the prior restricted to the set (see
    ``kernels.smc``); ``stats["log_prob"]``/``["log_prob_se"]`` estimate the set's prior
    probability. Draws its own particles from the prior (no seed phase). Everything a step needs
    is the state and the run's ``Env`` (derived from the bound problem and run settings)."""

    name = "smc"
    Config = SMCConfig
    state_class = SMCState
    uses_gradients = False  # moves are accepted on the constraint values alone

    def _env(self) -> Env:
        return Env.of(self.problem, self.config, self.run)

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> SMCState:
        self.bind(problem, run)
        env = self._env()
        cfg = env.cfg
        N = cfg.particles or population(run.n)
        # an explicit population also sizes the first stage (unless first says otherwise)
        N0 = max(cfg.first or (cfg.particles or min(max(run.n, FIRST[0]), FIRST[1])), N)
        gen = torch.Generator(device="cpu").manual_seed(int(key) + 104729)
        codes = prior(env, N0, gen)
        m = problem.bands.m
        samples = SampleBuffer.empty(run.n, codes, codes.new_zeros(1, m), walker=torch.zeros(1, dtype=torch.long),
                                     ancestor=torch.zeros(1, dtype=torch.long))
        state = SMCState(codes=codes, values=codes.new_zeros(N0, m), score=codes.new_zeros(N0),
                         ancestor=torch.arange(N0, device=codes.device), scale=codes.new_ones(m),
                         samples=samples, rng=gen.get_state(), particles=N,
                         step=0.5, band_particles=band_population(run.n, N, cfg.particles is not None))
        blocks = math.prod(problem.code_shape) // (problem.bands.m + 1)  # the pairs move's blocks
        if cfg.pairs == "on" and (env.move != "reflect" or blocks == 0):
            raise ValueError("pairs='on' needs a box prior (move 'reflect') and at least m + 1 = "
                             f"{problem.bands.m + 1} code coordinates")
        galilean_fits = env.move == "reflect" or problem.box is None
        if cfg.galilean == "on" and not galilean_fits:
            raise ValueError("galilean='on' needs move 'reflect' on a box, or the N(0, I) prior")
        want_pairs = env.move == "reflect" and cfg.pairs != "off" and blocks > 0
        want_galilean = galilean_fits and cfg.galilean != "off"
        if want_pairs or want_galilean:
            try:
                state.values, state.grads = values_and_grads(env, state, codes)
                state.galilean, state.pairs = want_galilean, want_pairs
                if problem.box is not None:
                    state.normal_step = state.line_step = 0.05 * float(problem.box[1] - problem.box[0])
            except RuntimeError as err:  # the values have no gradient (a non-differentiable h)
                state.grads, state.model_evals = None, 0
                for name in ("pairs", "galilean"):
                    if getattr(cfg, name) == "on":
                        raise ValueError(f"{name}='on' needs the constraints' gradients, but: {err}") from err
                state.values = values(env, state, codes)
        else:
            state.values = values(env, state, codes)
        bands = problem.bands
        excess = (bands.violation(state.values) - bands.tol).clamp(min=0)
        excess = torch.where(torch.isfinite(excess), excess, torch.zeros_like(excess))
        # each constraint's scale: its mean positive violation under the prior (only the relative
        # scales matter, and only when there are several constraints)
        pos = (excess > 0).sum(0)
        mean = excess.sum(0) / pos.clamp(min=1)
        state.scale = torch.where(pos > 0, mean, torch.ones_like(mean)).clamp(min=1e-30)
        state.score = score(env, state.values, state.scale)
        inside = int((state.score <= 0).sum())
        if cfg.rejection_rate is not None and inside >= cfg.rejection_rate * N0:
            state.mode, state.drawn, state.hits, state.inside = "rejection", N0, inside, True
            state.grads = None  # no moves: no gradients needed
            state.galilean = state.pairs = False
        return state

    def step(self, state: SMCState) -> tuple[SMCState, dict]:
        env = self._env()
        gen = torch.Generator(device="cpu")
        gen.set_state(state.rng)
        info: dict = {}
        if state.mode == "rejection":
            info = rejection_round(env, state, gen)
            state.rng = gen.get_state()
            info.update(progress_line(state))
            return state, info
        if not state.inside and state.moves_left == 0:
            info.update(new_level(env, state, gen))
            if state.failed:
                state.rng = gen.get_state()
                return state, info
        rate = moves.move(env, state, gen)
        state.rounds += 1
        new = 0
        cfg = env.cfg
        if state.moves_left > 0:
            state.moves_left -= 1
            if state.inside and state.moves_left == 0 and not moves.mixed(env, state) \
                    and state.period_rounds < cfg.max_moves:
                state.moves_left = 1  # the band: move on until the population has decorrelated
            if state.inside and state.moves_left == 0:
                new = emit(env, state, gen)  # the band's level: the population is the first emission
                next_period(env, state)
                next_pass(env, state)
        else:
            state.since_emit += 1
            if state.since_emit >= state.plan and (moves.mixed(env, state) or state.since_emit >= moves.most(env, state)):
                new = emit(env, state, gen)
                next_period(env, state)
                next_pass(env, state)
        state.rng = gen.get_state()
        info.update(round=state.rounds, stage=len(state.fractions), acceptance=rate, accepted=new)
        info.update(progress_line(state))
        return state, info

    def done(self, state: SMCState) -> bool:
        return state.samples.full or bool(state.failed)

    def progress(self, state: SMCState) -> tuple[int, int]:
        return state.samples.count, state.samples.capacity

    def finalize(self, state: SMCState) -> tuple[Tensor, dict]:
        env = self._env()
        N = state.codes.shape[0]
        count = state.samples.count
        stats = dict(model_evals=state.model_evals, check_evals=state.check_evals, particles=state.particles, first_draws=state.first_draws,
                     smc_stages=len(state.fractions), smc_levels_done=state.inside, level_evals=state.band_evals0,
                     smc_fractions=list(state.fractions),
                     smc_levels=list(state.levels), smc_scale=state.scale.tolist(), rounds=state.rounds,
                     move=env.move, step=state.step, galilean=state.galilean, galilean_step=state.gal_step, pairs=state.pairs, band_jumps=dict(state.band_jumps), level_jumps=dict(state.level_jumps), flat=state.flat, band_cycle=list(moves.cycle(state)) if state.galilean and state.inside else None, acceptance=state.accepted / max(state.proposed, 1),
                     rejected_by_check=state.rejected_by_check,
                     distinct_ancestors=int(torch.unique(state.ancestor).numel()),
                     evals_per_sample=state.model_evals / max(count, 1))
        stats["smc_mode"] = state.mode
        if env.cfg.budget == "auto" and state.mode == "levels" and state.inside:
            stats.update(budget_rounds=state.budget_rounds, budget_stop=state.budget_stop or "not finished",
                         budget_history=list(state.budget_history),
                         diagnostic_evals=state.diagnostic_evals)
        if state.mode == "rejection":  # the fraction of prior draws inside the band (binomial SE)
            frac = state.hits / state.drawn
            stats.update(acceptance=frac, smc_stages=0, log_prob=math.log(frac),
                         log_prob_se=math.sqrt((1.0 - frac) / state.hits), prior_draws=state.drawn)
        elif state.inside:
            logp, se = log_prob_estimate(state.fractions, N, state.variances)
            stats.update(log_prob=logp, log_prob_se=se)
        if state.failed:
            stats["why"] = state.failed
        elif not state.samples.full:
            stats["why"] = "stopped before n samples"
        codes = state.samples.codes[:count].reshape(count, *env.problem.code_shape)
        if count == 0 and state.failed and N > 0:
            codes = closest(env, state, stats)
        return codes, stats


__all__ = ["SMC", "band_population", "progress_line", "emit", "next_period", "next_pass", "closest"]
