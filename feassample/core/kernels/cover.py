"""The covering walk: a Markov chain whose stationary law is UNIFORM on the feasible set.

The paper's walk (``walk.py``) climbs a diversity objective and piles its samples on the boundary
of the set. This walk instead runs ``K`` Metropolis-Hastings chains that leave the uniform law on
``{c in domain : lo <= h(decode(c)) <= hi}`` (codes, Lebesgue measure) invariant, and keeps every
``thin``-th state of each chain after a burn-in. It only uses the ``FeasibleSet`` contract:
``decode``/``measure`` (values and, by autograd, the constraint gradients ``G = dh/dc``, one
forward+backward per code), ``bands``, ``box``/``project`` (the domain) and ``check``.

Moves (a cycle of them is the ``schedule``; each move is one proposal and one model evaluation
per moving walker, plus the Newton steps of the manifold move):

``"level"``  isotropic random walk ``y = x + sigma xi``, folded back into the box (reflection at
    the walls, a symmetric kernel on the box); outside a non-box domain (``project(y) != y``) it
    is rejected without a model evaluation. Accepted iff ``y`` is in the band. Exact for any
    constraint. It moves the value of ``h`` across the band, so the law of ``h`` (the volume of
    the level sets) comes out right.
``"pairs"``  (box domains) random disjoint blocks of ``m + 1`` coordinates; in each block the code
    moves along the direction of the block that is orthogonal to the ``m`` constraint gradients
    (for one constraint: ``(g_j, -g_i)``), to a uniform point of the box chord (a Gibbs step
    on that line) or within a window of it. With ``directions="ensemble"`` the gradients are
    those of a partner walker of the other half of the ensemble (red-black updates), so the
    proposal does not depend on the moving walker's state: it is symmetric and the move, accepted
    iff the proposal is in the band, is exact for any constraint (for an affine constraint it is
    always accepted). ``directions="own"`` uses the walker's own gradient: exact only for affine
    constraints.
``"normal"``  (box domains) across the band along a partner's unit gradient ``n``: ``t`` uniform
    on the chord of ``x + t n`` cut by the box and by the band under the walker's own linear
    model of ``h``; Metropolis-Hastings with the ratio of the chord lengths at ``x`` and ``y``.
    Exact for any constraint; for an affine one, a Gibbs draw of ``h`` across the band.
``"manifold"``  a tangent Gaussian step plus a Newton correction along the normal space at ``x``
    to a new level ``c' = h(x) + N(0, s_c^2)`` (Zappa, Holmes-Cerfon & Goodman, CPAM 2018,
    extended from a level set to a band): the proposal density is
    ``p(v) p(c'|c) |det(G_y Q_x)|`` so the Metropolis-Hastings ratio is
    ``p(v') |det(G_x Q_y)| / (p(v) |det(G_y Q_x)|)``; a reverse Newton solve checks that the
    reverse move returns to ``x`` (otherwise the move is rejected). Exact up to the Newton
    tolerance; the move of choice for curved constraints in a non-box domain (a code ball).

Step sizes (one per move, shared by the walkers) adapt toward an acceptance rate during the
burn-in; with ``schedule=None`` the burn-in also picks the schedule by expected squared jump per
model evaluation. Both are frozen after it, so the chain that produces the samples is a fixed
(non-adaptive) kernel. All randomness comes
from one ``torch.Generator`` whose state is kept in ``CoverState.rng``: a run can be saved and
resumed bit-identically. See ``docs/coverage.md`` for the measurements behind the defaults.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .. import diagnostics
from ..bands import Bands
from ..problem import FeasibleSet
from ..state import SampleBuffer, State
from .base import Sampler, Seeds

log = logging.getLogger(__name__)

MOVES = ("level", "pairs", "normal", "manifold")

#: relative eigenvalue of a block's Gram matrix below which the block is rank-deficient
_RANK_TOL = 1e-6

#: the budget (evaluations per sample) that ``budget="auto"`` plans its first pass for
AUTO_START = 9.5


@dataclass(frozen=True)
class CoverConfig:
    """Settings of the covering walk (``fs.sample(..., method="cover", options={...})``).

    Attributes:
        schedule: the cycle of moves, e.g. ``("pairs", "level")``; ``None``: chosen at the end
            of the burn-in (on a box: ``pairs`` plus ``level`` or ``normal``; otherwise
            ``level`` alone or ``manifold, level``), see ``_choose_schedule``.
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
            apart in ``stats["auto_diagnostic_evals"]``).
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
    budget: Union[float, str] = 9.5
    max_budget: float = 100.0
    thin: Optional[int] = None
    min_thin: int = 2
    burn: int = 12
    directions: str = "ensemble"
    block: Optional[int] = None
    pair_rounds: int = 2
    level_accept: float = 0.35
    pairs_accept: float = 0.5
    manifold_accept: float = 0.5
    level_frac: float = 0.5
    newton_iters: int = 4
    newton_tol: float = 1e-3
    reverse_check: bool = True
    max_rounds: Optional[int] = None

    def __post_init__(self) -> None:
        if self.schedule is not None:
            sched = tuple(self.schedule.split(",")) if isinstance(self.schedule, str) else tuple(self.schedule)
            if not sched or any(s not in MOVES for s in sched):
                raise ValueError(f"schedule must be a sequence of moves from {MOVES}, got {self.schedule!r}")
            object.__setattr__(self, "schedule", sched)
        if self.directions not in ("ensemble", "own"):
            raise ValueError(f"directions must be 'ensemble' or 'own', got {self.directions!r}")
        if isinstance(self.budget, str):
            if self.budget != "auto":
                raise ValueError(f"budget must be a number > 0 or 'auto', got {self.budget!r}")
        elif isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)) or not self.budget > 0:
            raise ValueError(f"budget must be a number > 0 or 'auto', got {self.budget!r}")
        if isinstance(self.max_budget, bool) or not isinstance(self.max_budget, (int, float)) \
                or not self.max_budget > 0:
            raise ValueError(f"max_budget must be a number > 0, got {self.max_budget!r}")
        for name in ("burn", "pair_rounds", "min_thin", "newton_iters"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "burn" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'burn' else 1}, got {v!r}")
        if self.thin is not None and (not isinstance(self.thin, int) or self.thin < 1):
            raise ValueError(f"thin must be an integer >= 1, got {self.thin!r}")


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
    budget_rounds: int = 0
    pass_evals0: int = 0
    budget_stop: str = ""
    budget_history: list = field(default_factory=list)
    diagnostic_evals: int = 0


