"""The SMC kernel's moves and their planning: one round of moves of every particle (reflect or
pCN, and every other round the pairs move), invariant for the prior restricted to the current
level; the anchors and jumps that measure decorrelation; the rounds each period takes."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...evaluate import in_domain
from ..proposals import fold, pairs_proposal, pcn, probit, unprobit
from .config import SMCState
from .env import Env, coords, evaluate, score, values_and_grads


def anchor(env: Env, state: SMCState, spread: bool) -> None:
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
        u = coords(env, state.codes)
        sd = u.std(0) if u.shape[0] > 1 else torch.ones_like(u[0])
        width = (env.problem.box[1] - env.problem.box[0]) if env.move == "reflect" else 1.0
        state.spread = torch.nan_to_num(sd, nan=0.0).clamp(min=1e-6 * width)


def measure(env: Env, state: SMCState) -> None:
    """At the end of a period (a level's rounds, or the rounds between two emissions): the mean
    squared jump per round since the anchor, per coordinate in units of the spread."""
    if state.origin is None or state.period_rounds == 0:
        return
    state.jump_rate = jump(env, state) / state.period_rounds


def jump(env: Env, state: SMCState) -> float:
    """The mean squared jump since the anchor per coordinate, in units of the spread; with the
    pairs move (which keeps affine constraints constant) the smaller of that and the same for
    the constraint values (constraints whose values do not spread at all are left out)."""
    u, u0 = coords(env, state.codes), coords(env, state.origin)
    jump = float((((u - u0) / state.spread) ** 2).mean())
    if state.grads is not None and state.vspread is not None and state.vorigin is not None:
        v = torch.nan_to_num(state.values, nan=0.0, posinf=0.0, neginf=0.0)
        scale = state.vorigin.abs().amax(0).clamp(min=1e-30)
        live = state.vspread > 1e-9 * scale
        if bool(live.any()):
            vj = float((((v - state.vorigin)[:, live] / state.vspread[live]) ** 2).mean())
            jump = min(jump, vj)
    return jump


def mixed(env: Env, state: SMCState) -> bool:
    """In the band: the mean squared jump since the anchor, per coordinate in units of the
    spread, has reached ``jump`` (2 for independent draws) and at least ``1 - 1/e`` of the
    particles have left their anchor (the copies of one ancestor have split). A population
    average over ``N`` particles: the rule depends on any one particle only at order ``1/N``,
    and ``log_prob`` is already fixed when the band's moves start."""
    moved = float((state.codes != state.origin).any(1).float().mean())
    return jump(env, state) >= target(env, state) and moved >= 1 - math.exp(-1)


def most(env: Env, state: SMCState) -> int:
    """The most rounds of a period: ``max_moves``, doubled with each further pass of
    ``budget="auto"`` (as its target tightens, a pass whose emissions stopped at the cap
    would otherwise repeat the same correlation)."""
    return env.cfg.max_moves * 2 ** (state.budget_rounds - 1)


def target(env: Env, state: SMCState) -> float:
    """The decorrelation target of the current period in the band: ``jump`` until the first
    emission (copies of one parent each move that far from their common origin, so they end
    about as far apart as independent draws), then ``thin_jump`` (the particle's own last
    emitted position is the other end: ``2`` would be independence)."""
    again = state.samples.count > 0 or state.budget_rounds > 1
    if not again:
        return env.cfg.jump
    # budget="auto": each further pass halves what thin_jump leaves of the correlation with
    # the last emitted position (2 - target is proportional to it), as cover doubles its thin
    return 2.0 - (2.0 - env.cfg.thin_jump) * 0.5 ** (state.budget_rounds - 1)


def plan(env: Env, state: SMCState) -> int:
    """The rounds of the period that starts now, fixed before any of its moves from what the
    previous periods measured (so the number of rounds does not depend on where this period's
    moves lead, and every round applies the same invariant kernel: a stopping rule that looked
    at the current moves would bias the law). Enough rounds that the mean squared jump reaches
    the target (``jump`` in the band, ``level_jump`` above it; 2 for independent draws) at the
    last measured rate, and that a particle is left unmoved with probability at most ``1%``
    above the band (``5%`` between emissions in the band) at the last acceptance (Drovandi & Pettitt, Biometrics 67,
    2011: ``R = log c / log(1 - acceptance)``); within ``[moves, max_moves]`` (``thin`` for
    emissions). The first level, with nothing measured, takes ``max(moves, 8)``."""
    cfg = env.cfg
    least = cfg.thin if state.inside and state.samples.count > 0 else cfg.moves
    if not (math.isfinite(state.jump_rate) and state.jump_rate > 0.0) or state.period_proposed == 0:
        rounds = max(least, 8)
    else:
        goal, c = (target(env, state), 0.05) if state.inside else (cfg.level_jump, 0.01)
        rounds = math.ceil(goal / state.jump_rate)
        acc = state.period_accepted / state.period_proposed
        if acc <= 0.0:
            rounds = cfg.max_moves
        elif acc < 1.0:
            rounds = max(rounds, math.ceil(math.log(c) / math.log1p(-acc)))
    state.period_rounds = state.period_proposed = state.period_accepted = 0
    state.kind_jump2, state.kind_evals = {}, {}
    return int(min(max(rounds, least), most(env, state)))


def cycle(state: SMCState) -> list:
    """The move kinds of the Galilean cycle, one per round. In the band: along the level set
    (Galilean; pairs on a box, which also moves every coordinate by O(1) in high dimension), then
    across it (normal), then along again, or the cycle ``band_kinds`` chosen at the first
    emission. Above the band the score itself must mix (the next level is a quantile of it; a
    population whose scores stay near the survivors' places the levels too high and
    overestimates log p): two of every three rounds change it."""
    if state.inside:
        if state.band_kinds:
            return state.band_kinds
        return ["galilean", "pairs", "normal", "pairs"] if state.pairs else ["galilean", "normal"]
    return ["normal", "galilean", "normal", "pairs"] if state.pairs else ["normal", "galilean", "normal"]


def band_cycle(jumps: dict, ratio: float = 2.5) -> list:
    """The band's cycle from the expected squared jump per evaluation of each move kind over the
    band's first period (``jumps``; Pasarica & Gelman, Statistica Sinica 20, 2010, choose a
    kernel by it; Fearnhead & Taylor, Bayesian Analysis 8, 2013, from an SMC population): where
    one of the two moves along the level set jumps ``ratio`` times farther per evaluation than
    the other, the cycle leaves the other out. Only the Galilean move is ever left alone: on a
    curved set (a shell: 0.19 against 0.04 per evaluation) the pairs move's block directions
    leave the level set and are refused; on a flat one (a slab: pairs 1.4, Galilean 2e-4) the
    pairs move travels along the level set exactly, but the Galilean move's bounces decorrelate
    the value inside a thin band, and ``["pairs", "normal"]`` measured mixed, on one seed (seed 0,
    evaluations per sample against the default cycle: dearer on the near-equality d = 784 slab,
    36.8 against 33.6, and heavy tails, 39.0 against 33.9; cheaper on the thin d = 64 slab, 25.7
    against 35.6, and the thin d = 784 one, 36.7 against 41.3): not enough to change the
    default, which is kept (empty)."""
    gal, pairs = jumps.get("galilean"), jumps.get("pairs")
    if gal is None or pairs is None:
        return []
    if gal >= ratio * pairs:
        return ["galilean", "normal"]
    return []


def move(env: Env, state: SMCState, gen: torch.Generator) -> float:
    """One round of moves of every particle, invariant for the prior restricted to
    ``{score <= level}``; returns the acceptance rate. With the pairs move on, every other
    round is a pairs round."""
    if state.galilean:
        kinds = cycle(state)
        kind = kinds[state.rounds % len(kinds)]
        before, evals0 = coords(env, state.codes).clone(), state.model_evals
        rate = {"pairs": pairs_round, "normal": normal_round, "galilean": galilean_round}[kind](env, state, gen)
        jumped = float((((coords(env, state.codes) - before) / state.spread) ** 2).mean(1).sum())
        state.kind_jump2[kind] = state.kind_jump2.get(kind, 0.0) + jumped
        state.kind_evals[kind] = state.kind_evals.get(kind, 0) + state.model_evals - evals0
        return rate
    if state.grads is not None and state.rounds % 2 == 1:
        return pairs_round(env, state, gen)
    x = state.codes
    N = x.shape[0]
    xi = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    box = env.problem.box
    if env.move == "reflect":
        y = fold(x + state.step * state.spread * xi, *box)
        ok = torch.ones(N, dtype=torch.bool, device=x.device)
    else:
        b = min(state.step, 1.0)
        if box is not None:
            y = unprobit(pcn(probit(x, *box), xi, b), *box)
            ok = torch.ones(N, dtype=torch.bool, device=x.device)
        else:
            y = pcn(x, xi, b)
            ok = in_domain(env.problem, y)
    rows = ok.nonzero().squeeze(1)
    good = accept(env, state, rows, y[rows])
    rate = float(good.sum()) / N
    count(state, N, int(good.sum()))
    if not state.inside:  # adapt only while the levels tighten: the output kernel is fixed
        state.step = min(state.step * math.exp(rate - env.cfg.accept), 1.0)
    return rate


def accept(env: Env, state: SMCState, rows: Tensor, y: Tensor) -> Tensor:
    """Evaluate the proposals ``y`` of the particles ``rows`` and move those inside the level
    (``score < level``; ``<= 0`` in the band); returns which were accepted."""
    v, g = evaluate(env, state, y)
    sc = score(env, v, state.scale)
    good = within(state, sc)
    _take(state, rows[good], y[good], v[good], sc[good], None if g is None else g[good])
    return good


def within(state: SMCState, sc: Tensor) -> Tensor:
    """Which scores are inside the current level (``< level``; ``<= 0`` in the band)."""
    return sc < state.level if state.strict else sc <= state.level


def count(state: SMCState, proposed: int, accepted: int) -> None:
    state.proposed += proposed
    state.accepted += accepted
    state.period_rounds += 1
    state.period_proposed += proposed
    state.period_accepted += accepted


def pairs_round(env: Env, state: SMCState, gen: torch.Generator) -> float:
    """The covering walk's pairs move for every particle, red-black: the population is split
    in two random halves (a draw independent of the particles' states), and each half moves
    along block directions from the gradients of random partners in the other half
    (``proposals.pairs_proposal``), accepted iff inside the level. Given the other half, the
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
        y = pairs_proposal(state.codes[movers], state.grads[partner], env.problem.box, window,
                           env.cfg.pair_rounds, None, gen)
        accepted += int(accept(env, state, movers, y).sum())
    rate = accepted / N
    count(state, N, accepted)
    if not state.inside:
        state.pair_step = min(state.pair_step * math.exp(rate - env.cfg.accept), 1.0)
    return rate


def _flow(env: Env, x: Tensor, v: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """The prior's free motion for one step: on a box, the straight line ``x + v`` folded back
    at the walls, the velocity's sign flipped in every coordinate that reflected an odd number
    of times (the billiard in the box); under ``N(0, I)``, the rotation by ``theta`` in each
    ``(x_i, v_i)`` plane (the exact Hamiltonian flow of ``|x|^2 / 2``). Both preserve the
    prior times the velocity law and are reversed by flipping the velocity."""
    box = env.problem.box
    if box is None:
        c, s = torch.cos(theta), torch.sin(theta)
        return c * x + s * v, c * v - s * x
    lo, hi = box
    w = hi - lo
    u = torch.remainder(x + v - lo, 2 * w)
    back = u > w
    return (lo + torch.where(back, 2 * w - u, u)).clamp(lo, hi), torch.where(back, -v, v)


def _normal(env: Env, state: SMCState, values: Tensor, grads: Tensor, metric: Tensor) -> Tensor:
    """The unit normal (in the velocity's metric) of the level set at points outside the level:
    the gradient of the constraint with the largest scaled violation there (a function of the
    point alone), zero where that gradient is zero or not finite."""
    bands = env.problem.bands
    excess = (bands.violation(values) - bands.tol).clamp(min=0) / state.scale
    j = torch.nan_to_num(excess, nan=math.inf).argmax(1)
    g = grads[torch.arange(grads.shape[0], device=grads.device), j] * metric
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    return g / g.norm(dim=1, keepdim=True).clamp(min=1e-300)


def galilean_round(env: Env, state: SMCState, gen: torch.Generator) -> float:
    """Galilean Monte Carlo (Skilling, AIP Conf. Proc. 1443, 2012; the reflective slice move of
    Betancourt, AIP Conf. Proc. 1305, 2011, and dynesty's ``rslice``/``hslice``): each particle
    draws a velocity ``v`` (``step * spread * xi`` on a box, ``xi`` under ``N(0, I)`` with the
    rotation angle ``step``), moves with the prior's free motion to ``x1``; if ``x1`` is inside
    the level the move ends there; else ``v`` is reflected off the level set at ``x1``
    (``v - 2 (v.n) n``, ``n`` the unit normal of the most violated constraint at ``x1``, in the
    velocity's metric) and the particle moves on to ``x2``, kept if inside, else it stays at
    ``x``. The map ``(x, v) -> (x2, -v2)`` is an involution that preserves volume and the
    velocity law, and it passes through the same ``x1`` both ways, so accepting iff the end is
    inside leaves the prior restricted to the level invariant. Costs one evaluation with
    gradients per particle and one more for each reflected one."""
    x = state.codes
    N = x.shape[0]
    xi = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    gaussian = env.problem.box is None
    # each particle's step is the adapted one times a factor in [1/2, 3/2], drawn independently of
    # the particles (a mixture of invariant kernels), so that no fixed step makes the motion periodic
    # (under N(0, I) a quarter turn maps x to v and, on a flat level set, back)
    jitter = 0.5 + torch.rand((N, 1), generator=gen, dtype=x.dtype).to(x.device)
    theta = state.gal_step * jitter
    metric = torch.ones_like(x) if gaussian else theta * state.spread
    v = xi if gaussian else xi * metric
    x1, v1 = _flow(env, x, v, theta)
    ok1 = torch.ones(N, dtype=torch.bool, device=x.device) if not gaussian else in_domain(env.problem, x1)
    rows = ok1.nonzero().squeeze(1)
    val1, g1 = values_and_grads(env, state, x1[rows])
    sc1 = score(env, val1, state.scale)
    in1 = within(state, sc1)
    take = rows[in1]
    _take(state, take, x1[take], val1[in1], sc1[in1], g1[in1])
    out = ~in1 & torch.isfinite(sc1)
    bounce, vo, xo = rows[out], v1[rows[out]], x1[rows[out]]
    mo = metric[bounce]
    n = _normal(env, state, val1[out], g1[out], mo)
    w = vo / mo
    w = w - 2 * (w * n).sum(1, keepdim=True) * n
    x2, _ = _flow(env, xo, w * mo, theta[bounce])
    ok2 = torch.ones(x2.shape[0], dtype=torch.bool, device=x.device) if not gaussian else in_domain(env.problem, x2)
    x2, bounce = x2[ok2], bounce[ok2]
    if bounce.numel():
        good = accept(env, state, bounce, x2)
    else:
        good = torch.zeros(0, dtype=torch.bool, device=x.device)
    moved = int(take.numel()) + int(good.sum())
    rate = moved / N
    count(state, N, moved)
    if not state.inside:
        # adapted on the moves that needed no bounce (a bounce nearly always lands inside, so the
        # acceptance says nothing of the step): a step that crosses the level set about half the
        # time. Measured on a Gaussian slab in d = 20: with the acceptance (the step at its cap,
        # a rotation of pi/3) the value w.c mixed in 25 rounds and 3 seeds of 30 failed a KS test
        # at 0.01 against the exact law; with this rule (about 0.5 rad) none did.
        state.gal_step = min(state.gal_step * math.exp(int(take.numel()) / N - env.cfg.accept),
                             math.pi / 3 if gaussian else 1.0)
    return rate


def normal_round(env: Env, state: SMCState, gen: torch.Generator) -> float:
    """Moves across the level set: red-black halves as in ``pairs_round``; each mover steps along
    the unit gradient ``d`` of a random constraint at a random partner of the other half (drawn
    independently of the mover), by ``t ~ N(0, normal_step^2)`` on a box (refused outside it), or
    by the one-dimensional pCN ``x + ((sqrt(1 - b^2) - 1) (x.d) + b t) d`` of the coordinate
    ``x.d`` under ``N(0, I)``; accepted iff inside the level. Given the partner the proposal is
    symmetric (reversible for ``N(0, I)``), so the prior restricted to the level is invariant. The
    Galilean and pairs moves travel along the level set and keep a flat constraint's value; this
    move changes it (the value's law inside a thin band mixes at the band's width)."""
    x = state.codes
    N, D = x.shape
    m = state.grads.shape[1]
    order = torch.randperm(N, generator=gen).to(x.device)
    halves = (order[: N // 2], order[N // 2:])
    box = env.problem.box
    accepted = 0
    for movers, others in (halves, halves[::-1]):
        k = movers.numel()
        if k == 0 or others.numel() == 0:
            continue
        partner = others[torch.randint(others.numel(), (k,), generator=gen).to(x.device)]
        j = torch.randint(m, (k,), generator=gen).to(x.device)
        t = torch.randn((k, 1), generator=gen, dtype=x.dtype).to(x.device)
        d = torch.nan_to_num(state.grads[partner, j], nan=0.0, posinf=0.0, neginf=0.0)
        d = d / d.norm(dim=1, keepdim=True).clamp(min=1e-300)
        xm = state.codes[movers]
        if box is not None:
            y = xm + state.normal_step * t * d
            ok = ((y >= box[0]) & (y <= box[1])).all(1)
        else:
            b = min(state.normal_step, 1.0)
            along = (xm * d).sum(1, keepdim=True)
            y = xm + ((math.sqrt(1 - b * b) - 1) * along + b * t) * d
            ok = in_domain(env.problem, y)
        ok = ok & (d.abs().sum(1) > 0)
        rows = ok.nonzero().squeeze(1)
        if rows.numel():
            accepted += int(accept(env, state, movers[rows], y[rows]).sum())
    rate = accepted / N
    count(state, N, accepted)
    if not state.inside:
        cap = 1.0 if box is None else float(box[1] - box[0])
        state.normal_step = min(state.normal_step * math.exp(rate - env.cfg.accept), cap)
    return rate


def _take(state: SMCState, rows: Tensor, y: Tensor, v: Tensor, sc: Tensor, g: Optional[Tensor]) -> None:
    """Move the particles ``rows`` to ``y`` with their values, scores and (kept) gradients."""
    state.codes[rows], state.values[rows], state.score[rows] = y, v, sc
    if g is not None and state.grads is not None:
        state.grads[rows] = g


__all__ = ["band_cycle", "cycle", "galilean_round", "anchor", "measure", "jump", "mixed", "most", "target", "plan", "move", "accept", "within", "count", "normal_round",
           "pairs_round"]
