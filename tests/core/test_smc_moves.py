"""The SMC kernel's gradient moves (issue 19) leave the prior restricted to the band invariant:
start a population from EXACT draws of the restricted law (closed forms, not our sampler), apply
many rounds of one move, and the law must not change (KS against the exact law), while the move
must have moved the particles (so a move that does nothing cannot pass)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import feassample as fs
from feassample.core.kernels.smc import moves
from feassample.core.kernels.smc.config import SMCConfig, SMCState
from feassample.core.kernels.smc.env import Env, score, values, values_and_grads


def _band_state(problem, codes: torch.Tensor, move: str, gal_step: float, normal_step: float, seed: int):
    """A population of ``codes`` in the band, with the gradients the moves read."""
    env = Env(problem, SMCConfig(), 1, move, torch.float64, torch.device("cpu"))
    N = codes.shape[0]
    m = problem.bands.m
    gen = torch.Generator().manual_seed(seed)
    st = SMCState(codes=codes.clone(), values=codes.new_zeros(N, m), score=codes.new_zeros(N),
                  ancestor=torch.arange(N), scale=codes.new_ones(m), samples=None, rng=gen.get_state())
    st.values, st.grads = values_and_grads(env, st, st.codes)
    st.score = score(env, st.values, st.scale)
    assert bool((st.score <= 0).all())  # the exact draws are inside the band
    st.level, st.inside, st.strict = 0.0, True, False
    st.galilean, st.pairs = True, move == "reflect"
    st.gal_step, st.normal_step, st.line_step = gal_step, normal_step, normal_step
    moves.anchor(env, st, spread=True)  # the box's per-coordinate scale, as in a run
    return env, st, gen


def _run_rounds(env, st, gen, kind: str, rounds: int = 40) -> None:
    """``rounds`` rounds of the move ``kind``; each must move (acceptance over 5%)."""
    rates = [getattr(moves, f"{kind}_round")(env, st, gen) for _ in range(rounds)]
    assert min(rates) > 0.05  # the move does move


def _assert_law_kept(st, ref, stat, stat0, stat_p: float) -> None:
    """The moved population against exact draws ``ref``: the statistic's law (p-value
    ``stat_p``), the first coordinate's, and the statistic has moved (``stat0``: at the start)."""
    assert stat_p > 1e-3
    assert stats.ks_2samp(st.codes[:, 0].numpy(), ref[:, 0].numpy()).pvalue > 1e-3
    assert np.corrcoef(stat, stat0)[0, 1] < 0.8


@pytest.mark.parametrize("kind", ["galilean", "normal", "line"])
def test_the_gradient_moves_keep_a_slab_s_law_of_w_x_on_the_box(kind):
    # a logistic slab in [0, 1]^32: its exact sampler (the law of w.x is a closed form) gives
    # the start, and fresh exact draws the reference
    p = fs.LogisticHalfspace.random(32, 0.6, 0.8)
    g = torch.Generator().manual_seed(3)
    start = p.exact_sample(3000, generator=g).double().flatten(1)
    ref = p.exact_sample(3000, generator=g).double().flatten(1)
    # the line draw's widest window (the box): it is then the exact Gibbs draw of the chord in
    # the slab
    env, st, gen = _band_state(p, start, "reflect", gal_step=0.5, normal_step=1.0 if kind == "line" else 0.05, seed=1)
    _run_rounds(env, st, gen, kind)
    assert bool((st.codes >= 0).all() and (st.codes <= 1).all())
    h, h_ref, h0 = (values(env, st, c)[:, 0].numpy() for c in (st.codes, ref, start))
    assert bool((st.score <= 0).all())  # every particle still inside the band
    # the value w.x keeps its law and has moved across the band
    _assert_law_kept(st, ref, h, h0, stats.ks_2samp(h, h_ref).pvalue)
    if kind == "galilean":  # and the Galilean move along it, in every coordinate
        assert float((st.codes - start).abs().mean()) > 0.05


