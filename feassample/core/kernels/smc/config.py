"""Settings (``SMCConfig``) and state (``SMCState``) of adaptive multilevel splitting."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor

from ...options import check_options, option
from ...state import SampleBuffer, State
from .resampling import RESAMPLING

MOVES = ("auto", "reflect", "pcn")
PAIRS = ("auto", "on", "off")



@dataclass(frozen=True)
class SMCConfig:
    """Settings of ``method="smc"`` (``fs.sample(..., method="smc", options={...})``).

    Attributes:
        particles: ``N``, the population size after the first stage (``None``: one per 4
            requested samples, within ``[32, 512]``, ``levels.population``; at least 16: with 2 or
            3 every level is soon copies of one particle and cannot progress). The levels cost
            about ``N`` evaluations per move round whatever ``n``, and the band's population is
            emitted every few rounds until there are ``n`` rows, so a small ``N`` keeps small
            runs cheap; the standard error of ``log_prob`` shrinks like ``1 / sqrt(N)``. When at
            least ``1/8`` of the first draws are already inside the band (three levels at 0.5 or fewer),
            the whole first population goes on (a set in pieces keeps as many independent draws
            of its pieces as the first stage had; not with an explicit ``particles``).
        first: prior draws of the first stage (``None``: ``particles`` when given, else ``n``
            within ``[128, 2048]``, ``levels.FIRST``; at least ``particles``): they decide the rejection mode and the first level, whose fraction is
            then an average over more independent draws.
        p0: the fraction of particles kept at each level (the level is their ``p0``-quantile).
            ``None``: ``0.5``, and ``0.2`` at each level after one whose moves jumped half-way
            to an independent draw per evaluation, with the default population of 125 particles or more (``levels.keep_fraction``:
            fewer levels where the moves decorrelate five copies per survivor within a level's
            rounds); a number fixes it for every level.
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
            Where a round moves the particles far (the analytic cases) the 1% rule of ``plan``
            decides instead; on a pretrained image network 0.25 cost 3.3 times 0.1 per sample
            and did not calibrate ``log_prob`` at 64 particles either (docs/smc.md).
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
        galilean: the Galilean move (``moves.galilean_round``: straight lines of the prior's free
            motion that bounce off the level set along the most violated constraint's gradient)
            instead of the gradient-free ``reflect``/``pcn`` step (with ``pairs``, on the other
            rounds). ``"auto"``: on when the values have gradients (box priors with
            ``move="reflect"``, and the ``N(0, I)`` prior), ``"on"``: required, ``"off"``: never.
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
            ``stats["evals"]["diagnostic"]``). Higher than the covering walk's 100: the levels
            alone cost 80-90 per sample on the shell of docs/coverage.md, 283 on its foreign
            network.
    """

    particles: Optional[int] = option(None, ge=16)  # fewer: copies of one or two particles
    first: Optional[int] = option(None, ge=16)
    p0: Optional[float] = option(None, gt=0, lt=1)
    moves: int = option(3, ge=1)
    max_moves: int = option(30, ge=1)
    jump: float = option(1.0, ge=0)
    thin_jump: float = option(1.8, ge=0)
    level_jump: float = option(0.1, ge=0)
    thin: int = option(2, ge=1)
    move: str = option("auto", choices=MOVES)
    pairs: str = option("auto", choices=PAIRS)
    pair_rounds: int = option(2, ge=1)
    galilean: str = option("auto", choices=PAIRS)
    accept: float = option(0.5, gt=0, lt=1)
    resampling: str = option("systematic", choices=RESAMPLING)
    max_stages: int = option(400, ge=1)
    max_stall: int = option(8, ge=1)
    batch: Optional[int] = option(None, ge=1)
    rejection_rate: Optional[float] = option(0.05, gt=0, le=1)
    budget: Optional[str] = option("auto", choices=("auto",))
    max_budget: float = option(300.0, gt=0, inf=True)

    def __post_init__(self) -> None:
        check_options(self)
        if self.max_moves < self.moves or self.max_moves < self.thin:
            raise ValueError(f"max_moves must be >= moves and thin, got {self.max_moves!r}")


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
        levels: each stage's level ``L_i`` of the score (the rarity curve: ``log P(s < L_i)`` is
            the sum of the first ``i`` log fractions).
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
        kind_jump2, kind_evals: per move kind of the Galilean cycle, the squared jumps (per
            particle, per coordinate in units of ``spread``) and the model evaluations summed
            over the current period's rounds of that kind (``proposals.per_evaluation``, as the
            covering walk keeps them); band_kinds: the band's cycle of move kinds, chosen from
            them at the band's first emission (empty: the default cycle); level_jumps: the same
            over the last level's rounds; flat: the Galilean move's jump per evaluation was
            negligible there against the pairs move's (``moves.band_cycle``; the cycle then moves
            across the level set by the line draw, ``moves.line_round``, whose window is
            line_step).
        band_particles: the population the band's level resamples to (0: ``particles``):
            ``ceil(n / 4)`` when that is fewer, so that every particle is emitted at least 4
            times and the rows' chains can be diagnosed (``levels.band_population``).
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
    levels: list = field(default_factory=list)
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
    galilean: bool = False
    pairs: bool = False
    normal_step: float = 0.05
    particles: int = 0
    first_draws: int = 0
    gal_step: float = 0.5
    kind_jump2: dict = field(default_factory=dict)
    kind_evals: dict = field(default_factory=dict)
    band_kinds: list = field(default_factory=list)
    band_jumps: dict = field(default_factory=dict)
    level_jumps: dict = field(default_factory=dict)
    flat: bool = False
    line_step: float = 0.05
    band_particles: int = 0


__all__ = ["MOVES", "PAIRS", "RESAMPLING", "SMCConfig", "SMCState"]
