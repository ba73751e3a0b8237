"""The levels of adaptive multilevel splitting: the next level (the ``p0``-quantile of the scores),
the survival fraction and its variance, the resampling, and the estimate of ``log P(set)``
(see ``kernels.smc`` for the algorithm and its references)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..proposals import per_evaluation
from . import moves
from .config import SMCState
from .env import Env
from .resampling import resample


POPULATION = (32, 512)  # the default population's bounds (``population``)
FIRST = (128, 2048)  # the default first stage's bounds: ``n`` prior draws within them
P0 = 0.5  # the default fraction kept per level ...
P0_FAST = 0.2  # ... and where the last level's moves jumped at least FAST_JUMP per evaluation
FAST_JUMP = 1.0
FAST_SURVIVORS = 25  # ... and P0_FAST of the population are at least this many particles
COMMON = P0 ** 3  # a first stage with this fraction inside the band is a common set (three levels)


def population(n: int) -> int:
    """The default population ``N`` for ``n`` samples: one particle per 4 samples, within
    ``POPULATION = [32, 512]``. The levels cost about ``N`` evaluations per round whatever ``n``;
    in the band the population is emitted every few rounds, so ``n`` rows cost about ``n``
    evaluations per round between emissions whatever ``N``. So the levels cost about ``N / n``
    per sample and round: ``n / 4`` keeps that the same for every ``n`` above the floor, and the
    floor of 32 keeps ``n = 60`` near twice the cost per sample of ``n = 500`` (with 64 thin slabs
    cost 2.8-3.3 times as much; docs/smc.md). Fewer particles make the levels represent a curved
    set worse: on the shell at ``n = 60`` (256 first draws) the energy ratio exceeded 1.3 on 4,
    5, 7 and 9 of 30 seeds with floors 32, 64, 24 and 16 (6 with 32 and the 128 first draws of
    ``FIRST``). The standard error of ``log_prob`` grows like ``1 / sqrt(N)`` (and the run says
    so: it stayed calibrated at 32, 29-30 of 30 seeds within 2 SE on three thin slabs), and the
    shares of a set's pieces are fixed by the levels' ``N``
    particles (moves rarely cross a gap): with 64 particles for 400 rows a piece of 1/8 came out
    at 0.07 on one seed of three, hence ``n / 4`` rather than fewer."""
    lo, hi = POPULATION
    return int(min(max(math.ceil(n / 4), lo), hi))


def band_population(n: int, particles: int, explicit: bool) -> int:
    """The population the band's level resamples to (``state.band_particles``; 0: all of
    ``particles``): with the default population and ``n < 4 N``, ``ceil(n / 4)`` particles (at
    least 2), each emitted about 4 times, so that the rows form chains of 4 a diagnosis can
    compare (one row per particle leaves "mixing not checked"). Each round moves fewer
    particles, but three more emissions take their rounds: at ``n = 60`` the runs cost 13-47%
    more (docs/smc.md). An explicit ``particles`` is kept through the band."""
    if explicit or n >= 4 * particles:
        return 0
    return max(2, math.ceil(n / 4))


def keep_fraction(env: Env, state: SMCState) -> float:
    """The fraction ``p0`` of particles this level keeps: ``options.p0`` when given; else
    ``P0_FAST = 0.2`` where the rounds of the last level moved the particles fast (some move
    kind's mean squared jump per model evaluation, per coordinate in units of the spread, at
    least ``FAST_JUMP = 1``: half-way to an independent draw per evaluation; ``state.level_jumps``),
    and there are at least ``FAST_SURVIVORS = 25`` survivors (``N >= 125``: ``n >= 500`` with the
    default population); ``P0 = 0.5`` otherwise (the first level, with nothing measured; moves
    without gradients; an explicit ``particles``, which keeps the levels it had: with 300
    particles for 300 rows of a d = 16 tail, one emission, a fifth per level left 24 ancestors
    and too few families of 4 rows for the diagnostics, where half left 38; small populations: at ``n = 60``, 32 particles, a fifth is 6 survivors, and
    held out, a rare d = 16 slab's ``log_prob`` fell beyond 2 SE on 4 of 20 seeds against 2, its
    energy ratio above 1.3 on 3 against 0).
    Fewer levels cost fewer rounds; each survivor then has five copies instead of two, which fast
    moves decorrelate within the level's rounds and slow ones do not. Chosen on three cases
    (n = 500, 30 seeds): on the thin d = 784 slab and the heavy-tailed slab, where the pairs move
    jumps 1.35-1.5 per evaluation, a fixed 0.2 cost 21.6 and 25.0 evaluations per sample against
    25.7 and 30.8 at the same quality; on the shell, where the best move (Galilean) jumps
    0.25-0.35, it left the energy ratio above 1.3 on 13 of 30 seeds against 3 (0.3: 4 of 10);
    measured on held-out sets after the choice in docs/smc.md. Keying the rule on ``state.flat``
    instead saved nothing (the early levels of a thin slab are not flat yet). ``log_prob`` is the
    product of the measured fractions, whatever they were."""
    if env.cfg.p0 is not None:
        return env.cfg.p0
    if env.cfg.particles is not None:
        return P0
    jumps = state.level_jumps
    fast = bool(jumps) and max(jumps.values()) >= FAST_JUMP
    return P0_FAST if fast and P0_FAST * state.codes.shape[0] >= FAST_SURVIVORS else P0


def log_prob_estimate(fractions, particles: int, variances=None) -> tuple[float, float]:
    """``(log p, se)`` from the stages' survival fractions ``p_i`` and the population size ``N``:
    ``log p = sum_i log p_i``, ``se^2 = sum_i (1 - p_i) / (p_i N)`` for independent particles
    (Cérou et al. 2012, eq. (3)), or ``sum_i variances[i]`` (each stage's variance of ``log p_i``,
    ``survival_variance``) where given."""
    if not fractions:
        return math.nan, math.nan
    logp = math.fsum(math.log(p) for p in fractions)
    if variances is not None and len(variances) == len(fractions):
        var = math.fsum(variances)
    else:
        var = math.fsum((1.0 - p) / (p * particles) for p in fractions)
    return logp, math.sqrt(var)


def survival_variance(keep: Tensor, family: Tensor) -> float:
    """The variance of ``log p_hat`` for one stage, ``p_hat = mean(keep)``, with the particles
    grouped in families (copies of one parent at the last resampling): the cluster-robust
    (sandwich) variance ``sum_f (sum_{j in f} (I_j - p_hat))^2 / (N p_hat)^2``. Independent
    particles (families of one, as at the first stage) give the binomial ``(1 - p) / (p N)`` up to
    ``1/N``; copies that the moves have not decorrelated survive or die together, and the variance
    grows with that correlation (the role of Au & Beck's factor ``gamma``, 2001, eq. (29), here
    measured across the families instead of along chains)."""
    N = keep.numel()
    p = float(keep.float().mean())
    if p <= 0.0:
        return math.inf
    resid = keep.to(torch.float64) - p
    size = max(N, int(family.max()) + 1)  # families index the population before the resampling
    sums = torch.zeros(size, dtype=torch.float64, device=keep.device).index_add_(0, family, resid)
    return float((sums ** 2).sum()) / (N * p) ** 2


def new_level(env: Env, state: SMCState, gen: torch.Generator) -> dict:
    """Choose the next level, record the survival fraction, resample ``N`` from the survivors."""
    cfg = env.cfg
    N = state.codes.shape[0]
    score = state.score
    finite = score[torch.isfinite(score)]
    if finite.numel() == 0:
        state.failed = "no particle has finite constraint values (NaN everywhere under the prior)"
        return {}
    # the jump of the rounds just done, particle by particle from its anchor: before the
    # resampling permutes the particles (after it, row i is a copy of another particle, and the
    # "jump" would be the distance between two particles, not a particle's move)
    moves.measure(env, state)
    if state.galilean and state.kind_evals:
        # the rounds just done choose this level's fraction
        # (``keep_fraction``) and the next level's cycle (``moves.cycle``)
        state.level_jumps = per_evaluation(state.kind_jump2, state.kind_evals)
        if "galilean" in state.level_jumps and "pairs" in state.level_jumps:
            state.flat = moves.band_cycle(state.level_jumps) == ["pairs", "line"]
    q = float(torch.quantile(score.clamp(max=torch.finfo(score.dtype).max).to(torch.float64),
                             keep_fraction(env, state), interpolation="higher"))
    level = max(q, 0.0)
    # above 0 the particles AT the level die with those beyond it: the fraction strictly below
    # the k-th smallest score is the unbiased one (k / N would overestimate each factor by
    # about k / (k - 1); Bréhier, Gazeau, Goudenège, Lelièvre & Rousset, Ann. Appl. Probab.
    # 26, 2016, on unbiased AMS); a plateau of ties
    # (nothing strictly below) keeps the ties
    keep = score < level if level > 0.0 else score <= level
    state.strict = level > 0.0
    if not bool(keep.any()):
        keep = score <= level
        state.strict = False
    frac = float(keep.sum()) / N
    family = state.parent if state.parent is not None else torch.arange(N, device=keep.device)
    variance = survival_variance(keep, family.to(keep.device))
    if level >= state.level:
        state.stall += 1
        if state.stall >= cfg.max_stall:
            state.failed = (f"the score stopped decreasing at {level:.4g} for {state.stall} levels "
                            "(a plateau of the constraints); the levels cannot reach the band")
            return {}
    else:
        state.stall = 0
    state.level = level
    state.fractions.append(frac)
    state.levels.append(level)
    state.variances.append(variance)
    state.inside = level <= 0.0
    if state.inside:
        state.band_evals0 = state.model_evals
    idx = keep.nonzero().squeeze(1)
    s = idx.numel()
    if len(state.fractions) == 1:
        state.first_draws = N
        if cfg.particles is None and float((score <= 0).float().mean()) >= COMMON:
            # a common set (within three levels): keep the whole first population, so that a set
            # in pieces is represented by as many independent draws as the first stage had
            state.particles = max(state.particles, N)
            state.band_particles = 0  # ... and every one of them goes on into the band
    size = min(state.band_particles or state.particles, state.particles) if state.inside else state.particles
    pick = resample(s, size, cfg.resampling, gen)
    pick = idx[pick.to(idx.device)]
    state.parent = pick.clone()
    state.codes, state.values = state.codes[pick].clone(), state.values[pick].clone()
    state.score, state.ancestor = state.score[pick].clone(), state.ancestor[pick].clone()
    if state.grads is not None:
        state.grads = state.grads[pick].clone()
    moves.anchor(env, state, spread=True)
    state.moves_left = state.plan = moves.plan(env, state)
    if len(state.fractions) >= cfg.max_stages and not state.inside:
        state.failed = (f"{cfg.max_stages} levels did not reach the band (the set's prior probability "
                        f"is below about exp({sum(math.log(p) for p in state.fractions):.1f})); "
                        "raise max_stages or p0")
    return {"level": level, "survived": frac}


__all__ = ["POPULATION", "FIRST", "P0", "P0_FAST", "FAST_JUMP", "FAST_SURVIVORS", "COMMON", "keep_fraction", "population", "band_population", "log_prob_estimate",
           "survival_variance", "new_level"]