@pytest.mark.parametrize("kind", ["galilean", "normal", "line"])
def test_the_gradient_moves_keep_a_gaussian_shell_s_radius_law(kind):
    # codes ~ N(0, I) in 12 dims restricted to 3 <= |c| <= 3.6: the radius law is chi(12)
    # truncated to [3, 3.6], the direction uniform (exact draws by inversion)
    d, a, b = 12, 3.0, 3.6
    p = fs.from_functions(lambda c: c.norm(dim=1, keepdim=True), [a], [b], (d,))
    chi = stats.chi(d)
    lo, hi = chi.cdf(a), chi.cdf(b)
    g = torch.Generator().manual_seed(5)

    def exact(n):
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        u = torch.rand(n, generator=g, dtype=torch.float64).numpy() * (hi - lo) + lo
        return x / x.norm(dim=1, keepdim=True) * torch.from_numpy(chi.ppf(u))[:, None]

    start, ref = exact(3000), exact(3000)
    # the line draw's widest window (5 prior SDs): the linearized window then differs from the
    # curved band's chord, and only the Metropolis-Hastings ratio of the windows' masses keeps the
    # law (without it the mean radius fell from 3.301 to 3.245, KS p < 1e-60)
    env, st, gen = _band_state(p, start, "pcn", gal_step=0.5, normal_step=5.0 if kind == "line" else 0.3, seed=2)
    _run_rounds(env, st, gen, kind)
    r, r0 = st.codes.norm(dim=1).numpy(), start.norm(dim=1).numpy()
    exact_cdf = lambda t: (chi.cdf(t) - lo) / (hi - lo)  # noqa: E731
    _assert_law_kept(st, ref, r, r0, stats.kstest(r, exact_cdf).pvalue)


def test_the_line_draw_keeps_a_box_shell_s_radius_law():
    # the uniform law on the shell 0.35 <= |x - 1/2| <= 0.4 in [0, 1]^6 (exact draws by
    # rejection): a curved band on a box, where the line's window from the first-order expansion
    # is not the band's chord, and the window's length ratio must correct the proposal
    d = 6
    p = fs.from_functions(lambda x: (x - 0.5).norm(dim=1, keepdim=True), lo=[0.35], hi=[0.4],
                          code_shape=(d,), box=(0.0, 1.0))
    g = torch.Generator().manual_seed(11)

    def exact(n):
        x = torch.rand(200 * n, d, generator=g, dtype=torch.float64)
        r = (x - 0.5).norm(dim=1)
        x = x[(r >= 0.35) & (r <= 0.4)]
        assert x.shape[0] >= n
        return x[:n]

    start, ref = exact(3000), exact(3000)
    env, st, gen = _band_state(p, start, "reflect", gal_step=0.5, normal_step=1.0, seed=4)
    _run_rounds(env, st, gen, "line")
    r, r_ref, r0 = ((c - 0.5).norm(dim=1).numpy() for c in (st.codes, ref, start))
    assert bool((st.score <= 0).all())
    _assert_law_kept(st, ref, r, r0, stats.ks_2samp(r, r_ref).pvalue)


def test_each_particle_of_a_line_round_moves_along_a_partner_s_gradient_from_its_own_place():
    # found in review: a round that wrote each accepted proposal to the wrong row kept the law
    # well enough for the KS tests above; here every moved particle's displacement must be
    # parallel to the gradient (the radial direction) of some particle before or after the round
    d = 6
    p = fs.from_functions(lambda x: (x - 0.5).norm(dim=1, keepdim=True), lo=[0.3], hi=[0.45],
                          code_shape=(d,), box=(0.0, 1.0))
    g = torch.Generator().manual_seed(2)
    x = torch.rand(20000, d, generator=g, dtype=torch.float64)
    r = (x - 0.5).norm(dim=1)
    start = x[(r >= 0.3) & (r <= 0.45)][:400]
    env, st, gen = _band_state(p, start, "reflect", gal_step=0.5, normal_step=1.0, seed=0)
    assert moves.line_round(env, st, gen) > 0.2
    moved = (st.codes != start).any(1)
    step = st.codes[moved] - start[moved]
    step = step / step.norm(dim=1, keepdim=True)
    radial = torch.cat([start, st.codes]) - 0.5
    radial = radial / radial.norm(dim=1, keepdim=True)
    best = (step @ radial.T).abs().amax(1)
    assert bool((best > 1 - 1e-9).all()), float(best.min())


