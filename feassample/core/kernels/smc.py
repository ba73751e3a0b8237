"""Adaptive multilevel splitting: a population of particles that samples the problem's PRIOR
RESTRICTED TO THE SET and estimates the set's prior probability on the way.

Target. ``pi(c) ∝ prior(c) 1[c in X]``: uniform on the box for input-space problems, the standard
normal ``N(0, I)`` (restricted to the code domain, e.g. the code ball of ``problem.project``) for
generator problems; ``FeasibleSet.log_prior`` states it.

Algorithm (subset simulation, Au & Beck, Prob. Eng. Mech. 16, 2001; adaptive multilevel splitting,
Cérou & Guyader, Stoch. Anal. Appl. 25, 2007). A score ``s(c) >= 0`` is 0 inside the band and
grows with the distance outside it (the largest violation over the constraints, each divided by a
scale fixed at init; ``+inf`` for NaN values). ``N`` particles start iid from the prior. At each
stage the next level ``L_i`` is the ``p0``-quantile of the current scores (never below 0); the
fraction ``p_i`` of particles with ``s <= L_i`` survives; ``N`` particles are resampled from the
survivors (systematic or multinomial, from the run's generator), then each moves with a Markov
kernel that leaves the prior restricted to ``{s < L_i}`` invariant. The particles AT the level
die with those above it, so the level's law is the prior on ``{s < L_i}`` and a move is accepted
iff ``s(y) < L_i`` (``<= 0`` in the band): on a plateau of the score (a ReLU unit that is 0 on
most of the prior) an accept rule ``<= L_i`` would let the particles wander back onto the
plateau, and the levels would never leave it.

``"reflect"``  (box priors) ``y = fold(x + sigma sd * xi)``, folded back into the box at the
    walls, with ``sd`` the population's per-coordinate standard deviation, computed once per level
    right after the resampling (the standard adaptive SMC proposal: heavy-tailed weights pin a few
    coordinates, which then get small steps while the others move freely). For a fixed ``sd`` the
    folded Gaussian is a symmetric kernel on the box (the density of reaching ``y`` from ``x`` is a
    sum over mirror images of ``y``, each a Gaussian in ``y' - x``), so "accept iff ``y`` is in the
    level" is the Metropolis rule for the uniform law on the level set.
``"pcn"``  preconditioned Crank-Nicolson ``y = sqrt(1 - beta^2) x + beta xi`` (Cotter, Roberts,
    Stuart & White, Stat. Sci. 28, 2013), reversible with respect to ``N(0, I)``, so "accept iff
    ``y`` is in the domain and ``s(y) <= L_i``" needs no Metropolis-Hastings ratio; its cost does
    not grow with the dimension. On a box prior it runs in probit coordinates
    ``c = lo + (hi - lo) Phi(u)`` (uniform codes <=> standard normal ``u``).

The step (``sigma`` or ``beta``) adapts between rounds from the population's acceptance while the
levels tighten, and is frozen, with ``sd``, once the level reaches 0 (the band): from then on
every round is the same kernel, invariant for the target.

How many rounds. Above the band, a level's rounds are fixed before its first move, from what the
previous level measured: enough that the mean squared jump (per coordinate, in units of ``sd``)
reaches ``level_jump`` and that a particle stays where the resampling put it with probability at
most 1% (Drovandi & Pettitt, Biometrics 67, 2011), at least ``moves``. A rule that stopped on the
current moves would make the number of rounds depend on where they lead, and ``log_prob`` showed
the bias (+1 SE on a 2e-12 tail); fewer rounds (5%, or ``1/e``) left ``log_prob``'s spread over
seeds about 1.3x its standard error at 5e-25. In the band the population moves on until it has decorrelated
(``_mixed``: mean squared jump since the resampling ``>= jump``, 2 being the value between
independent draws, and ``1 - 1/e`` of the particles moved), at most ``max_moves`` rounds; then it
is certified (``problem.check``) and kept, and again after at least ``thin`` rounds and the same
rule, until there are ``n`` samples. That rule is a population average over ``N`` particles (its
dependence on one particle is of order ``1/N``) and comes after ``log_prob`` is fixed.

Probability of the set. ``P(X) = prod_i P(s <= L_i | s <= L_{i-1})`` is estimated by
``prod_i p_i``, the last factor being the fraction with ``s <= 0``. Its relative variance, for
independent particles at every stage (the idealized AMS with a fixed ``p0``), is
``(n0 (1 - p0) / p0 + (1 - r0) / r0) / N`` with ``n0`` stages of survival ``p0`` and a last one of
``r0`` (Cérou, Del Moral, Furon & Guyader, Stat. Comput. 22, 2012, Theorem 1 and eq. (3); Au &
Beck 2001, eq. (14)-(20) without their correlation factor). With the realized fractions ``p_i``:
``se(log p) ≈ sqrt(sum_i (1 - p_i) / (p_i N))``. It ignores the correlation that resampling and a
finite number of moves leave between particles, so it is a lower bound when moves mix slowly;
docs/smc.md measures its calibration on the logistic slab's exact volume.

All randomness comes from one ``torch.Generator`` whose state is kept in ``SMCState.rng``: a run
saves and resumes bit-identically. One ``step`` is one round of moves (a stage begins with the
choice of its level and the resampling, which cost no model evaluation).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from .. import diagnostics
from ..problem import FeasibleSet
from ..state import SampleBuffer, State
from .base import Sampler, Seeds
from .cover import evaluate, pairs_proposal

log = logging.getLogger(__name__)

MOVES = ("auto", "reflect", "pcn")
PAIRS = ("auto", "on", "off")
RESAMPLING = ("systematic", "multinomial")


@dataclass(frozen=True)
class SMCConfig:
    """Settings of ``method="smc"`` (``fs.sample(..., method="smc", options={...})``).

    Attributes:
        particles: ``N``, the population size (``None``: ``n`` clamped to ``[256, 2048]``; at least
            16: with 2 or 3 every level is soon copies of one particle and cannot progress). The
            standard error of ``log_prob`` shrinks like ``1 / sqrt(N)``.
        p0: the fraction of particles kept at each level (the level is their ``p0``-quantile).
        moves: the fewest move rounds per level (rejuvenation of the resampled particles).
        max_moves: the most move rounds per level, and between two emissions in the band.
        jump: the decorrelation target. Moves continue after ``moves`` rounds until the mean over
            the particles of ``|(x - x0) / sd|^2 / D`` reaches ``jump``, ``x0`` being the
            particle's position at the resampling (or at the last emission) and ``sd`` the
            population's per-coordinate spread there (``2`` for independent draws, so ``1`` is
            half-way: the copies of one ancestor have moved as far apart as the population is
            wide), and until ``1 - 1/e`` of the particles have left ``x0``.
        thin_jump: the target between two emissions when ``n > particles`` (each particle is
            emitted again): measured from the particle's last emitted position, so ``2`` is
            independence; ``1.8`` leaves a lag-1 correlation of about ``0.1`` between a particle's
            successive rows (``1`` left about ``0.5``: R-hat over particles about 1.25).
        level_jump: the same target on the levels above the band, whose populations only need to
            represent their level well enough to place the next one: lower than ``jump`` (the
            band's population and every later emission use ``jump``), it saves most of the cost.
        thin: the fewest move rounds between two emissions of the population once inside the band.
        move: ``"auto"`` (``"reflect"`` on a box, ``"pcn"`` otherwise), ``"reflect"`` or ``"pcn"``.
        pairs: with ``move="reflect"``, every other round is the covering walk's pairs move
            (``cover.pairs_proposal``: in random blocks of ``m + 1`` coordinates, a point of the box
            chord orthogonal to a partner particle's constraint gradients; red-black halves), which
            moves every coordinate by O(1) where the isotropic step must stay small (thin bands in
            high dimension). It needs the constraints' gradients (one backward pass per
            evaluation). ``"auto"``: on when the values have gradients, ``"on"``: required,
            ``"off"``: the gradient-free kernel alone.
        pair_rounds: block draws per pairs proposal.
        accept: the acceptance rate the step adapts toward while the levels tighten.
        resampling: ``"systematic"`` or ``"multinomial"``.
        max_stages: levels before the run gives up (``log p`` is then only bounded above).
        max_stall: consecutive levels without progress (a plateau of the score) before it gives up.
        batch: largest number of codes per forward pass (memory), ``None``: all at once.
        rejection_rate: when at least this fraction of the initial ``N`` prior draws is inside the
            band, the run is plain rejection sampling from the prior: the in-band draws are kept
            and fresh batches of ``N`` are drawn until ``n`` (exact, independent rows at about
            ``1 / fraction`` evaluations each, cheaper than the levels' moves there), and
            ``log_prob`` is the log of the fraction. ``None``: always the levels.
        budget: ``"auto"`` (the default): when the rows are complete, diagnose them (``core.diagnostics``, as the
            run's own report does: R-hat over particles or ancestral families); while they are
            not mixed and another pass fits ``max_budget`` evaluations per sample, drop them, move
            the population on by ``thin_jump`` from the rows just dropped, and emit again (the
            moves leave the target invariant, so every pass is a sample of it, less correlated
            with the resampling). ``None``: one pass. Not used in the rejection mode.
        max_budget: with ``budget="auto"``, the cap on model evaluations per returned sample
            (levels and every pass; the diagnostics' forward passes are counted apart in
            ``stats["auto_diagnostic_evals"]``). Higher than the covering walk's 100: the levels
            alone cost 80-90 per sample on the shell of docs/coverage.md, 283 on its foreign
            network.
    """

    particles: Optional[int] = None
    p0: float = 0.5
    moves: int = 3
    max_moves: int = 30
    jump: float = 1.0
    thin_jump: float = 1.8
    level_jump: float = 0.25
    thin: int = 2
    move: str = "auto"
    pairs: str = "auto"
    pair_rounds: int = 2
    accept: float = 0.5
    resampling: str = "systematic"
    max_stages: int = 400
    max_stall: int = 8
    batch: Optional[int] = None
    rejection_rate: Optional[float] = 0.05
    budget: Optional[str] = "auto"
    max_budget: float = 300.0

    def __post_init__(self) -> None:
        for name in ("particles", "moves", "max_moves", "thin", "max_stages", "max_stall", "batch",
                     "pair_rounds"):
            v = getattr(self, name)
            if v is None and name in ("particles", "batch"):
                continue
            least = 16 if name == "particles" else 1  # fewer: copies of one or two particles
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
        if not (isinstance(self.p0, (int, float)) and 0.0 < self.p0 < 1.0):
            raise ValueError(f"p0 must be a fraction in (0, 1), got {self.p0!r}")
        if not (isinstance(self.accept, (int, float)) and 0.0 < self.accept < 1.0):
            raise ValueError(f"accept must be a rate in (0, 1), got {self.accept!r}")
        for name in ("jump", "level_jump", "thin_jump"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0.0 <= v):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if self.max_moves < self.moves or self.max_moves < self.thin:
            raise ValueError(f"max_moves must be >= moves and thin, got {self.max_moves!r}")
        if self.move not in MOVES:
            raise ValueError(f"move must be one of {MOVES}, got {self.move!r}")
        r = self.rejection_rate
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 < r <= 1.0):
            raise ValueError(f"rejection_rate must be a fraction in (0, 1] or None, got {r!r}")
        if self.budget not in (None, "auto"):
            raise ValueError(f"budget must be 'auto' or None for method 'smc', got {self.budget!r}")
        if isinstance(self.max_budget, bool) or not (isinstance(self.max_budget, (int, float)) and self.max_budget > 0):
            raise ValueError(f"max_budget must be a number > 0, got {self.max_budget!r}")
        if self.pairs not in PAIRS:
            raise ValueError(f"pairs must be one of {PAIRS}, got {self.pairs!r}")
        if self.resampling not in RESAMPLING:
            raise ValueError(f"resampling must be one of {RESAMPLING}, got {self.resampling!r}")


@dataclass
class SMCState(State):
    """Everything the population carries from round to round (a value you can save).

    Attributes:
        codes: ``(N, D)`` the particles (flattened codes); values ``(N, m)``; score ``(N,)``.
        ancestor: ``(N,)`` index of each particle's initial ancestor (distinct ancestors say how
            much of the initial population survives the resampling).
        scale: ``(m,)`` the constraints' violation scales (fixed at init).
        samples: the certified samples; rng: the generator's state.
        level: the current level ``L`` (``inf`` before the first stage).
        fractions: the survival fraction of each stage (their product estimates ``P(X)``).
        step: the move's step (``sigma`` as a fraction of the box width, or ``beta``).
        moves_left: move rounds left at this level; inside: the level reached 0 (the band).
        rounds: move rounds taken; since_emit: rounds since the last emission.
        stall: consecutive stages without progress; model_evals, check_evals: evaluations;
        proposed, accepted: move counts; rejected_by_check: particles the certificate refused.
        failed: why the levels stopped short ("" while fine).
        strict: moves are accepted iff ``score < level`` (the particles AT the level were killed,
            so the level's law is the prior on ``{score < L}``); ``False`` at ``L = 0`` and when a
            plateau of ties had to be kept.
        parent: ``(N,)`` each particle's index before the last resampling (its family);
            variances: each stage's variance of ``log p_i`` (``survival_variance``).
        spread: ``(D,)`` the per-coordinate proposal scale (the population's standard deviation,
            in probit coordinates for ``pcn`` on a box), fixed from one resampling (or emission)
            to the next; origin: ``(N, D)`` the positions there (to measure the jump).
        jump_rate: the mean squared jump per round (per coordinate, in units of ``spread``)
            measured over the last period (a level's rounds, or the rounds between emissions);
            period_rounds, period_proposed, period_accepted: the current period's counts;
            plan: the rounds this period takes, fixed when it starts.
        grads: ``(N, m, D)`` the constraints' gradients at the particles (with ``pairs`` only).
        pair_step: the pairs move's window (a fraction of the chord; ``>= 1``: a Gibbs draw).
        vspread, vorigin: the values' spread and positions at the anchor (the jump in values).
        mode: ``"levels"`` or ``"rejection"`` (``rejection_rate``); drawn, hits: prior draws and
            how many were inside the band, in rejection mode.
        budget_rounds, budget_stop, budget_history, pass_evals0, diagnostic_evals: ``budget="auto"``
            (passes begun, why they stopped, one dict per finished pass, ``model_evals`` when the
            pass began, the diagnostics' forward passes); band_evals0: ``model_evals`` when the
            levels reached the band; budget_count: the rows when ``budget_stop`` was decided (a
            resume to a larger ``n`` decides again).
    """

    codes: Tensor
    values: Tensor
    score: Tensor
    ancestor: Tensor
    scale: Tensor
    samples: SampleBuffer
    rng: Tensor
    level: float = math.inf
    fractions: list = field(default_factory=list)
    step: float = 0.0
    moves_left: int = 0
    inside: bool = False
    rounds: int = 0
    since_emit: int = 0
    stall: int = 0
    model_evals: int = 0
    check_evals: int = 0
    proposed: int = 0
    accepted: int = 0
    rejected_by_check: int = 0
    failed: str = ""
    strict: bool = False
    spread: Optional[Tensor] = None
    origin: Optional[Tensor] = None
    jump_rate: float = 0.0
    period_rounds: int = 0
    period_proposed: int = 0
    period_accepted: int = 0
    plan: int = 0
    grads: Optional[Tensor] = None
    parent: Optional[Tensor] = None
    variances: list = field(default_factory=list)
    pair_step: float = 1.0
    vspread: Optional[Tensor] = None
    vorigin: Optional[Tensor] = None
    mode: str = "levels"
    drawn: int = 0
    hits: int = 0
    budget_rounds: int = 1
    budget_stop: str = ""
    budget_history: list = field(default_factory=list)
    pass_evals0: int = 0
    diagnostic_evals: int = 0
    band_evals0: int = 0
    budget_count: int = 0


# -- pieces -----------------------------------------------------------------------------------
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
    sums = torch.zeros(N, dtype=torch.float64, device=keep.device).index_add_(0, family, resid)
    return float((sums ** 2).sum()) / (N * p) ** 2


def _probit(c: Tensor, lo: float, hi: float) -> Tensor:
    eps = torch.finfo(c.dtype).eps  # 1 - eps must stay below 1 in c's dtype (erfinv(1) = inf)
    u = ((c - lo) / (hi - lo)).clamp(eps, 1 - eps)
    return math.sqrt(2.0) * torch.erfinv(2 * u - 1)


def _unprobit(u: Tensor, lo: float, hi: float) -> Tensor:
    return (lo + (hi - lo) * 0.5 * (1 + torch.erf(u / math.sqrt(2.0)))).clamp(lo, hi)


def _fold(y: Tensor, lo: float, hi: float) -> Tensor:
    """Reflect ``y`` into ``[lo, hi]`` at the walls (any number of reflections)."""
    w = hi - lo
    r = torch.remainder(y - lo, 2 * w)
    return (lo + torch.where(r > w, 2 * w - r, r)).clamp(lo, hi)


# -- row ids for the diagnostics (columns of the emitted rows; they change no sample) ----------
def _row_ids_like() -> dict:
    """The id columns of the sample rows: ``walker`` (the particle's index in the population: once
    inside the band there is no more resampling, so one index is one chain of the fixed kernel)
    and ``ancestor`` (its initial ancestor), read by ``core.diagnostics``. Rows of the rejection
    mode are independent draws: their ``ancestor`` is negative (``-1 - draw index``)."""
    return {"walker": torch.zeros(1, dtype=torch.long), "ancestor": torch.zeros(1, dtype=torch.long)}


def _row_ids(state: "SMCState", take: Tensor) -> dict:
    """The id columns of the particles ``take`` (none for a run resumed from shards without them)."""
    ids = {"walker": take, "ancestor": state.ancestor[take]}
    return {k: v for k, v in ids.items() if k in state.samples.extra}


# -- the sampler ------------------------------------------------------------------------------
class SMC(Sampler):
    """``method="smc"``: adaptive multilevel splitting on the prior restricted to the set (see the
    module docstring); ``stats["log_prob"]``/``["log_prob_se"]`` estimate the set's prior
    probability. Draws its own particles from the prior (no seed phase)."""

    name = "smc"
    Config = SMCConfig
    state_class = SMCState
    mcmc = True
    uses_gradients = False  # moves are accepted on the constraint values alone

    def bind(self, problem, run) -> None:
        super().bind(problem, run)
        self.device, self.dtype = run.device_dtype(problem)
        move = self.config.move
        self.kind = ("reflect" if problem.box is not None else "pcn") if move == "auto" else move
        if self.kind == "reflect" and problem.box is None:
            raise ValueError("move='reflect' needs a problem with a box; use move='pcn'")

    # -- evaluation -----------------------------------------------------------------------
    def _values(self, state: SMCState, codes: Tensor) -> Tensor:
        """Constraint values ``(B, m)`` of flattened codes, in batches of ``config.batch``."""
        b = codes.shape[0]
        if b == 0:
            return codes.new_zeros(0, self.problem.bands.m)
        size = self.config.batch or b
        out = []
        with torch.no_grad():
            for i in range(0, b, size):
                c = codes[i:i + size].reshape(-1, *self.problem.code_shape)
                out.append(self.problem.measure(self.problem.decode(c)).values.to(codes.dtype))
        state.model_evals += b
        return torch.cat(out)

    def _evaluate(self, state: SMCState, codes: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Values ``(B, m)`` and, when the pairs move is on (``state.grads`` is kept), gradients
        ``(B, m, D)`` of flattened codes, in batches of ``config.batch``; one evaluation per code."""
        if state.grads is None:
            return self._values(state, codes), None
        return self._values_and_grads(state, codes)

    def _values_and_grads(self, state: SMCState, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Values and gradients (``cover.evaluate``) in batches of ``config.batch``."""
        b = codes.shape[0]
        size = self.config.batch or max(b, 1)
        parts = [evaluate(self.problem, codes[i:i + size]) for i in range(0, b, size)] or \
            [evaluate(self.problem, codes)]
        state.model_evals += b
        return torch.cat([v for v, _ in parts]), torch.cat([g for _, g in parts])

    def _score(self, values: Tensor, scale: Tensor) -> Tensor:
        """0 inside the band (``bands.feasible``), else the largest violation beyond ``tol`` over
        the constraints, each divided by its scale; ``inf`` for NaN values."""
        bands = self.problem.bands
        excess = (bands.violation(values) - bands.tol).clamp(min=0) / scale
        score = excess.amax(1)
        return torch.where(torch.isnan(values).any(1) | torch.isnan(score), torch.full_like(score, math.inf), score)

    def _in_domain(self, codes: Tensor) -> Tensor:
        """Rows the domain's projection leaves unchanged (the code ball), without evaluation."""
        shaped = codes.reshape(-1, *self.problem.code_shape)
        return (self.problem.project(shaped).reshape(codes.shape[0], -1) == codes).all(1) & torch.isfinite(codes).all(1)

    def _prior(self, n: int, gen: torch.Generator) -> Tensor:
        """``n`` flattened codes from the prior: the box's uniform law (``prior_codes``), or
        ``N(0, I)`` restricted to the domain (rows outside it are drawn again)."""
        p = self.problem
        if p.box is not None:
            return p.prior_codes(n, gen, dtype=self.dtype, device=self.device).reshape(n, -1)
        codes = torch.randn((n, *p.code_shape), generator=gen, dtype=self.dtype).to(self.device).reshape(n, -1)
        for _ in range(1000):
            out = ~self._in_domain(codes)
            if not bool(out.any()):
                return codes
            fresh = torch.randn((int(out.sum()), *p.code_shape), generator=gen, dtype=self.dtype)
            codes[out] = fresh.to(self.device).reshape(fresh.shape[0], -1)
        raise ValueError("the code domain (problem.project) holds almost none of the N(0, I) prior: "
                         "raise code_radius")

    # -- the protocol ---------------------------------------------------------------------
    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> SMCState:
        self.bind(problem, run)
        cfg = self.config
        N = cfg.particles or min(max(run.n, 256), 2048)
        gen = torch.Generator(device="cpu").manual_seed(int(key) + 104729)
        codes = self._prior(N, gen)
        m = problem.bands.m
        samples = SampleBuffer.empty(run.n, codes, codes.new_zeros(1, m), **_row_ids_like())
        state = SMCState(codes=codes, values=codes.new_zeros(N, m), score=codes.new_zeros(N),
                         ancestor=torch.arange(N, device=codes.device), scale=codes.new_ones(m),
                         samples=samples, rng=gen.get_state(),
                         step=0.5)
        blocks = math.prod(problem.code_shape) // (problem.bands.m + 1)  # the pairs move's blocks
        if cfg.pairs == "on" and (self.kind != "reflect" or blocks == 0):
            raise ValueError("pairs='on' needs a box prior (move 'reflect') and at least m + 1 = "
                             f"{problem.bands.m + 1} code coordinates")
        if self.kind == "reflect" and cfg.pairs != "off" and blocks > 0:
            try:
                state.values, state.grads = self._values_and_grads(state, codes)
            except RuntimeError as err:  # the values have no gradient (a non-differentiable h)
                state.grads, state.model_evals = None, 0
                if cfg.pairs == "on":
                    raise ValueError(f"pairs='on' needs the constraints' gradients, but: {err}") from err
        if state.grads is None:
            state.values = self._values(state, codes)
        bands = problem.bands
        excess = (bands.violation(state.values) - bands.tol).clamp(min=0)
        excess = torch.where(torch.isfinite(excess), excess, torch.zeros_like(excess))
        # each constraint's scale: its mean positive violation under the prior (only the relative
        # scales matter, and only when there are several constraints)
        pos = (excess > 0).sum(0)
        mean = excess.sum(0) / pos.clamp(min=1)
        state.scale = torch.where(pos > 0, mean, torch.ones_like(mean)).clamp(min=1e-30)
        state.score = self._score(state.values, state.scale)
        inside = int((state.score <= 0).sum())
        if cfg.rejection_rate is not None and inside >= cfg.rejection_rate * N:
            state.mode, state.drawn, state.hits, state.inside = "rejection", N, inside, True
            state.grads = None  # no moves: no gradients needed
        return state

    def _new_level(self, state: SMCState, gen: torch.Generator) -> dict:
        """Choose the next level, record the survival fraction, resample ``N`` from the survivors."""
        cfg = self.config
        N = state.codes.shape[0]
        score = state.score
        finite = score[torch.isfinite(score)]
        if finite.numel() == 0:
            state.failed = "no particle has finite constraint values (NaN everywhere under the prior)"
            return {}
        q = float(torch.quantile(score.clamp(max=torch.finfo(score.dtype).max).to(torch.float64), cfg.p0,
                                 interpolation="higher"))
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
        state.variances.append(variance)
        state.inside = level <= 0.0
        if state.inside:
            state.band_evals0 = state.model_evals
        idx = keep.nonzero().squeeze(1)
        s = idx.numel()
        if cfg.resampling == "systematic":
            u = float(torch.rand((), generator=gen, dtype=torch.float64))
            pick = ((u + torch.arange(N, dtype=torch.float64)) * s / N).floor().long().clamp(max=s - 1)
        else:
            pick = torch.randint(s, (N,), generator=gen)
        pick = idx[pick.to(idx.device)]
        state.parent = pick.clone()
        state.codes, state.values = state.codes[pick].clone(), state.values[pick].clone()
        state.score, state.ancestor = state.score[pick].clone(), state.ancestor[pick].clone()
        if state.grads is not None:
            state.grads = state.grads[pick].clone()
        self._measure(state)
        self._anchor(state, spread=True)
        state.moves_left = state.plan = self._plan(state)
        if len(state.fractions) >= cfg.max_stages and not state.inside:
            state.failed = (f"{cfg.max_stages} levels did not reach the band (the set's prior probability "
                            f"is below about exp({sum(math.log(p) for p in state.fractions):.1f})); "
                            "raise max_stages or p0")
        return {"level": level, "survived": frac}

    def _coords(self, codes: Tensor) -> Tensor:
        """The coordinates the moves act in: probit coordinates for ``pcn`` on a box, else codes."""
        box = self.problem.box
        return _probit(codes, *box) if self.kind == "pcn" and box is not None else codes

    def _anchor(self, state: SMCState, spread: bool) -> None:
        """Remember the particles' positions (to measure how far they move from here) and, with
        ``spread``, set the per-coordinate proposal scale to the population's standard deviation
        (computed once per level, before any move of that level, so every round of the level uses
        one fixed kernel; frozen for good once the level is the band)."""
        state.origin = state.codes.clone()
        if state.grads is not None:  # the pairs move keeps h: follow the values' jump too
            state.vorigin = torch.nan_to_num(state.values.clone(), nan=0.0, posinf=0.0, neginf=0.0)
            if spread:
                sd = state.vorigin.std(0) if state.vorigin.shape[0] > 1 else torch.zeros_like(state.vorigin[0])
                state.vspread = torch.nan_to_num(sd, nan=0.0)
        if spread:
            u = self._coords(state.codes)
            sd = u.std(0) if u.shape[0] > 1 else torch.ones_like(u[0])
            width = (self.problem.box[1] - self.problem.box[0]) if self.kind == "reflect" else 1.0
            state.spread = torch.nan_to_num(sd, nan=0.0).clamp(min=1e-6 * width)

    def _measure(self, state: SMCState) -> None:
        """At the end of a period (a level's rounds, or the rounds between two emissions): the mean
        squared jump per round since the anchor, per coordinate in units of the spread."""
        if state.origin is None or state.period_rounds == 0:
            return
        state.jump_rate = self._jump(state) / state.period_rounds

    def _jump(self, state: SMCState) -> float:
        """The mean squared jump since the anchor per coordinate, in units of the spread; with the
        pairs move (which keeps affine constraints constant) the smaller of that and the same for
        the constraint values (constraints whose values do not spread at all are left out)."""
        u, u0 = self._coords(state.codes), self._coords(state.origin)
        jump = float((((u - u0) / state.spread) ** 2).mean())
        if state.grads is not None and state.vspread is not None and state.vorigin is not None:
            v = torch.nan_to_num(state.values, nan=0.0, posinf=0.0, neginf=0.0)
            scale = state.vorigin.abs().amax(0).clamp(min=1e-30)
            live = state.vspread > 1e-9 * scale
            if bool(live.any()):
                vj = float((((v - state.vorigin)[:, live] / state.vspread[live]) ** 2).mean())
                jump = min(jump, vj)
        return jump

    def _mixed(self, state: SMCState) -> bool:
        """In the band: the mean squared jump since the anchor, per coordinate in units of the
        spread, has reached ``jump`` (2 for independent draws) and at least ``1 - 1/e`` of the
        particles have left their anchor (the copies of one ancestor have split). A population
        average over ``N`` particles: the rule depends on any one particle only at order ``1/N``,
        and ``log_prob`` is already fixed when the band's moves start."""
        moved = float((state.codes != state.origin).any(1).float().mean())
        return self._jump(state) >= self._target(state) and moved >= 1 - math.exp(-1)

    def _most(self, state: SMCState) -> int:
        """The most rounds of a period: ``max_moves``, doubled with each further pass of
        ``budget="auto"`` (as its target tightens, a pass whose emissions stopped at the cap
        would otherwise repeat the same correlation)."""
        return self.config.max_moves * 2 ** (state.budget_rounds - 1)

    def _target(self, state: SMCState) -> float:
        """The decorrelation target of the current period in the band: ``jump`` until the first
        emission (copies of one parent each move that far from their common origin, so they end
        about as far apart as independent draws), then ``thin_jump`` (the particle's own last
        emitted position is the other end: ``2`` would be independence)."""
        again = state.samples.count > 0 or state.budget_rounds > 1
        if not again:
            return self.config.jump
        # budget="auto": each further pass halves what thin_jump leaves of the correlation with
        # the last emitted position (2 - target is proportional to it), as cover doubles its thin
        return 2.0 - (2.0 - self.config.thin_jump) * 0.5 ** (state.budget_rounds - 1)

    def _plan(self, state: SMCState) -> int:
        """The rounds of the period that starts now, fixed before any of its moves from what the
        previous periods measured (so the number of rounds does not depend on where this period's
        moves lead, and every round applies the same invariant kernel: a stopping rule that looked
        at the current moves would bias the law). Enough rounds that the mean squared jump reaches
        the target (``jump`` in the band, ``level_jump`` above it; 2 for independent draws) at the
        last measured rate, and that a particle is left unmoved with probability at most ``1%``
        above the band (``5%`` between emissions in the band) at the last acceptance (Drovandi & Pettitt, Biometrics 67,
        2011: ``R = log c / log(1 - acceptance)``); within ``[moves, max_moves]`` (``thin`` for
        emissions). The first level, with nothing measured, takes ``max(moves, 8)``."""
        cfg = self.config
        least = cfg.thin if state.inside and state.samples.count > 0 else cfg.moves
        if not (math.isfinite(state.jump_rate) and state.jump_rate > 0.0) or state.period_proposed == 0:
            rounds = max(least, 8)
        else:
            target, c = (self._target(state), 0.05) if state.inside else (cfg.level_jump, 0.01)
            rounds = math.ceil(target / state.jump_rate)
            acc = state.period_accepted / state.period_proposed
            if acc <= 0.0:
                rounds = cfg.max_moves
            elif acc < 1.0:
                rounds = max(rounds, math.ceil(math.log(c) / math.log1p(-acc)))
        state.period_rounds = state.period_proposed = state.period_accepted = 0
        return int(min(max(rounds, least), self._most(state)))

    def _move(self, state: SMCState, gen: torch.Generator) -> float:
        """One round of moves of every particle, invariant for the prior restricted to
        ``{score <= level}``; returns the acceptance rate. With the pairs move on, every other
        round is a pairs round."""
        if state.grads is not None and state.rounds % 2 == 1:
            return self._pairs_round(state, gen)
        x = state.codes
        N = x.shape[0]
        xi = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        box = self.problem.box
        if self.kind == "reflect":
            y = _fold(x + state.step * state.spread * xi, *box)
            ok = torch.ones(N, dtype=torch.bool, device=x.device)
        else:
            b = min(state.step, 1.0)
            if box is not None:
                y = _unprobit(math.sqrt(1 - b * b) * _probit(x, *box) + b * xi, *box)
                ok = torch.ones(N, dtype=torch.bool, device=x.device)
            else:
                y = math.sqrt(1 - b * b) * x + b * xi
                ok = self._in_domain(y)
        rows = ok.nonzero().squeeze(1)
        good = self._accept(state, rows, y[rows])
        rate = float(good.sum()) / N
        self._count(state, N, int(good.sum()))
        if not state.inside:  # adapt only while the levels tighten: the output kernel is fixed
            state.step = min(state.step * math.exp(rate - self.config.accept), 1.0)
        return rate

    def _accept(self, state: SMCState, rows: Tensor, y: Tensor) -> Tensor:
        """Evaluate the proposals ``y`` of the particles ``rows`` and move those inside the level
        (``score < level``; ``<= 0`` in the band); returns which were accepted."""
        v, g = self._evaluate(state, y)
        sc = self._score(v, state.scale)
        good = sc < state.level if state.strict else sc <= state.level
        take = rows[good]
        state.codes[take], state.values[take], state.score[take] = y[good], v[good], sc[good]
        if g is not None:
            state.grads[take] = g[good]
        return good

    @staticmethod
    def _count(state: SMCState, proposed: int, accepted: int) -> None:
        state.proposed += proposed
        state.accepted += accepted
        state.period_rounds += 1
        state.period_proposed += proposed
        state.period_accepted += accepted

    def _pairs_round(self, state: SMCState, gen: torch.Generator) -> float:
        """The covering walk's pairs move for every particle, red-black: the population is split
        in two random halves (a draw independent of the particles' states), and each half moves
        along block directions from the gradients of random partners in the other half
        (``cover.pairs_proposal``), accepted iff inside the level. Given the other half, the
        proposal is symmetric, so the prior (uniform on the box) restricted to the level is
        invariant, for any constraint. The window adapts like ``step`` above the band."""
        x = state.codes
        N = x.shape[0]
        order = torch.randperm(N, generator=gen).to(x.device)
        halves = (order[: N // 2], order[N // 2:])
        accepted = 0
        for movers, others in (halves, halves[::-1]):
            if movers.numel() == 0 or others.numel() == 0:
                continue
            partner = others[torch.randint(others.numel(), (movers.numel(),), generator=gen).to(x.device)]
            window = torch.full((movers.numel(),), state.pair_step, dtype=x.dtype, device=x.device)
            y = pairs_proposal(state.codes[movers], state.grads[partner], self.problem.box, window,
                               self.config.pair_rounds, None, gen)
            accepted += int(self._accept(state, movers, y).sum())
        rate = accepted / N
        self._count(state, N, accepted)
        if not state.inside:
            state.pair_step = min(state.pair_step * math.exp(rate - self.config.accept), 1.0)
        return rate

    def _emit(self, state: SMCState, gen: torch.Generator) -> int:
        """Certify the particles (a random subset when fewer are needed) and keep them."""
        need = state.samples.capacity - state.samples.count
        N = state.codes.shape[0]
        rows = torch.randperm(N, generator=gen)[: min(need, N)].to(state.codes.device)
        inside = rows[state.score[rows] <= 0]
        _, ok = self.problem.check(state.codes[inside].reshape(-1, *self.problem.code_shape))
        state.check_evals += inside.numel()
        state.rejected_by_check += int((~ok).sum())
        take = inside[ok.to(inside.device)]
        return state.samples.append(state.codes[take], state.values[take], **_row_ids(state, take))

    def _rejection_round(self, state: SMCState, gen: torch.Generator) -> dict:
        """Rejection mode: keep the in-band rows of the current batch of prior draws (certified),
        then draw the next batch of ``N`` from the prior (evaluated now, kept next round)."""
        N = state.codes.shape[0]
        rows = (state.score <= 0).nonzero().squeeze(1)[: state.samples.capacity - state.samples.count]
        new = 0
        if rows.numel():  # a small last batch can hold no in-band row
            _, ok = self.problem.check(state.codes[rows].reshape(-1, *self.problem.code_shape))
            state.check_evals += rows.numel()
            state.rejected_by_check += int((~ok).sum())
            take = rows[ok.to(rows.device)]
            # every row its own id, negative: drawn independently, no ancestor in a population
            first = state.drawn - N  # the draw index of this batch's first row
            ids = {"walker": first + take, "ancestor": -1 - (first + take)}
            new = state.samples.append(state.codes[take], state.values[take],
                                       **{k: v for k, v in ids.items() if k in state.samples.extra})
            # the rows looked at are used up: a resume to a larger n must not keep them again
            state.score[rows] = math.inf
        state.rounds += 1
        if not state.samples.full:
            # the next batch: enough draws for what is missing at the acceptance so far (+20%),
            # at most N (the last batch does not overshoot by a whole population)
            need = state.samples.capacity - state.samples.count
            size = min(N, math.ceil(1.2 * need * state.drawn / max(state.hits, 1)) + 16)
            state.codes = self._prior(size, gen)
            state.values = self._values(state, state.codes)
            state.score = self._score(state.values, state.scale)
            state.drawn += size
            state.hits += int((state.score <= 0).sum())
        return {"round": state.rounds, "acceptance": state.hits / state.drawn, "accepted": new}

    def step(self, state: SMCState) -> tuple[SMCState, dict]:
        gen = torch.Generator(device="cpu")
        gen.set_state(state.rng)
        info: dict = {}
        if state.mode == "rejection":
            info = self._rejection_round(state, gen)
            state.rng = gen.get_state()
            return state, info
        if not state.inside and state.moves_left == 0:
            info.update(self._new_level(state, gen))
            if state.failed:
                state.rng = gen.get_state()
                return state, info
        rate = self._move(state, gen)
        state.rounds += 1
        new = 0
        cfg = self.config
        if state.moves_left > 0:
            state.moves_left -= 1
            if state.inside and state.moves_left == 0 and not self._mixed(state) \
                    and state.period_rounds < cfg.max_moves:
                state.moves_left = 1  # the band: move on until the population has decorrelated
            if state.inside and state.moves_left == 0:
                new = self._emit(state, gen)  # the band's level: the population is the first emission
                self._next_period(state)
                self._maybe_next_pass(state)
        else:
            state.since_emit += 1
            if state.since_emit >= state.plan and (self._mixed(state) or state.since_emit >= self._most(state)):
                new = self._emit(state, gen)
                self._next_period(state)
                self._maybe_next_pass(state)
        state.rng = gen.get_state()
        info.update(round=state.rounds, stage=len(state.fractions), acceptance=rate, accepted=new)
        return state, info

    def _next_period(self, state: SMCState) -> None:
        """After an emission: measure the rounds since the last anchor, re-anchor (the spread and
        the step stay frozen in the band) and plan the rounds to the next emission."""
        self._measure(state)
        self._anchor(state, spread=False)
        state.since_emit = 0
        state.plan = self._plan(state)

    def _maybe_next_pass(self, state: SMCState) -> None:
        """``budget="auto"``: the rows are complete; diagnose them and stop (mixed, no
        diagnostics, or the next pass would pass ``max_budget``) or start a fresh pass (the buffer
        is emptied, the driver cuts the run directory's shards to it). Everything decided here
        derives from the state and the rows, so a resumed run decides the same."""
        cfg = self.config
        if state.budget_stop and state.samples.count != state.budget_count:
            state.budget_stop = ""  # resumed with a larger n: the new rows are diagnosed again
        if cfg.budget != "auto" or not state.samples.full or state.budget_stop:
            return
        count = state.samples.count
        state.budget_count = count
        extra = state.samples.extra
        if "walker" not in extra:  # resumed from shards written before the id columns
            state.budget_stop = "no diagnostics"
            return
        problem = self.problem
        codes = state.samples.codes[:count].reshape(count, *problem.code_shape)
        with torch.no_grad():  # the driver's finish measures the same rows the same way
            values, _ = problem.check(codes)
            embedding = diagnostics.embedding_of(problem, problem.decode(codes))
        state.diagnostic_evals += 2 * count
        diag = diagnostics.diagnose(extra["walker"][:count], values, codes, embedding,
                                    names=problem.bands.names,
                                    ancestors=extra["ancestor"][:count] if "ancestor" in extra else None)
        cost = state.model_evals - state.pass_evals0
        band_cost = state.model_evals - max(state.pass_evals0, state.band_evals0)
        state.budget_history.append({"evals": cost, "mixed": diag["mixed"], "rhat_max": diag.get("rhat_max"),
                                     "worst": diag.get("worst", "")})
        if diag["mixed"]:
            state.budget_stop = "mixed"
        elif diag["mixed"] is None:  # the run's report says why (too few rows or families)
            state.budget_stop = "no diagnostics"
            log.info("budget='auto' stopped after pass %d: the diagnostics were skipped (%s)",
                     state.budget_rounds, diag.get("skipped"))
        elif state.model_evals + max(2 * band_cost, state.plan * state.codes.shape[0]) > cfg.max_budget * count:
            # the next pass costs about twice this pass's moves in the band (its target is tighter
            # and its max_moves doubled), at least the rounds planned to its first emission
            state.budget_stop = "cap"
            log.warning("budget='auto' stopped at the cap max_budget=%g after %d pass(es) (%.1f evaluations "
                        "per sample) and the samples are not mixed: %s; raise max_budget or see "
                        "docs/troubleshooting.md", cfg.max_budget, state.budget_rounds,
                        state.model_evals / max(count, 1), diag.get("worst"))
        else:
            state.samples.count = 0
            state.budget_rounds += 1
            state.pass_evals0 = state.model_evals

    def done(self, state: SMCState) -> bool:
        return state.samples.full or bool(state.failed)

    def progress(self, state: SMCState) -> tuple[int, int]:
        return state.samples.count, state.samples.capacity

    def finalize(self, state: SMCState) -> tuple[Tensor, dict]:
        N = state.codes.shape[0]
        count = state.samples.count
        stats = dict(model_evals=state.model_evals, check_evals=state.check_evals, particles=state.ancestor.numel(),
                     smc_stages=len(state.fractions), smc_levels_done=state.inside,
                     smc_fractions=list(state.fractions), walk_steps=state.rounds,
                     move=self.kind, step=state.step, pairs=state.grads is not None, acceptance=state.accepted / max(state.proposed, 1),
                     rejected_by_check=state.rejected_by_check,
                     distinct_ancestors=int(torch.unique(state.ancestor).numel()),
                     evals_per_sample=state.model_evals / max(count, 1))
        stats["smc_mode"] = state.mode
        if self.config.budget == "auto" and state.mode == "levels" and state.inside:
            stats.update(budget_rounds=state.budget_rounds, budget_stop=state.budget_stop or "not finished",
                         budget_history=list(state.budget_history),
                         auto_diagnostic_evals=state.diagnostic_evals)
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
        codes = state.samples.codes[:count].reshape(count, *self.problem.code_shape)
        if count == 0 and state.failed and N > 0:
            codes = self._closest(state, stats)
        return codes, stats

    def _closest(self, state: SMCState, stats: dict) -> Tensor:
        """No certified sample (the levels stopped short of the band): the ``k`` distinct particles
        closest to the band (smallest largest violation), closest first, as the other methods
        return their closest iterates; ``stats["best_violation"]`` says how close they came."""
        viol = self.problem.bands.violation(state.values).amax(1)
        viol = torch.where(torch.isnan(viol), torch.full_like(viol, math.inf), viol)
        order = torch.argsort(viol, stable=True)
        codes = state.codes[order]
        _, group = torch.unique(codes, dim=0, return_inverse=True)
        index = torch.arange(codes.shape[0], device=codes.device)
        first = torch.full((int(group.max()) + 1,), codes.shape[0], device=codes.device)
        first = first.scatter_reduce(0, group, index, reduce="amin")  # each distinct code's closest row
        rows = torch.sort(first).values[: self.run.k]
        best = float(viol[order[0]])
        stats.update(best_violation=best, returned_closest=True)
        stats["why"] = (stats.get("why") or "no particle reached the band") + (
            f"; the closest came within {best:.4g} of the band "
            f"({self.problem.bands.describe()}); the {rows.numel()} closest distinct particles are "
            "returned, closest first")
        return codes[rows].reshape(rows.numel(), *self.problem.code_shape)


__all__ = ["SMCConfig", "SMCState", "SMC", "log_prob_estimate", "survival_variance"]
