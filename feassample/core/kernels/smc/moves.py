"""The SMC kernel's moves and their planning: one round of moves of every particle (reflect or
pCN, and every other round the pairs move), invariant for the prior restricted to the current
level; the anchors and jumps that measure decorrelation; the rounds each period takes."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...evaluate import band_ends, in_domain
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
    the constraint values, in units of their spread (constraints whose values do not spread at
    all are left out). The unit is the values' spread at the last level's (or the band's first)
    anchor; on a flat set, where the line draw refreshes the values from their law each cycle,
    their variance at both ends instead (2 for independent draws): the spread frozen at the
    band's first anchor is that of a population the levels' few moves left off equilibrium, on a
    thin slab 5% wider than the band's law, so that independent values measured 1.8 against it
    and the band's rounds ran to the cap (51.4 evaluations per sample on one seed, 23.1 measured
    this way). Not on a curved set: there the population's current spread can be the narrower
    one, and the rows were emitted early (a 6-d shell: energy ratio 1.79 against 0.82)."""
    u, u0 = coords(env, state.codes), coords(env, state.origin)
    coord = float((((u - u0) / state.spread) ** 2).mean())
    if state.grads is not None and state.vspread is not None and state.vorigin is not None:
        v = torch.nan_to_num(state.values, nan=0.0, posinf=0.0, neginf=0.0)
        scale = state.vorigin.abs().amax(0).clamp(min=1e-30)
        live = state.vspread > 1e-9 * scale
        if bool(live.any()) and v.shape[0] > 1:
            if state.flat:  # after a line draw the values are at their law: their variance is the unit
                ref = 0.5 * (v[:, live].var(0) + state.vorigin[:, live].var(0))
            else:
                ref = state.vspread[live] ** 2
            value = float((((v - state.vorigin)[:, live] ** 2).mean(0) / ref.clamp(min=1e-300)).mean())
            return min(coord, value)
    return coord


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


def emitted(state: SMCState) -> bool:
    """Whether the population has been emitted before (in this pass, or in an earlier pass of
    ``budget="auto"``): the band's periods then run between emissions."""
    return state.samples.count > 0 or state.budget_rounds > 1


def target(env: Env, state: SMCState) -> float:
    """The decorrelation target of the current period in the band: ``jump`` until the first
    emission (copies of one parent each move that far from their common origin, so they end
    about as far apart as independent draws), then ``thin_jump`` (the particle's own last
    emitted position is the other end: ``2`` would be independence)."""
    if not emitted(state):
        return env.cfg.jump
    # budget="auto": each further pass halves what thin_jump leaves of the correlation with
    # the last emitted position (2 - target is proportional to it), as cover doubles its thin.
    # A flat set starts one halving ahead (1.9): there a cycle of the pairs move and the line
    # draw costs two evaluations and decorrelates most coordinates, and at 1.8 the first pass's
    # R-hat over the top principal components (the directions where a particle's rows are most
    # alike, lag-1 correlation 0.21-0.31 on the thin d = 784 slab) failed on most seeds, so that
    # a second pass followed: 10 seeds cost 25.2 evaluations per sample on average (worst 34.3)
    # against 30.2 (39.9); held out, a near-equality d = 784 band 26.4 (34.7) against 30.5
    # (40.9) and a thin d = 64 slab 20.2 (22.4) against 19.1 (25.6)
    halvings = state.budget_rounds - 1 + (1 if state.flat else 0)
    return 2.0 - (2.0 - env.cfg.thin_jump) * 0.5 ** halvings