def test_a_default_run_on_a_rare_slab_stays_under_its_cost_ceiling():
    # a coarse ceiling, so that a regression of the default fails CI (the benchmarks hold the
    # targets): 5 seeds of a thin slab in d = 64 (log P about -7), n = 200. The median must stay
    # at most 60 evaluations per sample and every seed at most 130 (a second budget pass, which
    # the diagnostics ask for on some seeds, doubles a seed's cost: seed 1 here 95.2, seed 11 of
    # the previous kernel 144.4). Measured when the level's jump was fixed: 40.6-57.2 on four
    # seeds, 95.2 on seed 1, median 56.8; before the Galilean move 71.7-74.2 on seeds 0-2
    p = fs.LogisticHalfspace.random(64, 0.3, 0.301)
    costs = []
    for seed in range(5):
        s = fs.sample(p, n=200, seed=seed, progress=False)
        assert s.status == "success" and bool(s.feasible.all()) and s.stats["smc_mode"] == "levels"
        assert s.stats["galilean"] is True and s.stats["mixed"] is True
        assert math.isfinite(s.log_prob)
        costs.append(s.n_evals / len(s))
    assert max(costs) <= 130 and sorted(costs)[2] <= 60, costs


def test_a_small_run_costs_at_most_twice_a_large_one_per_sample():
    # the population is decoupled from n: n = 60 pays for 32 particles (not 64) through the
    # levels and for 128 first draws (not 256), so its cost per sample stays within twice that
    # of n = 500 (issue 19). Measured on this slab, seeds 0-2: n = 60 35.4, 38.7, 39.1 against
    # n = 500 21.4, 21.1, 31.9 (ratio of the means 1.52); with the previous floors n = 60 cost
    # 64.5, 69.3 and 66.8 (2.70). Both at p0 = 0.5: the default keeps a fifth per level where the
    # moves mix fast and the population has 125 particles (n >= 500), which took n = 500 here to
    # 18.2 (a ratio of 2.08; n = 60 unchanged, docs/smc.md), and this test pins the population floors
    p = fs.LogisticHalfspace.random(64, 0.3, 0.301)
    cost = {}
    for n in (60, 500):
        runs = [fs.sample(p, n=n, seed=seed, progress=False, options={"p0": 0.5}) for seed in range(3)]
        assert all(r.stats["smc_mode"] == "levels" and bool(r.feasible.all()) for r in runs)
        cost[n] = sum(r.n_evals / len(r) for r in runs) / len(runs)
    assert runs[0].stats["particles"] == 125 and cost[60] <= 2 * cost[500], cost


def test_the_band_cycle_leaves_out_the_move_along_that_jumps_much_less_per_evaluation():
    from feassample.core.kernels.smc.moves import band_cycle
    assert band_cycle({"galilean": 0.19, "pairs": 0.04, "normal": 0.03}) == ["galilean", "normal"]
    assert band_cycle({"galilean": 2e-4, "pairs": 1.4, "line": 0.0}) == ["pairs", "line"]  # a slab
    assert band_cycle({"galilean": 0.19, "pairs": 1.4, "normal": 0.0}) == []     # heavy tails: both
    assert band_cycle({"galilean": 0.59, "pairs": 0.30, "normal": 0.04}) == []    # within 2.5x: both
    assert band_cycle({"galilean": 0.3, "normal": 0.0}) == []                     # N(0, I): no pairs move


