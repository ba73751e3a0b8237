"""The covering walk's settings (``CoverConfig``) and state (``CoverState``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from torch import Tensor

from ...options import check_options, option
from ...state import SampleBuffer, State

MOVES = ("level", "pairs", "normal", "manifold")

#: the budget (evaluations per sample) that ``budget="auto"`` plans its first pass for
AUTO_START = 9.5


@dataclass(frozen=True)
class CoverConfig:
    """Settings of the covering walk (``fs.sample(..., method="cover", options={...})``).

    Attributes:
        schedule: the cycle of moves, e.g. ``("pairs", "level")``; ``None``: chosen at the end
            of the burn-in (on a box: ``pairs`` plus ``level`` or ``normal``; otherwise
            ``level`` alone or ``manifold, level``), see ``kernel.choose_schedule``.
        budget: model evaluations per returned sample, seeds included, that the run plans for:
            the thinning is chosen after the burn-in so that the whole run fits (at least
            ``min_thin`` rounds between samples of a walker). ``"auto"``: plan a first pass of
            ``n`` samples for ``AUTO_START`` (9.5); while the diagnostics
            (``core.diagnostics``) say the pass is not mixed and the next pass fits
            ``max_budget``, double the thinning and sample a fresh pass from where the chains
            are (the earlier passes become burn-in). ``stats["budget_rounds"]`` (passes),
            ``["budget_stop"]`` (``"mixed"``, ``"cap"`` or ``"no diagnostics"``) and
            ``["budget_history"]`` (per pass: thin, evaluations, R-hat max, mixed) report it.
        max_budget: with ``budget="auto"``, the cap on model evaluations per returned sample
            (seeds and every pass included; the diagnostics' own forward passes are counted
            apart in ``stats["evals"]["diagnostic"]``).
        thin: rounds between two samples of a walker (``None``: from ``budget``).
        min_thin: the smallest thinning the budget rule may choose.
        burn: rounds of burn-in (step sizes adapt; no samples are kept).
        directions: ``"ensemble"`` (pairs use a partner's gradients: exact for any constraint)
            or ``"own"`` (the walker's own gradient: exact for affine constraints only).
        block: coordinates per block of the pairs move (``None``: ``m + 1``).
        pair_rounds: successive block moves (fresh random blocks) per proposal of the pairs
            move, all along directions from the same gradients.
        level_accept, pairs_accept, manifold_accept: acceptance rates the burn-in aims at.
        level_frac: standard deviation of the manifold move's new level, as a fraction of the
            band's width.
        newton_iters: Newton steps of the manifold move (each one model evaluation).
        newton_tol: tolerance of the Newton solve, as a fraction of the band's width.
        reverse_check: run the manifold move's reverse Newton solve (exactness; costs evaluations).
        max_rounds: rounds before the walk gives up (``None``: from the budget, generously).
    """

    schedule: Optional[Sequence[str]] = None
    budget: Union[float, str] = option(9.5, gt=0, choices=("auto",))
    max_budget: float = option(100.0, gt=0, inf=True)
    thin: Optional[int] = option(None, ge=1)
    min_thin: int = option(2, ge=1)
    burn: int = option(12, ge=0)
    directions: str = option("ensemble", choices=("ensemble", "own"))
    block: Optional[int] = option(None, ge=1)
    pair_rounds: int = option(2, ge=1)
    level_accept: float = option(0.35, gt=0, lt=1)
    pairs_accept: float = option(0.5, gt=0, lt=1)
    manifold_accept: float = option(0.5, gt=0, lt=1)
    level_frac: float = option(0.5, gt=0)
    newton_iters: int = option(4, ge=1)
    newton_tol: float = option(1e-3, gt=0)
    reverse_check: bool = True
    max_rounds: Optional[int] = option(None, ge=1)

    def __post_init__(self) -> None:
        check_options(self)
        if self.schedule is not None:
            sched = tuple(self.schedule.split(",")) if isinstance(self.schedule, str) else tuple(self.schedule)
            if not sched or any(s not in MOVES for s in sched):
                raise ValueError(f"schedule must be a sequence of moves from {MOVES}, got {self.schedule!r}")
            object.__setattr__(self, "schedule", sched)


@dataclass
class CoverState(State):
    """Everything the covering walk carries from round to round (a value you can save).

    Attributes:
        codes: ``(K, D)`` the walkers (flattened codes); values ``(K, m)``; grads ``(K, m, D)``.
        level_scale, pairs_scale, tangent_scale: ``(K,)`` step sizes of the level, pairs
            (window fraction of the chord; 1 = Gibbs) and manifold moves, shared by the walkers,
            adapted during the burn-in from the pooled acceptance, then frozen.
        samples: the certified samples, codes ``(n, D)`` and values ``(n, m)``.
        rng: the state of the run's ``torch.Generator`` (``generator.get_state()``).
        spans: ``(m,)`` level scale of each constraint (band width, or a typical change of h over
            a tangent step for one-sided bands), fixed at init.
        schedule: the cycle of moves; auto: choose it at the end of the burn-in (off a box).
        rounds: rounds taken; burn: rounds of burn-in; thin: rounds between samples (0: not yet
            chosen); next_emit: the round of the next sample.
        model_evals: per-code forward+backward passes of the walk (the initial evaluation of the
            seeds included); vjp_evals: vector-Jacobian products (``m`` per evaluation);
            seed_evals: the seeding phase's evaluations.
        check_evals: certification passes; rejected_by_check: samples the check refused.
        proposed, accepted_moves, move_evals, jump2: per move kind, proposals, acceptances,
            model evaluations and summed squared jump distances.
        alive: ``(K,)`` walkers in use.
        auto_budget: ``budget="auto"``; budget_rounds: passes begun (1 = the first);
            pass_evals0: ``model_evals`` when the current pass began; budget_stop: why the
            passes stopped (``""`` while going on); budget_history: one dict per finished pass;
            diagnostic_evals: forward passes of the passes' diagnostics.
        max_rounds: rounds before the walk gives up (``CoverConfig.max_rounds``, or from the
            budget, fixed at init).
    """

    codes: Tensor
    values: Tensor
    grads: Tensor
    level_scale: Tensor
    pairs_scale: Tensor
    tangent_scale: Tensor
    samples: SampleBuffer
    rng: Tensor
    spans: Optional[Tensor] = None
    schedule: tuple = ()
    rounds: int = 0
    burn: int = 0
    thin: int = 0
    next_emit: int = 0
    model_evals: int = 0
    vjp_evals: int = 0
    seed_evals: int = 0
    check_evals: int = 0
    rejected_by_check: int = 0
    proposed: dict = field(default_factory=dict)
    accepted_moves: dict = field(default_factory=dict)
    move_evals: dict = field(default_factory=dict)
    jump2: dict = field(default_factory=dict)
    hjump2: dict = field(default_factory=dict)
    auto: bool = False
    alive: Optional[Tensor] = None
    auto_budget: bool = False
    max_rounds: int = 0
    budget_rounds: int = 0
    pass_evals0: int = 0
    budget_stop: str = ""
    budget_history: list = field(default_factory=list)
    diagnostic_evals: int = 0


__all__ = ["MOVES", "AUTO_START", "CoverConfig", "CoverState"]