def plan(env: Env, state: SMCState) -> int:
    """The rounds of the period that starts now, fixed before any of its moves from what the
    previous periods measured (so the number of rounds does not depend on where this period's
    moves lead, and every round applies the same invariant kernel: a stopping rule that looked
    at the current moves would bias the law). Enough rounds that the mean squared jump reaches
    the target (``jump`` in the band, ``level_jump`` above it; 2 for independent draws) at the
    last measured rate, and that a particle is left unmoved with probability at most ``1%``
    above the band (``5%`` between emissions in the band) at the last acceptance (Drovandi & Pettitt, Biometrics 67,
    2011: ``R = log c / log(1 - acceptance)``); within ``[moves, max_moves]`` (``thin`` for
    emissions, doubled with each further pass of ``budget="auto"``, like ``most``: a pass whose
    rows failed the diagnosis while the mean squared jump met its target would otherwise make
    the same rows again; with the levels at ``p0 = 0.2`` a held-out rare d = 16 slab ran 60
    passes of 4.3 evaluations per sample to the cap, the value's R-hat 1.26-1.46 every time, and
    4 passes with the doubling, 39.8 in all). The first level, with nothing measured, takes
    ``max(moves, 8)``."""
    cfg = env.cfg
    again = state.inside and emitted(state)
    least = cfg.thin * 2 ** (state.budget_rounds - 1) if again else cfg.moves
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
    across it, then along again, or the cycle ``band_kinds`` chosen at the first emission. Above
    the band the score itself must mix (the next level is a quantile of it; a population whose
    scores stay near the survivors' places the levels too high and overestimates log p): two of
    every three rounds change it. Across the level set: the random step along a partner's
    gradient (``normal``), or, where the level set is flat (``state.flat``: over the last
    level the Galilean move's squared jump per evaluation was negligible against the pairs
    move's, by the rule of ``band_cycle``), the line draw (``line``), each level's cycle then
    starting with the pairs move, then the line draw, then the Galilean move (``kind``). Where
    the Galilean move still moves (a curved set, heavy-tailed weights, an image network) the
    cycle is the one measured there before the line draw (on the shell of the coverage suite
    the line draw at the wide early levels, where the pairs move jumped 2.9 times farther, left
    6 of 20 seeds with an energy ratio above 1.3, against 3 of 20)."""
    across = "line" if state.flat else "normal"
    if state.inside:
        if state.band_kinds:
            return state.band_kinds
        return ["galilean", "pairs", across, "pairs"] if state.pairs else ["galilean", across]
    if not state.pairs:
        return ["normal", "galilean", "normal"]
    if state.flat:
        return ["pairs", "line", "galilean"]
    return ["normal", "galilean", "normal", "pairs"]


def kind(state: SMCState) -> str:
    """The move kind of this round. Cycles with the line draw start at each period's first round
    (so that a level of the fewest rounds, 3, runs each kind once and its measured jump is never
    that of the weaker move alone: on a thin slab a level of normal, Galilean and normal rounds
    measured 0.002 per round and the next level ran 30); the others run on by the round count,
    as they always have."""
    kinds = cycle(state)
    i = state.period_rounds if "line" in kinds else state.rounds
    return kinds[i % len(kinds)]


def band_cycle(jumps: dict, ratio: float = 2.5, negligible: float = 20.0) -> list:
    """The band's cycle from the expected squared jump per evaluation of each move kind over the
    band's first period (``jumps``; Pasarica & Gelman, Statistica Sinica 20, 2010, choose a
    kernel by it; Fearnhead & Taylor, Bayesian Analysis 8, 2013, from an SMC population).
    Where the Galilean move jumps ``ratio`` times farther per evaluation than the pairs move, the
    cycle leaves the pairs move out: on a curved set (a shell: 0.19 against 0.04 per evaluation)
    its block directions leave the level set and are refused. Where the pairs move jumps
    ``negligible`` times farther than the Galilean one (a flat thin band: a slab in d = 784,
    pairs 1.4, Galilean 1e-4), the cycle is ``["pairs", "line"]``: the Galilean bounces cost two
    evaluations for nothing there, and with the line draw across the band (exact on a slab) the
    thin d = 784 slab cost 26.9 evaluations per sample against 37.8 with the default cycle (mean
    of 10 seeds, measured while the line draw ran on every set). A Galilean move that still moves (heavy-tailed weights: 0.19 against 1.4) is
    kept, for the coordinates that the pairs move's blocks leave pinned (there leaving it out
    cost 38.3 against 31.4). Otherwise the default cycle (empty)."""
    gal, pairs = jumps.get("galilean"), jumps.get("pairs")
    if gal is None or pairs is None:
        return []
    if gal >= ratio * pairs:
        return ["galilean", "normal"]
    if pairs >= negligible * gal:
        return ["pairs", "line"]
    return []


def move(env: Env, state: SMCState, gen: torch.Generator) -> float:
    """One round of moves of every particle, invariant for the prior restricted to
    ``{score <= level}``; returns the acceptance rate. With the pairs move on, every other
    round is a pairs round."""
    if state.galilean:
        which = kind(state)
        before, evals0 = coords(env, state.codes).clone(), state.model_evals
        rounds = {"pairs": pairs_round, "normal": normal_round, "line": line_round, "galilean": galilean_round}
        rate = rounds[which](env, state, gen)
        jumped = float((((coords(env, state.codes) - before) / state.spread) ** 2).mean(1).sum())
        state.kind_jump2[which] = state.kind_jump2.get(which, 0.0) + jumped
        state.kind_evals[which] = state.kind_evals.get(which, 0) + state.model_evals - evals0
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


def _partner_lines(state: SMCState, gen: torch.Generator):
    """The moves across's red-black halves: the population split in two random halves (a draw
    independent of the particles' states); for each half in turn, ``(movers, d)``: the movers'
    rows and, per mover, the unit gradient of a random constraint at a random partner of the
    other half (zero where that gradient is zero or not finite). The second half's partners
    are read after the first half has moved (the caller moves them before the next item)."""
    x = state.codes
    N, m = x.shape[0], state.grads.shape[1]
    order = torch.randperm(N, generator=gen).to(x.device)
    halves = (order[: N // 2], order[N // 2:])
    for movers, others in (halves, halves[::-1]):
        k = movers.numel()
        if k == 0 or others.numel() == 0:
            continue
        partner = others[torch.randint(others.numel(), (k,), generator=gen).to(x.device)]
        j = torch.randint(m, (k,), generator=gen).to(x.device)
        d = torch.nan_to_num(state.grads[partner, j], nan=0.0, posinf=0.0, neginf=0.0)
        yield movers, d / d.norm(dim=1, keepdim=True).clamp(min=1e-300)


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
    N = x.shape[0]
    box = env.problem.box
    accepted = 0
    for movers, d in _partner_lines(state, gen):
        t = torch.randn((movers.numel(), 1), generator=gen, dtype=x.dtype).to(x.device)
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


def line_round(env: Env, state: SMCState, gen: torch.Generator) -> float:
    """Moves across the level set, a draw on a line from the prior restricted to the level's
    linearization there (an independence Metropolis-Hastings move on the line, after the
    "linearized" proposals of constrained samplers: for an affine constraint it is the exact
    Gibbs draw of the line's chord in the band, in one evaluation). Red-black halves as in
    ``pairs_round``; each mover ``x`` takes the line ``x + t d`` along the unit gradient ``d`` of a
    random constraint at a random partner of the other half (drawn independently of the mover).
    ``I(x)``: the ``t`` where every constraint's first-order expansion at ``x`` (its value and
    its gradient, ``_line_window``) stays inside the current level, within the box's chord and
    ``|t| <= line_step`` (the window adapts above the band and is frozen in it); ``t'`` is drawn
    from the prior on the line restricted to ``I(x)`` (uniform on a box; the truncated normal of
    ``N(0, I)``) and ``y = x + t' d`` is accepted iff it is inside the level, ``x`` lies in
    ``I(y)`` and a uniform draw is below ``Z(x) / Z(y)`` (``Z``: the prior mass of ``I``), the
    Metropolis-Hastings ratio of this proposal, so the prior restricted to the level is
    invariant for any constraint. The Galilean and pairs moves travel along the level set and
    keep a flat constraint's value; this move changes it (it mixes the value inside a thin
    band, where a fixed random step is mostly refused)."""
    x = state.codes
    N = x.shape[0]
    accepted, errors = 0, []
    for movers, d in _partner_lines(state, gen):
        u = torch.rand((movers.numel(), 2), generator=gen, dtype=torch.float64).to(x.device)
        xm = state.codes[movers]
        lo, hi = _line_window(env, state, xm, state.values[movers], state.grads[movers], d)
        t, zx = _line_draw(env, xm, d, lo, hi, u[:, 0])
        y = xm + t[:, None].to(x.dtype) * d
        ok = (d.abs().sum(1) > 0) & (hi > lo)
        if env.problem.box is not None:
            ok = ok & ((y >= env.problem.box[0]) & (y <= env.problem.box[1])).all(1)
        else:
            ok = ok & in_domain(env.problem, y)
        rows = ok.nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        v, g = evaluate(env, state, y[rows])
        sc = score(env, v, state.scale)
        good = within(state, sc) & torch.isfinite(v).all(1)
        errors.append(_expansion_error(env, state, state.values[movers[rows]], state.grads[movers[rows]],
                                       d[rows], t[rows], v))
        if bool(good.any()):
            # the reverse move: from y, the line's window must hold x (at -t) and the ratio of
            # the windows' prior masses decides
            lo_y, hi_y = _line_window(env, state, y[rows], v, g, d[rows])
            back = -t[rows]
            _, zy = _line_draw(env, y[rows], d[rows], lo_y, hi_y, None)
            ratio = zx[rows] / zy.clamp(min=1e-300)
            good = good & (lo_y <= back) & (back <= hi_y) & (u[rows, 1] < ratio)
        take = rows[good]
        _take(state, movers[take], y[take], v[good], sc[good], g[good])
        accepted += int(good.sum())
    rate = accepted / N
    count(state, N, accepted)
    if not state.inside and errors:
        # a trust region: the window grows while the first-order expansion predicts the values
        # at the proposals to within half the level's width (the median over the proposals),
        # and shrinks where it does not (a curved level set), at most by e^(1/2) per round
        errs = torch.cat(errors)
        err = float(errs.median()) if errs.numel() else 0.0
        grow = math.exp(max(-0.5, min(0.5, 0.5 - err)))
        state.line_step = min(state.line_step * grow, _normal_cap(env))
    return rate


def _expansion_error(env: Env, state: SMCState, v: Tensor, g: Tensor, d: Tensor, t: Tensor,
                     vy: Tensor) -> Tensor:
    """``(B,)``: how far the values ``vy`` at ``x + t d`` are from the first-order expansion
    ``v + t (g . d)`` at ``x``, the largest over the constraints in units of the current level's
    width (``0`` for a one-sided or unbounded level; ``inf`` for values that are not finite)."""
    elo, ehi, _ = band_ends(env.problem.bands, v.double())
    level = float(state.level)
    if not math.isfinite(level):
        return torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    width = (ehi - elo) + 2 * level * state.scale.double()
    a = (g.double() * d.double()[:, None, :]).sum(-1)
    err = (vy.double() - (v.double() + t[:, None] * a)).abs() / width.clamp(min=1e-300)
    err = torch.where(torch.isfinite(width).expand_as(err), err, torch.zeros_like(err))
    return torch.nan_to_num(err, nan=math.inf).amax(1)


def _normal_cap(env: Env) -> float:
    """The largest window of the normal move: the box's width, or 5 prior SDs under ``N(0, I)``."""
    box = env.problem.box
    return 5.0 if box is None else float(box[1] - box[0])