def test_on_a_flat_set_each_level_of_three_rounds_runs_every_kind():
    # found here: the cycle ran by the global round count, so a level of 3 rounds could be
    # normal, Galilean, normal with no pairs round, measure 0.002 per round, and make the next
    # level take 30 rounds
    from feassample.core.kernels.smc.moves import kind
    st = SMCState(codes=torch.zeros(1, 1), values=torch.zeros(1, 1), score=torch.zeros(1),
                  ancestor=torch.zeros(1), scale=torch.ones(1), samples=None, rng=None)
    st.galilean, st.pairs, st.flat = True, True, True
    st.level_jumps = {"galilean": 0.001, "pairs": 1.4}
    for rounds in range(8):  # whatever the global count, each level starts its own cycle
        st.rounds = rounds
        seen = []
        for i in range(3):
            st.period_rounds = i
            seen.append(kind(st))
        assert seen == ["pairs", "line", "galilean"]
    st.flat = False  # a curved set: the random step across, by the round count as before
    st.period_rounds = 0
    assert [kind(_at(st, i)) for i in range(4)] == ["normal", "galilean", "normal", "pairs"]


def _at(st, i):
    st.rounds = i
    return st


def test_the_levels_keep_a_fifth_after_a_level_whose_moves_mixed_fast_and_half_otherwise():
    from feassample.core.kernels.smc.levels import keep_fraction
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    st = SMCState(codes=torch.zeros(1, 8), values=torch.zeros(1, 1), score=torch.zeros(1),
                  ancestor=torch.zeros(1), scale=torch.ones(1), samples=None, rng=None)
    env = Env(p, SMCConfig(), 1, "reflect", torch.float64, torch.device("cpu"))
    assert keep_fraction(env, st) == 0.5                     # the first level: nothing measured
    st.level_jumps = {"galilean": 0.001, "pairs": 1.4, "line": 0.0}
    assert keep_fraction(env, st) == 0.5                     # one particle: a fifth is no survivor
    st.codes = torch.zeros(125, 8)
    assert keep_fraction(env, st) == 0.2                     # a slab's pairs move: 1.4 per evaluation
    st.codes = torch.zeros(124, 8)
    assert keep_fraction(env, st) == 0.5                     # fewer than 25 survivors
    st.codes = torch.zeros(125, 8)
    st.level_jumps = {"galilean": 0.3, "pairs": 0.09, "normal": 0.05}
    assert keep_fraction(env, st) == 0.5                     # the shell: nothing moves that fast
    st.level_jumps = {"galilean": 0.001, "pairs": 1.4}
    fixed = Env(p, SMCConfig(p0=0.5), 1, "reflect", torch.float64, torch.device("cpu"))
    assert keep_fraction(fixed, st) == 0.5                   # an explicit p0 holds at every level
    chosen = Env(p, SMCConfig(particles=125), 1, "reflect", torch.float64, torch.device("cpu"))
    assert keep_fraction(chosen, st) == 0.5                  # an explicit population keeps half


def test_a_further_budget_pass_doubles_the_fewest_rounds_between_emissions():
    # found on a held-out rare d = 16 slab: a pass whose rows failed the diagnosis while the mean
    # squared jump met its target planned the same rounds again, so seed 9 made 60 passes of
    # 4.3 evaluations per sample to the cap (the value's R-hat 1.26-1.46 each time)
    from types import SimpleNamespace
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    env = Env(p, SMCConfig(), 1, "reflect", torch.float64, torch.device("cpu"))
    st = SMCState(codes=torch.zeros(1, 8), values=torch.zeros(1, 1), score=torch.zeros(1),
                  ancestor=torch.zeros(1), scale=torch.ones(1), samples=SimpleNamespace(count=100),
                  rng=None)
    st.inside, st.jump_rate = True, 100.0     # the target is met in one round ...
    planned = []
    for passes in (1, 2, 3, 4):
        st.budget_rounds = passes
        st.period_proposed = st.period_accepted = 10   # ... and every proposal was accepted
        planned.append(moves.plan(env, st))
    assert planned == [2, 4, 8, 16], planned
    st.samples.count, st.budget_rounds = 0, 3          # a further pass's first emission too
    st.period_proposed = st.period_accepted = 10
    assert moves.plan(env, st) == 8