# -- helpers ----------------------------------------------------------------------------------
def _band_tensors(bands: Bands, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Effective ends ``lo - tol``, ``hi + tol`` and widths ``(m,)`` (inf for one-sided bands)."""
    lo, hi = bands.tensors(like)
    lo, hi = lo - bands.tol, hi + bands.tol
    return lo, hi, hi - lo


def evaluate(problem: FeasibleSet, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Values ``(B, m)`` and gradients ``(B, m, D)`` of flattened codes ``(B, D)``: one forward and
    ``m`` vector-Jacobian products (rows are independent, so the batch sum gives per-row grads)."""
    b = codes.shape[0]
    m = problem.bands.m
    if b == 0:
        return codes.new_zeros(0, m), codes.new_zeros(0, m, codes.shape[1])
    c = codes.detach().reshape(b, *problem.code_shape).requires_grad_(True)
    with torch.enable_grad():
        values = problem.measure(problem.decode(c)).values
        grads = []
        for j in range(m):
            g, = torch.autograd.grad(values[:, j].sum(), c, retain_graph=j < m - 1, allow_unused=True)
            grads.append(torch.zeros_like(c) if g is None else g)
    grads = torch.stack([g.reshape(b, -1) for g in grads], 1).to(codes.dtype)
    grads = torch.nan_to_num(grads, nan=0.0, posinf=0.0, neginf=0.0)
    return values.detach().to(codes.dtype), grads


def _in_band(values: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    return (torch.isfinite(values) & (values >= lo) & (values <= hi)).all(1)


def _in_domain(problem: FeasibleSet, y: Tensor) -> Tensor:
    """Rows whose projection onto the domain leaves them unchanged (no model evaluation)."""
    if y.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=y.device)
    proj = problem.project(y.reshape(y.shape[0], *problem.code_shape)).reshape(y.shape[0], -1)
    return (proj == y).all(1) & torch.isfinite(y).all(1)


def _fold(y: Tensor, lo: float, hi: float) -> Tensor:
    """Reflect ``y`` into ``[lo, hi]`` at the walls (any number of reflections)."""
    w = hi - lo
    u = torch.remainder(y - lo, 2 * w)
    return (lo + torch.where(u > w, 2 * w - u, u)).clamp(lo, hi)


def _reflect_into(c: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Reflect values ``(B, m)`` into ``[lo, hi]`` per column (one-sided ends reflect once)."""
    flo, fhi = torch.isfinite(lo), torch.isfinite(hi)
    lo_f = torch.where(flo, lo, torch.zeros_like(lo))
    w = torch.where(flo & fhi, hi - lo, torch.ones_like(lo))
    r = torch.remainder(c - lo_f, 2 * w)
    both = lo_f + torch.where(r > w, 2 * w - r, r)
    only_lo = lo_f + (c - lo_f).abs()
    only_hi = torch.where(fhi, hi, torch.zeros_like(hi))
    only_hi = only_hi - (only_hi - c).abs()
    out = torch.where(flo & fhi, both, torch.where(flo, only_lo, torch.where(fhi, only_hi, c)))
    return torch.minimum(torch.maximum(out, lo), hi)


def _orthobasis(G: Tensor) -> Tensor:
    """Orthonormal bases ``(B, D, m)`` of the row spaces of ``G (B, m, D)``."""
    q, _ = torch.linalg.qr(G.transpose(1, 2))
    return q


def _rand(gen: Tensor, shape, like: Tensor, normal: bool = False) -> Tensor:
    out = torch.randn(shape, generator=gen, dtype=like.dtype) if normal else \
        torch.rand(shape, generator=gen, dtype=like.dtype)
    return out.to(like.device)


def _count(state: CoverState, kind: str, proposed: int, accepted: int, evals: int = 0,
           jump2: float = 0.0, hjump2: float = 0.0) -> None:
    """Per move kind: proposals, acceptances, model evaluations, squared jump distances (in codes
    and in constraint values over their spans)."""
    for book, v in ((state.proposed, proposed), (state.accepted_moves, accepted),
                    (state.move_evals, evals)):
        book[kind] = book.get(kind, 0) + int(v)
    for book, v in ((state.jump2, jump2), (state.hjump2, hjump2)):
        book[kind] = book.get(kind, 0.0) + float(v)


def _hjump(state: CoverState, new: Tensor, old: Tensor) -> Tensor:
    return ((new - old) / state.spans.to(new.dtype)).pow(2).sum()


def _adapt(scale: Tensor, idx: Tensor, acc: Tensor, target: float, state: CoverState,
           cap: Optional[float] = None) -> None:
    """Robbins-Monro on the log step size during the burn-in only (frozen afterwards).

    The scale is shared by all walkers and driven by their pooled acceptance: per-walker
    adaptation from 0/1 outcomes left some walkers with 5x too small steps (slow mixing of h)."""
    if state.rounds >= state.burn or idx.numel() == 0:
        return
    gain = 1.0 / math.sqrt(1.0 + state.rounds / max(len(state.schedule), 1))
    rate = acc.to(scale.dtype).mean()
    new = scale * torch.exp(gain * (rate - target))
    if cap is not None:
        new = new.clamp(max=cap)
    scale.copy_(new)


def _evaluate_into(problem, state: CoverState, y: Tensor) -> tuple[Tensor, Tensor]:
    values, grads = evaluate(problem, y)
    state.model_evals += y.shape[0]
    state.vjp_evals += y.shape[0] * problem.bands.m
    return values, grads


# -- the moves --------------------------------------------------------------------------------
def _level_move(state: CoverState, problem, idx: Tensor, gen, band, cfg) -> None:
    lo, hi, _ = band
    evals0 = state.model_evals
    x = state.codes[idx]
    y = x + state.level_scale[idx, None] * _rand(gen, x.shape, x, normal=True)
    if problem.box is not None:
        y = _fold(y, *problem.box)
    ok = _in_domain(problem, y)
    acc = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
    rows = ok.nonzero().squeeze(1)
    if rows.numel():
        v, g = _evaluate_into(problem, state, y[rows])
        good = _in_band(v, lo, hi)
        take = rows[good]
        acc[take] = True
        hj = _hjump(state, v[good], state.values[idx[take]])
        state.codes[idx[take]], state.values[idx[take]], state.grads[idx[take]] = y[take], v[good], g[good]
    else:
        hj = 0.0
    _count(state, "level", idx.numel(), acc.sum(), state.model_evals - evals0,
           (y[acc] - x[acc]).pow(2).sum(), hj)
    _adapt(state.level_scale, idx, acc, cfg.level_accept, state,
           cap=(problem.box[1] - problem.box[0]) if problem.box is not None else None)


def _block_directions(G: Tensor, blocks: Tensor, z: Tensor) -> Tensor:
    """Unit directions ``(B, nb, b)`` in each block orthogonal to the block's gradient rows.

    ``G``: ``(B, m, D)``; ``blocks``: ``(B, nb, b)`` coordinate indices; ``z``: ``(B, nb, b)``
    random normals projected onto the null space of ``G_block (m x b)`` (exactly ``(g_j, -g_i)``
    up to sign for ``m = 1, b = 2`` with a non-zero gradient).

    Degenerate blocks: a constraint whose gradient is zero on the block (a local unit outside its
    receptive field, a max-pool that routes the gradient elsewhere) or two constraints whose
    gradient rows are parallel on the block (``h = [s, 2s]``, one slab twice) make the Gram
    matrix ``G_block G_block^T`` singular. Those blocks are found by its eigenvalues (rank below
    ``m``, relative tolerance ``_RANK_TOL``) and projected with its pseudo-inverse instead:
    ``d = z - G^T (G G^T)^+ G z``, still the orthogonal projection of ``z`` onto the null space of
    the block's rows (which is then larger than ``b - m``). The other blocks keep the plain solve,
    so the directions, and the samples, of non-degenerate problems are unchanged bit for bit.

    Why the move stays exact: the pairs move needs the direction ``d`` to be chosen independently
    of the moving walker's state (a partner's gradients, the random blocks and ``z``); given
    ``d``, a Gibbs draw or a reflected window on the chord of the line ``x + t d`` in the box is
    symmetric, and accepting iff the proposal is in the band leaves the uniform law invariant.
    The pseudo-inverse is a fixed function of the same inputs, so this still holds; a zero
    direction (``z`` inside the row space, probability zero) makes the walker stay, which is
    trivially reversible."""
    B, nb, b = blocks.shape
    m = G.shape[1]
    Gb = torch.gather(G, 2, blocks.reshape(B, 1, nb * b).expand(B, m, nb * b)).reshape(B, m, nb, b)
    Gb = Gb.permute(0, 2, 1, 3)  # (B, nb, m, b)
    scale = Gb.abs().amax(dim=(2, 3), keepdim=True).clamp(min=1e-30)
    Gs = Gb / scale
    if m == 1 and b == 2:
        gi, gj = Gs[..., 0, 0], Gs[..., 0, 1]
        d = torch.stack([gj, -gi], -1)
        sign = torch.sign((d * z).sum(-1, keepdim=True))
        d = d * torch.where(sign == 0, torch.ones_like(sign), sign)
        flat = d.norm(dim=-1, keepdim=True) <= 1e-12
        d = torch.where(flat, z, d)
    else:
        eye = torch.eye(m, dtype=G.dtype, device=G.device)
        gram = Gs @ Gs.transpose(-1, -2)
        evals, evecs = torch.linalg.eigh(gram)  # ascending, (B, nb, m)
        cut = _RANK_TOL * evals[..., -1:].clamp(min=0.0)
        degenerate = (evals[..., :1] <= cut).squeeze(-1)  # (B, nb): rank below m (or all zero)
        rhs = Gs @ z.unsqueeze(-1)
        safe = torch.where(degenerate[..., None, None], eye, gram + 1e-12 * eye)
        coef = torch.linalg.solve(safe, rhs)
        if bool(degenerate.any()):
            inv = torch.where(evals > cut, 1.0 / evals.clamp(min=1e-300), torch.zeros_like(evals))
            pinv_coef = evecs @ (inv.unsqueeze(-1) * (evecs.transpose(-1, -2) @ rhs))
            coef = torch.where(degenerate[..., None, None], pinv_coef, coef)
        d = z - (Gs.transpose(-1, -2) @ coef).squeeze(-1)
    return d / d.norm(dim=-1, keepdim=True).clamp(min=1e-30)


def pairs_proposal(x: Tensor, G: Tensor, box: tuple, scale: Tensor, rounds: int,
                   block: Optional[int], gen) -> Tensor:
    """The pairs move's proposal ``y (B, D)`` from ``x (B, D)`` (shared by ``cover`` and ``smc``).

    ``rounds`` times: random disjoint blocks of ``block`` (default ``m + 1``) coordinates (one draw
    shared by the moving rows), in each block the unit direction orthogonal to that block's rows
    of the *partner* gradients ``G (B, m, D)`` (``_block_directions``), and a point of the box
    chord of the line along it: a uniform (Gibbs) point where ``scale >= 1``, else a uniform step
    of half-width ``scale x`` the chord's length reflected into the chord. Every ingredient is
    independent of the moving row's own state and each draw is a symmetric kernel on its line, so
    "accept iff ``y`` is in the set" leaves the uniform law on the set (in the box) invariant."""
    blo, bhi = box
    B, D = x.shape
    m = G.shape[1]
    b = block or (m + 1)
    if b < m + 1:
        raise ValueError(f"block={b} leaves no direction orthogonal to {m} constraint gradients: "
                         f"use block >= {m + 1}")
    nb = D // b
    y = x.clone()
    for _ in range(rounds):
        # random disjoint blocks (one draw shared by the moving walkers: it is independent of
        # their states, which is all the symmetry of the proposal needs)
        perm = torch.randperm(D, generator=gen)[: nb * b].to(x.device).expand(B, nb * b)
        blocks = perm.reshape(B, nb, b)
        d = _block_directions(G, blocks, _rand(gen, (B, nb, b), x, normal=True))
        xb = torch.gather(y, 1, perm).reshape(B, nb, b)
        safe = d.abs() > 1e-12
        dd = torch.where(safe, d, torch.ones_like(d))
        t1, t2 = (blo - xb) / dd, (bhi - xb) / dd
        tmin = torch.where(safe, torch.minimum(t1, t2), torch.full_like(d, -math.inf)).amax(-1)
        tmax = torch.where(safe, torch.maximum(t1, t2), torch.full_like(d, math.inf)).amin(-1)
        tmin, tmax = tmin.clamp(max=0.0), tmax.clamp(min=0.0)
        u = _rand(gen, (B, nb), x)
        length = tmax - tmin
        gibbs = tmin + u * length
        # window move: a uniform step of half-width s * length, reflected into the chord
        step = (2 * u - 1) * (scale[:, None] * length)
        span = length.clamp(min=1e-30)
        r = torch.remainder(step - tmin, 2 * span)
        win = tmin + torch.where(r > span, 2 * span - r, r)
        t = torch.where((scale[:, None] >= 1.0), gibbs, win)
        # a zero direction (a measure-zero event) gives an unbounded chord: the walker stays
        t = torch.where((length > 0) & torch.isfinite(length), t, torch.zeros_like(t))
        new = (xb + t.unsqueeze(-1) * d).clamp(blo, bhi)
        y.scatter_(1, perm, new.reshape(B, nb * b))
    return y


def _pairs_move(state: CoverState, problem, idx: Tensor, partner: Tensor, gen, band, cfg) -> None:
    lo_b, hi_b, _ = band
    x = state.codes[idx]
    B = x.shape[0]
    y = pairs_proposal(x, state.grads[partner], problem.box, state.pairs_scale[idx], cfg.pair_rounds,
                       cfg.block, gen)
    v, g = _evaluate_into(problem, state, y)
    good = _in_band(v, lo_b, hi_b)
    take = good.nonzero().squeeze(1)
    hj = _hjump(state, v[take], state.values[idx[take]])
    state.codes[idx[take]], state.values[idx[take]], state.grads[idx[take]] = y[take], v[take], g[take]
    _count(state, "pairs", B, good.sum(), B, (y[take] - x[take]).pow(2).sum(), hj)
    _adapt(state.pairs_scale, idx, good, cfg.pairs_accept, state, cap=1.0)


def _normal_move(state: CoverState, problem, idx: Tensor, partner: Tensor, gen, band, cfg) -> None:
    """Across the band along a partner's normal ``n``: ``t`` uniform on the chord ``C_x`` of the
    line ``x + t n`` cut by the box and by the band under the walker's own linear model of ``h``
    (capped at ``|t| <= T``); Metropolis-Hastings with ``|C_x| / |C_y|`` and ``x in C_y``. For an
    affine constraint ``C_x = C_y``: an exact Gibbs draw of ``h`` across the band along ``n``."""
    lo, hi, _ = band
    evals0 = state.model_evals
    x, hx, Gx = state.codes[idx], state.values[idx], state.grads[idx]
    B, D = x.shape
    m = hx.shape[1]
    Gp = state.grads[partner]
    # a random unit direction in the span of the partner's gradient rows
    n = (_rand(gen, (B, 1, m), x, normal=True) @ Gp).squeeze(1) if m > 1 else Gp[:, 0]
    n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-30)
    spans = state.spans.to(x.dtype)
    slope_p = (Gp @ n.unsqueeze(-1)).squeeze(-1).abs()  # (B, m) partner's slopes along n
    cap = (spans / slope_p.clamp(min=1e-30)).amin(1)     # T: independent of the walker's state

    def chord(pos: Tensor, h: Tensor, G: Tensor, n: Tensor, cap: Tensor) -> tuple[Tensor, Tensor]:
        slope = (G @ n.unsqueeze(-1)).squeeze(-1)  # (B, m)
        safe = slope.abs() > 1e-30
        sl = torch.where(safe, slope, torch.ones_like(slope))
        a1, a2 = (lo - h) / sl, (hi - h) / sl
        c_lo = torch.where(safe, torch.minimum(a1, a2), torch.full_like(h, -math.inf)).amax(1)
        c_hi = torch.where(safe, torch.maximum(a1, a2), torch.full_like(h, math.inf)).amin(1)
        c_lo, c_hi = torch.maximum(c_lo, -cap), torch.minimum(c_hi, cap)
        if problem.box is not None:
            nz = n.abs() > 1e-30
            nn_ = torch.where(nz, n, torch.ones_like(n))
            b1, b2 = (problem.box[0] - pos) / nn_, (problem.box[1] - pos) / nn_
            c_lo = torch.maximum(c_lo, torch.where(nz, torch.minimum(b1, b2), torch.full_like(n, -math.inf)).amax(1))
            c_hi = torch.minimum(c_hi, torch.where(nz, torch.maximum(b1, b2), torch.full_like(n, math.inf)).amin(1))
        return c_lo, c_hi

    c_lo, c_hi = chord(x, hx, Gx, n, cap)
    c_lo, c_hi = c_lo.clamp(max=0.0), c_hi.clamp(min=0.0)
    u = _rand(gen, (B,), x)
    t = c_lo + u * (c_hi - c_lo)
    y = x + t[:, None] * n
    if problem.box is not None:
        y = y.clamp(*problem.box)
    u2 = _rand(gen, (B,), x)
    ok = _in_domain(problem, y) & (c_hi > c_lo)
    acc = torch.zeros(B, dtype=torch.bool, device=x.device)
    rows = ok.nonzero().squeeze(1)
    hj = 0.0
    if rows.numel():
        v, g = _evaluate_into(problem, state, y[rows])
        r_lo, r_hi = chord(y[rows], v, g, n[rows], cap[rows])
        back = -t[rows]
        inside = (back >= r_lo) & (back <= r_hi) & (r_hi > r_lo)
        ratio = (c_hi - c_lo)[rows] / (r_hi - r_lo).clamp(min=1e-300)
        good = _in_band(v, lo, hi) & inside & (u2[rows] < ratio)
        take = rows[good]
        acc[take] = True
        hj = _hjump(state, v[good], state.values[idx[take]])
        state.codes[idx[take]], state.values[idx[take]], state.grads[idx[take]] = y[take], v[good], g[good]
    _count(state, "normal", B, acc.sum(), state.model_evals - evals0, (y[acc] - x[acc]).pow(2).sum(), hj)


def _newton(problem, state: CoverState, base: Tensor, Q: Tensor, target: Tensor, tol: Tensor,
            cfg) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Solve ``h(base + Q a) = target`` for ``a`` (``Q``: ``(B, D, m)``) by Newton from ``a = 0``.

    Returns ``(y, values, grads, converged)``; every iterate costs one model evaluation."""
    B, D = base.shape
    m = Q.shape[2]
    a = base.new_zeros(B, m)
    y = base.clone()
    values = base.new_full((B, m), float("nan"))
    grads = base.new_zeros(B, m, D)
    conv = torch.zeros(B, dtype=torch.bool, device=base.device)
    live = _in_domain(problem, y)
    for it in range(cfg.newton_iters + 1):
        rows = (live & ~conv).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        v, g = _evaluate_into(problem, state, y[rows])
        values[rows], grads[rows] = v, g
        res = v - target[rows]
        done_now = (res.abs() <= tol[rows]).all(1) & torch.isfinite(v).all(1)
        conv[rows[done_now]] = True
        if it == cfg.newton_iters:
            break
        go = rows[~done_now]
        if go.numel() == 0:
            break
        J = grads[go] @ Q[go]  # (b, m, m) = G_y Q_x
        try:
            da = torch.linalg.solve(J, res[~done_now].unsqueeze(-1)).squeeze(-1)
        except RuntimeError:
            da = torch.linalg.lstsq(J, res[~done_now].unsqueeze(-1)).solution.squeeze(-1)
        a[go] = a[go] - torch.nan_to_num(da, nan=0.0)
        y[go] = base[go] + (Q[go] @ a[go].unsqueeze(-1)).squeeze(-1)
        live[go] = _in_domain(problem, y[go]) & torch.isfinite(da).all(1)
    return y, values, grads, conv & live


def _manifold_move(state: CoverState, problem, idx: Tensor, gen, band, cfg) -> None:
    lo, hi, width = band
    evals0 = state.model_evals
    x, hx, Gx = state.codes[idx], state.values[idx], state.grads[idx]
    B, D = x.shape
    m = hx.shape[1]
    sig = state.tangent_scale[idx]
    Qx = _orthobasis(Gx)
    xi = _rand(gen, (B, D), x, normal=True)
    v = sig[:, None] * (xi - (Qx @ (Qx.transpose(1, 2) @ xi.unsqueeze(-1))).squeeze(-1))
    # the new level: a Gaussian step reflected into the band (a symmetric kernel on the band)
    sc = cfg.level_frac * state.spans.to(x.dtype).expand(B, m)
    target = _reflect_into(hx + sc * _rand(gen, (B, m), x, normal=True), lo, hi)
    u = _rand(gen, (B,), x)
    tol = (cfg.newton_tol * state.spans.to(x.dtype).expand(B, m)).clamp(min=1e-6 * (1 + hx.abs()))
    ok = _in_band(target, lo, hi)
    acc = torch.zeros(B, dtype=torch.bool, device=x.device)
    rows = ok.nonzero().squeeze(1)
    if rows.numel():
        y, vy, Gy, conv = _newton(problem, state, x[rows] + v[rows], Qx[rows], target[rows], tol[rows], cfg)
        good = conv & _in_band(vy, lo, hi)
        # Metropolis-Hastings ratio p(v') |det(G_x Q_y)| / (p(v) |det(G_y Q_x)|)
        Qy = _orthobasis(torch.where(good[:, None, None], Gy, Gx[rows]))
        diff = x[rows] - y
        vr = diff - (Qy @ (Qy.transpose(1, 2) @ diff.unsqueeze(-1))).squeeze(-1)
        s2 = sig[rows] ** 2
        logr = (v[rows].pow(2).sum(1) - vr.pow(2).sum(1)) / (2 * s2)
        dxy = torch.linalg.det(Gx[rows] @ Qy).abs()
        dyx = torch.linalg.det(Gy @ Qx[rows]).abs()
        logr = logr + torch.log(dxy.clamp(min=1e-300)) - torch.log(dyx.clamp(min=1e-300))
        pass_mh = good & (torch.log(u[rows].clamp(min=1e-300)) < logr)
        if cfg.reverse_check and bool(pass_mh.any()):
            rr = pass_mh.nonzero().squeeze(1)
            xr, _, _, conv_r = _newton(problem, state, y[rr] + vr[rr], Qy[rr], hx[rows[rr]], tol[rows[rr]], cfg)
            # another root of the reverse solve lies O(sigma) away; tolerance-level misses do not
            back = conv_r & ((xr - x[rows[rr]]).norm(dim=1) <= 0.05 * sig[rows[rr]])
            pass_mh[rr] = back
        take = pass_mh.nonzero().squeeze(1)
        acc[rows[take]] = True
        j = idx[rows[take]]
        jump = (y[take] - x[rows[take]]).pow(2).sum()
        hj = _hjump(state, vy[take], state.values[j])
        state.codes[j], state.values[j], state.grads[j] = y[take], vy[take], Gy[take]
    else:
        jump, hj = 0.0, 0.0
    _count(state, "manifold", B, acc.sum(), state.model_evals - evals0, jump, hj)
    # the tangent step adapts on the proposals whose new level was inside the band (the level
    # draw's own rejections do not depend on it)
    _adapt(state.tangent_scale, idx[ok], acc[ok], cfg.manifold_accept, state)


# -- init / step / done -----------------------------------------------------------------------
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
    values, grads = _evaluate_into(problem, state, x)
    state.values, state.grads = values, grads
    lo, hi, width = _band_tensors(problem.bands, values)
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
    state.alive = _in_band(values, lo, hi)
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


def _choose_schedule(state: CoverState, box: bool) -> tuple:
    """The schedule after the burn-in (``schedule=None``), from the burn-in's expected squared
    jumps per model evaluation.

    On a box: the pairs move (within level sets) plus whichever of the level and normal moves
    moves ``h`` across the band further per evaluation (normal: thin bands; level: wide bands,
    where the box cuts the normal line short). Off a box: the manifold move (plus level) only
    where its squared jump in codes beats the level move's (thin bands), else the level move."""
    def rate(book, kind):
        return book.get(kind, 0.0) / max(state.move_evals.get(kind, 0), 1)
    if box:
        return ("pairs", "normal") if rate(state.hjump2, "normal") > rate(state.hjump2, "level") else ("pairs", "level")
    return ("manifold", "level") if rate(state.jump2, "manifold") > rate(state.jump2, "level") else ("level",)


def step(state: CoverState, problem: FeasibleSet, cfg: CoverConfig) -> tuple[CoverState, dict]:
    """One round: every walker that the round's move concerns proposes once; after the burn-in,
    every ``thin`` rounds the walkers' current codes are certified and kept as samples."""
    gen = torch.Generator(device="cpu")
    gen.set_state(state.rng)
    kind = state.schedule[state.rounds % len(state.schedule)]
    band = _band_tensors(problem.bands, state.values)
    live = state.alive.nonzero().squeeze(1)
    n = state.samples.capacity
    before = state.samples.count
    if kind == "level":
        _level_move(state, problem, live, gen, band, cfg)
    elif kind == "manifold":
        _manifold_move(state, problem, live, gen, band, cfg)
    else:
        move = _pairs_move if kind == "pairs" else _normal_move
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
            state.schedule = _choose_schedule(state, problem.box is not None)
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
    live = state.alive.nonzero().squeeze(1)
    rows = live[: state.samples.capacity - state.samples.count]
    if rows.numel() == 0:
        return
    codes = state.codes[rows].reshape(rows.numel(), *problem.code_shape)
    _, ok = problem.check(codes)
    state.check_evals += rows.numel()
    state.rejected_by_check += int((~ok).sum())
    take = rows[ok.to(rows.device)]
    # which walker kept each row (the diagnostics' chains); a run resumed from shards written
    # before the column existed goes on without it
    walker = {"walker": take} if "walker" in state.samples.extra else {}
    state.samples.append(state.codes[take], state.values[take], **walker)


def _next_pass(state: CoverState, problem: FeasibleSet, cfg: CoverConfig) -> None:
    """``budget="auto"``: diagnose the full pass; stop (mixed, no diagnostics, or the next pass
    would pass ``max_budget``) or double the thinning and start a fresh pass.

    A fresh pass empties the buffer (the driver cuts the run directory's shards to it) while the
    chains go on, so the returned rows are one pass: every ``thin``-th state of each walker after
    a longer burn-in. Everything decided here derives from the state and the buffer's rows, so a
    resumed run decides the same."""
    count = state.samples.count
    if "walker" not in state.samples.extra:  # resumed from shards written before the column
        state.budget_stop = "no diagnostics"
        return
    codes = state.samples.codes[:count].reshape(count, *problem.code_shape)
    with torch.no_grad():  # the driver's finish measures the same rows the same way
        values, _ = problem.check(codes)
        embedding = diagnostics.embedding_of(problem, problem.decode(codes))
    state.diagnostic_evals += 2 * count
    diag = diagnostics.diagnose(state.samples.extra["walker"][:count], values, codes, embedding,
                                names=problem.bands.names)
    spent = state.model_evals + state.seed_evals
    cost = state.model_evals - state.pass_evals0
    state.budget_history.append({"thin": state.thin, "evals": cost, "mixed": diag["mixed"],
                                 "rhat_max": diag.get("rhat_max"), "worst": diag.get("worst", "")})
    if diag["mixed"]:
        state.budget_stop = "mixed"
    elif diag["mixed"] is None:
        state.budget_stop = "no diagnostics"
        log.warning("budget='auto' stopped after pass %d: the diagnostics were skipped (%s)",
                    state.budget_rounds, diag.get("skipped"))
    elif spent + 2 * cost > cfg.max_budget * count:
        state.budget_stop = "cap"
        log.warning("budget='auto' stopped at the cap max_budget=%g after %d pass(es) (%.1f evaluations "
                    "per sample, thin %d) and the samples are not mixed: %s; raise max_budget or see "
                    "docs/troubleshooting.md", cfg.max_budget, state.budget_rounds, spent / max(count, 1),
                    state.thin, diag.get("worst"))
    else:
        state.thin *= 2
        state.samples.count = 0
        state.next_emit = state.rounds + state.thin
        state.pass_evals0 = state.model_evals
        state.budget_rounds += 1


def done(state: CoverState, max_rounds: int) -> bool:
    """The walk ends with ``n`` samples, after ``max_rounds`` rounds, or with no walker left."""
    return state.samples.full or state.rounds >= max_rounds or not bool(state.alive.any())


# -- the sampler ------------------------------------------------------------------------------
class Cover(Sampler):
    """``method="cover"`` (the default): the shared seed phase for ``K`` feasible seeds, then the
    covering walk; ``options`` are ``CoverConfig`` fields."""

    name = "cover"
    Config = CoverConfig
    state_class = CoverState
    needs_seeds = True
    mcmc = True

    def bind(self, problem, run) -> None:
        super().bind(problem, run)
        self.max_rounds = None

    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> CoverState:
        self.bind(problem, run)
        state = init(problem, seeds.codes, run.n, self.config, key, seeds.model_evals)
        if not bool(state.alive.any()):
            raise RuntimeError("no seed was inside the band when measured with gradients")
        return state

    def _budget(self, state: CoverState) -> int:
        cfg = self.config
        if self.max_rounds is None:
            budget = cfg.max_budget if cfg.budget == "auto" else cfg.budget
            self.max_rounds = cfg.max_rounds or (state.burn + 4 * max(cfg.thin or 0, int(budget) + 2) *
                                                 math.ceil(self.run.n / max(int(state.alive.sum()), 1)) + 100)
        return self.max_rounds

    def step(self, state: CoverState) -> tuple[CoverState, dict]:
        return step(state, self.problem, self.config)

    def done(self, state: CoverState) -> bool:
        return done(state, self._budget(state))

    def finalize(self, state: CoverState) -> tuple[Tensor, dict]:
        proposed = sum(state.proposed.values())
        accepted_moves = sum(state.accepted_moves.values())
        count = state.samples.count
        stats = dict(
            walk_steps=state.rounds, walk_evals=state.model_evals, model_evals=state.model_evals,
            vjp_evals=state.vjp_evals, check_evals=state.check_evals,
            rejected_by_check=state.rejected_by_check, burn=state.burn, thin=state.thin,
            schedule=list(state.schedule), acceptance=accepted_moves / max(proposed, 1),
            **{f"acceptance_{k}": state.accepted_moves[k] / max(v, 1) for k, v in state.proposed.items()},
            evals_per_sample=(state.seed_evals + state.model_evals) / max(count, 1),
            nan_walkers=int((~state.alive).sum()))
        if state.auto_budget:
            stats.update(budget_rounds=state.budget_rounds, budget_stop=state.budget_stop or "not finished",
                         budget_history=list(state.budget_history),
                         auto_diagnostic_evals=state.diagnostic_evals)
        if not state.samples.full:
            stats["why"] = (f"the round budget ({self._budget(state)}) ran out or every walker stopped. "
                            "Raise the options max_rounds or budget")
        codes = state.samples.codes[:count].reshape(count, *self.problem.code_shape)
        return codes, stats


__all__ = ["CoverConfig", "CoverState", "Cover", "init", "step", "done", "evaluate", "pairs_proposal"]