def _line_window(env: Env, state: SMCState, x: Tensor, v: Tensor, g: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """The window ``[lo, hi]`` (float64, ``(B,)``) of ``t`` on the lines ``x + t d``: where the
    first-order expansion ``v_j + t (g_j . d)`` of every constraint stays inside the current
    level (``lo_j - tol - L s_j <= . <= hi_j + tol + L s_j``), inside the box's chord, and
    ``|t| <= line_step``. A function of the point's own values and gradients, the direction
    and the level alone (so the reverse move's window is computed the same way at ``y``)."""
    w = float(state.line_step)
    dd = d.double()
    lo = torch.full((x.shape[0],), -w, dtype=torch.float64, device=x.device)
    hi = torch.full_like(lo, w)
    elo, ehi, _ = band_ends(env.problem.bands, v.double())
    level = float(state.level)
    if math.isfinite(level):
        s = state.scale.double()
        elo, ehi = elo - level * s, ehi + level * s
        a = torch.nan_to_num((g.double() * dd[:, None, :]).sum(-1), nan=0.0, posinf=0.0, neginf=0.0)
        vv = v.double()
        flat = a.abs() <= 1e-300
        sa = torch.where(flat, torch.ones_like(a), a)
        t1, t2 = (elo - vv) / sa, (ehi - vv) / sa
        tl = torch.where(flat, torch.full_like(a, -math.inf), torch.minimum(t1, t2))
        th = torch.where(flat, torch.full_like(a, math.inf), torch.maximum(t1, t2))
        tl = torch.nan_to_num(tl, nan=-math.inf)
        th = torch.nan_to_num(th, nan=math.inf)
        # a point inside the level is inside its own expansion's window (t = 0)
        lo = torch.maximum(lo, tl.amax(1).clamp(max=0.0))
        hi = torch.minimum(hi, th.amin(1).clamp(min=0.0))
    box = env.problem.box
    if box is not None:
        xd = x.double()
        safe = dd.abs() > 1e-300
        sd = torch.where(safe, dd, torch.ones_like(dd))
        c1, c2 = (box[0] - xd) / sd, (box[1] - xd) / sd
        cl = torch.where(safe, torch.minimum(c1, c2), torch.full_like(dd, -math.inf)).amax(1)
        ch = torch.where(safe, torch.maximum(c1, c2), torch.full_like(dd, math.inf)).amin(1)
        lo, hi = torch.maximum(lo, cl.clamp(max=0.0)), torch.minimum(hi, ch.clamp(min=0.0))
    return lo, hi


def _line_draw(env: Env, x: Tensor, d: Tensor, lo: Tensor, hi: Tensor,
               u: Optional[Tensor]) -> tuple[Optional[Tensor], Tensor]:
    """The prior on the lines ``x + t d`` restricted to ``[lo, hi]``: its mass ``Z`` (the length
    on a box, where the prior is uniform; under ``N(0, I)`` the normal law of ``t + x . d``) and,
    given uniforms ``u``, the draws ``t`` by inversion (float64)."""
    if env.problem.box is not None:
        z = (hi - lo).clamp(min=0.0)
        return (None if u is None else lo + u * z), z
    c = (x.double() * d.double()).sum(1)
    a, b = lo + c, hi + c
    # in the upper tail, work with the mirror image (1 - Phi(s) = Phi(-s)) so the mass keeps its digits
    flip = (a + b) > 0
    a2, b2 = torch.where(flip, -b, a), torch.where(flip, -a, b)
    pa, pb = torch.special.ndtr(a2), torch.special.ndtr(b2)
    z = (pb - pa).clamp(min=0.0)
    if u is None:
        return None, z
    s = torch.special.ndtri((pa + u * z).clamp(1e-300, 1 - 1e-16))
    s = torch.minimum(torch.maximum(s, a2), b2)
    s = torch.where(flip, -s, s)
    return s - c, z


def _take(state: SMCState, rows: Tensor, y: Tensor, v: Tensor, sc: Tensor, g: Optional[Tensor]) -> None:
    """Move the particles ``rows`` to ``y`` with their values, scores and (kept) gradients."""
    state.codes[rows], state.values[rows], state.score[rows] = y, v, sc
    if g is not None and state.grads is not None:
        state.grads[rows] = g


__all__ = ["band_cycle", "cycle", "kind", "line_round", "galilean_round", "anchor", "measure", "jump", "mixed", "most", "emitted", "target", "plan", "move", "accept", "within", "count", "normal_round",
           "pairs_round"]