def test_on_a_curved_set_the_band_runs_galilean_and_normal_moves_and_stays_under_a_cost_ceiling():
    # the shell of the coverage suite (0.9% of [0, 1]^10), n = 500: each move kind's squared jump
    # per evaluation over the band's first period picks the cycle. Measured when the rule landed:
    # seeds 0-2 cost 42.5, 35.8 and 44.7 evaluations per sample (110.7, 53.5 and 110.2 with the
    # pairs move kept: 2 budget passes); the slab keeps the default cycle
    shell = fs.from_functions(lambda x: (x - 0.5).norm(dim=1, keepdim=True), lo=[0.55], hi=[0.6],
                              code_shape=(10,), box=(0.0, 1.0))
    for seed in range(3):
        s = fs.sample(shell, n=500, seed=seed, progress=False)
        assert s.status == "success" and bool(s.feasible.all()) and s.stats["mixed"] is True
        jumps = s.stats["band_jumps"]
        assert jumps["galilean"] >= 2.5 * jumps["pairs"] > 0, jumps
        assert s.stats["band_cycle"] == ["galilean", "normal"]
        assert s.n_evals / len(s) <= 80, (seed, s.n_evals / len(s))
        # the Galilean move mixes too slowly for five copies per survivor: every level keeps half
        assert all(0.45 <= f <= 0.5 for f in s.stats["smc_fractions"][:-1]), s.stats["smc_fractions"]
    slab = fs.sample(fs.LogisticHalfspace.random(64, 0.3, 0.301), n=500, seed=0, progress=False)
    assert slab.stats["band_cycle"] == ["pairs", "line"] and slab.stats["flat"] is True
    assert slab.stats["band_jumps"]["pairs"] > 100 * slab.stats["band_jumps"]["galilean"]
    # the pairs move mixes fast: after the first level (half) the next keeps a fifth, and each
    # later one a fifth or a half as its predecessor's moves measured (here 0.5, 0.2, 0.5, 0.2)
    fractions = slab.stats["smc_fractions"]
    assert 0.45 <= fractions[0] <= 0.5 and 0.15 <= fractions[1] <= 0.2, fractions
    assert all(0.15 <= f <= 0.2 or 0.45 <= f <= 0.5 for f in fractions[2:-1]), fractions


def test_a_levels_jump_is_measured_particle_by_particle_before_the_resampling():
    # found here: the level's jump was measured after the resampling had permuted the particles,
    # so it compared one particle with another one's anchor and read the population's width even
    # when no particle had moved. A population whose rounds moved nothing must measure 0.
    from feassample.core.kernels.smc.levels import new_level
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    env = Env(p, SMCConfig(), 1, "reflect", torch.float64, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    codes = torch.rand(200, 8, generator=gen, dtype=torch.float64)
    st = SMCState(codes=codes, values=codes.new_zeros(200, 1), score=codes.new_zeros(200),
                  ancestor=torch.arange(200), scale=codes.new_ones(1), samples=None, rng=gen.get_state(),
                  particles=200)
    st.values = values(env, st, st.codes)
    st.score = score(env, st.values, st.scale)
    assert float((st.score > 0).float().mean()) > 0.5   # most of the prior is outside: a level is needed
    moves.anchor(env, st, spread=True)
    st.period_rounds = 5                                # five rounds that moved no particle
    new_level(env, st, gen)
    assert st.jump_rate == 0.0  # measured after the resampling, the permuted rows read 0.38 per round


class _StopAtStage:
    """Interrupt in the middle of the levels (the line draw's window and the cycle's choice are
    then in the state that a resume reads back)."""

    def __call__(self, phase, state, info) -> None:
        if info.get("stage", 0) >= 4:
            raise KeyboardInterrupt


def test_a_flat_run_interrupted_in_its_levels_resumes_bit_identically(tmp_path):
    p = fs.LogisticHalfspace.random(64, 0.3, 0.301)
    full = fs.sample(p, n=200, seed=0, progress=False)
    assert full.stats["flat"] is True and full.stats["band_cycle"] == ["pairs", "line"]
    part = fs.sample(p, n=200, seed=0, progress=False, run_dir=tmp_path, callbacks=[_StopAtStage()])
    assert part.status == "interrupted"
    resumed = fs.sample(p, n=200, resume=tmp_path, progress=False)
    assert torch.equal(resumed.codes, full.codes) and resumed.n_evals == full.n_evals
    assert resumed.stats["log_prob"] == full.stats["log_prob"]
