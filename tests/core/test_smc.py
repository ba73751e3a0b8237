"""Adaptive multilevel splitting (``method="smc"``): the prior probability of the set against
closed forms (the logistic slab's exact volume, deep tails included; a Gaussian half-line), the
law of the samples against exact draws (one slab, a set in two pieces, a Gaussian code prior),
the certificate, ``log_prior`` and bit-identical resume."""
from __future__ import annotations

import logging
import math

import pytest
import torch
from scipy import stats

import feassample as fs
from feassample.analysis import family_se
from feassample.core.kernels.smc import SMCConfig, log_prob_estimate, survival_variance
from feassample.rundir.storage import load_checkpoint
from feassample.problems.slab_truth import SlabLaw


def _z(s, exact: float) -> float:
    return (s.stats["log_prob"] - exact) / s.stats["log_prob_se"]


def _logit(z: float) -> float:
    return math.log(z) - math.log1p(-z)


def test_log_prob_matches_the_exact_slab_volume_on_9_of_10_seeds():
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    exact = p.law.log_volume()
    zs = []
    for seed in range(10):
        s = fs.sample(p, n=400, seed=seed, method="smc", options={"rejection_rate": None})
        assert s.status == "success" and bool(s.feasible.all()) and len(s) == 400
        assert bool(p.membership(s.x.double()).all())  # exact membership, not our own check
        assert s.stats["smc_stages"] >= 1 and s.stats["log_prob_se"] > 0
        zs.append(_z(s, exact))
    assert sum(abs(z) <= 2 for z in zs) >= 9, zs


def test_log_prob_in_a_deep_tail_below_1e_minus_10():
    # d = 32, sigmoid(w.x + c) >= sigmoid(7): probability 2.2e-12 under the uniform law
    p = fs.LogisticHalfspace.random(32, 1 / (1 + math.exp(-7.0)), 1.0)
    exact = p.law.log_volume()
    assert exact < math.log(1e-10)
    zs = []
    for seed in range(20):
        s = fs.sample(p, n=300, seed=seed, method="smc", options={"particles": 500})
        assert s.status == "success" and bool(p.membership(s.x.double()).all())
        zs.append(_z(s, exact))
    # Measured over 30 seeds (docs/smc.md): 26 of 30 within 2 SE, mean z 0.16, sd of z 1.16 (the
    # SE is about 15% small here). 20 seeds make the floor a statistic, not a coin flip: a
    # calibrated SE gives 19 of 20 on average, a biased or 1.5x too small SE about 16 or fewer.
    assert sum(abs(z) <= 2 for z in zs) >= 17, (exact, zs)
    assert abs(sum(zs) / len(zs)) < 0.75, (exact, zs)  # no bias of log_prob (was +0.75 SE without pairs)


@pytest.mark.slow
def test_log_prob_far_in_the_tail_1e_minus_24():
    p = fs.LogisticHalfspace.random(16, 1 / (1 + math.exp(-8.0)), 1.0)
    exact = p.law.log_volume()
    assert exact < math.log(1e-24)
    zs = [_z(fs.sample(p, n=500, seed=seed, method="smc"), exact) for seed in range(10)]
    assert sum(abs(z) <= 2 for z in zs) >= 9, (exact, zs)


MODES = pytest.mark.parametrize("rate", [None, 0.05], ids=["levels", "rejection_if_common"])


@MODES
def test_samples_follow_the_exact_law_of_w_x_on_a_slab(rate):
    p = fs.LogisticHalfspace.random(16, 0.7, 0.95)
    exact = p.t(p.exact_sample(4000, generator=torch.Generator().manual_seed(9))).numpy()
    pvalues = [stats.ks_2samp(p.t(fs.sample(p, n=500, seed=seed, method="smc",
                                            options={"rejection_rate": rate}).x).numpy(), exact).pvalue
               for seed in range(10)]
    assert sum(pv < 0.01 for pv in pvalues) <= 1, pvalues


def _two_slabs(d: int = 16, r1: float = 0.6, r2: float = 1.6):
    """``r1 <= |w.x - m| <= r2`` in [0,1]^d, ``m`` the cube's mean of ``w.x``: two slabs."""
    w = fs.problems.logistic.random_weights(d, seed=3)
    m = float(w.sum()) / 2
    problem = fs.from_functions(lambda x: (x @ w.to(x.dtype) - m).abs(), r1, r2, (d,), box=(0.0, 1.0))
    upper, lower = SlabLaw(w, m + r1, m + r2), SlabLaw(w, m - r2, m - r1)
    return problem, w, m, upper.log_volume(), lower.log_volume()


@MODES
def test_a_set_in_two_pieces_gets_each_piece_in_its_exact_share(rate):
    problem, w, m, log_up, log_lo = _two_slabs()
    share = 1 / (1 + math.exp(log_lo - log_up))  # the upper piece's exact share
    exact = math.log(math.exp(log_up) + math.exp(log_lo))
    n = 400
    sd = math.sqrt(share * (1 - share) / n)
    zs = []
    # 20 seeds, at least 17 within 2 SE: an exact 95% coverage fails this 1.6% of the time (9 of
    # 10 failed 8.6% of the time; the levels' runs here had 18 of 20, mean z -0.30)
    for seed in range(20):
        s = fs.sample(problem, n=n, seed=seed, method="smc", options={"rejection_rate": rate})
        assert s.status == "success" and bool(s.feasible.all())
        assert s.stats["smc_mode"] == ("levels" if rate is None else "rejection")
        upper = ((s.x.double() @ w - m) > 0).numpy()
        # the levels' rows descend from about 200 first draws (moves rarely cross the gap): the
        # share's SE is the cluster-robust one over those families (analysis.family_se; 0.035
        # against the iid 0.025; seed 11's share 0.40 is 4.0 iid SDs and 2.9 family SEs off)
        se = max(sd, family_se(upper, s))
        assert abs(float(upper.mean()) - share) <= 3 * se, (seed, float(upper.mean()), share, se)
        zs.append(_z(s, exact))
    assert sum(abs(z) <= 2 for z in zs) >= 17, zs


def test_gaussian_code_prior_uses_pcn_and_matches_the_normal_law():
    # codes c ~ N(0, I) in 20 dims, band 2 <= u.c <= 3 with |u| = 1: u.c ~ N(0, 1), so the set's
    # probability and the law of u.c on it are closed forms
    u = torch.randn(20, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    u = u / u.norm()
    problem = fs.from_functions(lambda c: c @ u.to(c.dtype), 2.0, 3.0, (20,))
    exact = math.log(stats.norm.cdf(3.0) - stats.norm.cdf(2.0))
    truncated = stats.truncnorm(2.0, 3.0)
    zs, pvalues = [], []
    for seed in range(10):
        s = fs.sample(problem, n=400, seed=seed, method="smc")
        assert s.status == "success" and bool(s.feasible.all()) and s.stats["move"] == "pcn"
        zs.append(_z(s, exact))
        pvalues.append(stats.kstest((s.codes.double() @ u).numpy(), truncated.cdf).pvalue)
    assert sum(abs(z) <= 2 for z in zs) >= 9, zs
    assert sum(pv < 0.01 for pv in pvalues) <= 1, pvalues


@MODES
def test_a_code_ball_is_respected_and_is_part_of_the_prior(rate):
    u = torch.zeros(10, dtype=torch.float64)
    u[0] = 1.0

    class Ball(fs.FeasibleSet):
        def __init__(self):
            self.bands = fs.Bands((1.0,), (math.inf,))
            self.code_shape = self.input_shape = (10,)
            self.dtype = torch.float64

        def measure(self, x):
            return fs.Measurement((x @ u).unsqueeze(1))

        def project(self, codes):
            norms = codes.norm(dim=1, keepdim=True).clamp(min=1e-12)
            return codes * (3.0 / norms).clamp(max=1.0)

    problem = Ball()
    s = fs.sample(problem, n=300, seed=0, method="smc", dtype="float64", options={"rejection_rate": rate})
    assert s.status == "success" and bool((s.codes.norm(dim=1) <= 3.0).all())
    assert bool(torch.isfinite(problem.log_prior(s.codes)).all())
    assert not bool(torch.isfinite(problem.log_prior(torch.full((1, 10), 2.0, dtype=torch.float64))).all())


def test_log_prior_is_uniform_on_the_box_and_standard_normal_otherwise():
    box = fs.LogisticHalfspace.random(4, 0.6, 0.8)
    lp = box.log_prior(torch.tensor([[0.2, 0.5, 0.9, 1.0], [0.2, 0.5, 1.2, 0.1]]))
    assert lp[0].item() == 0.0 and lp[1].item() == -math.inf
    wide = fs.from_functions(lambda x: x.sum(1), 0.0, 1.0, (3,), box=(-1.0, 1.0))
    assert wide.log_prior(torch.zeros(1, 3)).item() == pytest.approx(-3 * math.log(2.0))
    free = fs.from_functions(lambda x: x.sum(1), 0.0, 1.0, (3,))
    c = torch.randn(5, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(c).sum(1)
    assert torch.allclose(free.log_prior(c), expected)


def test_log_prob_estimate_formula():
    logp, se = log_prob_estimate([0.5, 0.5, 0.2], 100)
    assert logp == pytest.approx(2 * math.log(0.5) + math.log(0.2))
    assert se == pytest.approx(math.sqrt(2 * 0.5 / 50 + 0.8 / 20))


def test_summary_reports_the_log_probability():
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    s = fs.sample(p, n=200, seed=0, method="smc")
    assert "log P(set)" in s.summary() and f"{s.stats['log_prob']:.4g}" in s.summary()
    assert "log P(set)" not in fs.sample(p, n=50, seed=0, method="rejection").summary()


def test_bad_options_are_refused_with_their_name():
    for bad, name in (({"p0": 1.0}, "p0"), ({"particles": 1}, "particles"),
                      ({"particles": 15}, "particles must be an integer >= 16"), ({"move": "hmc"}, "move"),
                      ({"moves": 0}, "moves"), ({"jump": -1.0}, "jump"), ({"level_jump": "a"}, "level_jump"),
                      ({"max_moves": 2}, "max_moves"), ({"resampling": "stratified"}, "resampling")):
        with pytest.raises(ValueError, match=name):
            SMCConfig(**bad)
    with pytest.raises(ValueError, match="reflect"):
        fs.sample(fs.from_functions(lambda x: x.sum(1), 0.0, 1.0, (3,)), n=10, method="smc",
                  options={"move": "reflect"})


class StopAfter:
    def __init__(self, rounds: int) -> None:
        self.rounds, self.seen = rounds, 0

    def __call__(self, phase, state, info) -> None:
        self.seen += 1
        if self.seen == self.rounds:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop", [3, 20])  # inside the levels; in the output rounds
def test_checkpoint_and_resume_is_bit_identical(tmp_path, stop):
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    opts = {"particles": 200, "rejection_rate": None}
    full = fs.sample(p, n=1000, seed=3, method="smc", options=opts)
    part = fs.sample(p, n=1000, seed=3, method="smc", options=opts, run_dir=tmp_path, callbacks=[StopAfter(stop)])
    assert part.status == "interrupted"
    assert (0 < len(part) < 1000) if stop == 20 else len(part) == 0
    checkpoint, _ = load_checkpoint(tmp_path)
    assert checkpoint.phase == "smc"
    resumed = fs.sample(p, n=1000, resume=tmp_path)
    assert resumed.status == "success" and resumed.stats["resumed"] is True
    assert torch.equal(resumed.codes, full.codes)
    assert resumed.stats["log_prob"] == full.stats["log_prob"]


def test_an_unreachable_band_ends_with_a_clear_reason():
    # h is a step function: the score has a plateau that no level can cross
    problem = fs.from_functions(lambda x: torch.where(x.sum(1) > 100.0, 1.0, 0.0), 0.5, 1.0, (4,),
                                box=(0.0, 1.0))
    s = fs.sample(problem, n=20, seed=0, method="smc", options={"particles": 50})
    assert s.status == "infeasible" and "plateau" in s.stats["message"]


def _irwin_hall_cdf(x: float, d: int) -> float:
    """P(sum of d iid U(0, 1) <= x), the Irwin-Hall law (closed form, exact in fractions)."""
    from fractions import Fraction
    xf = Fraction(x)
    total = sum((-1) ** k * math.comb(d, k) * (xf - k) ** d for k in range(0, min(d, math.floor(x)) + 1))
    return float(total / math.factorial(d))


def test_a_relu_plateau_under_most_of_the_prior_does_not_stop_the_levels():
    # h = relu(sum(x) - 5) on [0, 1]^8 is 0 on 89% of the cube: the score is flat there, so the
    # p0-quantile sits on the plateau; moves accepted onto the level's ties used to stall the run
    d, c = 8, 5.0
    p = fs.from_functions(lambda x: torch.relu(x.sum(1, keepdim=True) - c), lo=[1.0], hi=[1.5],
                          code_shape=(d,), box=(0.0, 1.0))
    exact = math.log(_irwin_hall_cdf(c + 1.5, d) - _irwin_hall_cdf(c + 1.0, d))
    assert _irwin_hall_cdf(c, d) > 0.85  # the plateau holds most of the prior
    zs = []
    for seed in range(5):
        s = fs.sample(p, n=300, seed=seed, method="smc", options={"rejection_rate": None})
        assert s.status == "success" and len(s) == 300 and bool(s.feasible.all()), s.stats.get("why")
        total = s.x.double().flatten(1).sum(1)
        assert bool(((total >= c + 1.0 - 1e-4) & (total <= c + 1.5 + 1e-4)).all())
        zs.append(_z(s, exact))
    assert sum(abs(z) <= 2 for z in zs) >= 4, (exact, zs)


def test_resampled_copies_move_apart_on_a_heavy_tailed_slab_at_d_784():
    # Student-t weights pin a few coordinates; with one isotropic step the copies of an ancestor
    # never moved (14-39 exact duplicates of 500, NN ratio 0.04 in benchmarks/coverage.py)
    import numpy as np
    w = torch.from_numpy(np.random.default_rng(5).standard_t(1.5, size=784)).float() * 0.05
    p = fs.LogisticHalfspace(w, c=-float(w.sum()) / 2, z1=0.6, z2=0.8)
    s = fs.sample(p, n=500, seed=0, method="smc", options={"rejection_rate": None})
    assert s.status == "success" and bool(p.membership(s.x.double()).all())
    codes = s.codes.flatten(1)
    assert torch.unique(codes, dim=0).shape[0] == 500
    # nearest-neighbour distances as large as an exact sample's (not collapsed onto ancestors)
    exact = p.exact_sample(500, generator=torch.Generator().manual_seed(1)).double().flatten(1)
    nn = lambda x: torch.cdist(x, x).fill_diagonal_(math.inf).amin(1).mean()  # noqa: E731
    assert float(nn(codes.double()) / nn(exact)) > 0.8


def test_survival_variance_is_binomial_for_independent_particles_and_grows_with_copies():
    keep = torch.tensor([True] * 30 + [False] * 70)
    alone = survival_variance(keep, torch.arange(100))
    assert alone == pytest.approx((1 - 0.3) / (0.3 * 100))
    # the same indicators in families of two identical copies: twice the variance
    twins = survival_variance(torch.cat([keep, keep]), torch.arange(100).repeat(2))
    assert twins == pytest.approx(2 * (1 - 0.3) / (0.3 * 200))


def test_pairs_move_keeps_the_uniform_law_on_a_curved_set_in_a_box():
    # h = sum x^2 in [1.5, 2.0] on [0, 1]^6: curved, so the pairs move's directions come from a
    # partner's gradient (red-black); exact reference: rejection from the cube (not our sampler)
    from scipy import stats
    h = lambda x: (x ** 2).sum(1)  # noqa: E731
    p = fs.from_functions(h, 1.5, 2.0, (6,), box=(0.0, 1.0))
    g = torch.Generator().manual_seed(11)
    ref = torch.rand(40_000, 6, generator=g, dtype=torch.float64)
    ref = ref[(h(ref) >= 1.5) & (h(ref) <= 2.0)]
    for seed in range(4):
        s = fs.sample(p, n=1000, seed=seed, method="smc", options={"pairs": "on", "rejection_rate": None},
                      dtype="float64")
        assert s.status == "success" and s.stats["pairs"] is True
        assert s.stats["log_prob"] == pytest.approx(math.log(ref.shape[0] / 40_000),
                                                    abs=4 * s.stats["log_prob_se"])
        x = s.x.double()
        # 8 KS tests at 0.001: a false alarm 0.8% of the time for an exact sampler; a kernel that
        # is not invariant (the walker's own gradient) gave p = 1e-122 on this set (docs/coverage.md)
        assert stats.ks_2samp(h(x).numpy(), h(ref).numpy()).pvalue > 1e-3, seed
        assert stats.ks_2samp(x[:, 0].numpy(), ref[:, 0].numpy()).pvalue > 1e-3, seed


def test_copies_move_apart_on_a_thin_band_at_d_784():
    # band 0.7 <= sigmoid <= 0.701: the isotropic step must stay tiny, and without the pairs move
    # the copies of an ancestor stayed together (NN ratio 0.024 in benchmarks/coverage.py)
    p = fs.LogisticHalfspace.random(784, 0.7, 0.701)
    s = fs.sample(p, n=300, seed=1, method="smc")
    assert s.status == "success" and s.stats["pairs"] is True and bool(p.membership(s.x.double()).all())
    exact = p.exact_sample(300, generator=torch.Generator().manual_seed(3)).double().flatten(1)
    nn = lambda x: torch.cdist(x, x).fill_diagonal_(math.inf).amin(1).mean()  # noqa: E731
    assert float(nn(s.codes.double().flatten(1)) / nn(exact)) > 0.9


def test_pairs_need_gradients_and_auto_falls_back_without_them():
    step = fs.from_functions(lambda x: torch.where(x.sum(1) > 2.0, 1.0, 0.0), 0.5, 1.0, (4,), box=(0.0, 1.0))
    s = fs.sample(step, n=50, seed=0, method="smc")
    assert s.status == "success" and s.stats["pairs"] is False
    with pytest.raises(ValueError, match="gradients"):
        fs.sample(step, n=50, seed=0, method="smc", options={"pairs": "on"})
    with pytest.raises(ValueError, match="pairs must be one of"):
        fs.sample(step, n=50, seed=0, method="smc", options={"pairs": "sometimes"})


def test_an_unreachable_band_returns_the_closest_particles_closest_first():
    p = fs.from_functions(lambda x: x.sum(dim=1), lo=10.0, hi=11.0, code_shape=(4,), box=(0, 1))
    s = fs.sample(p, n=20, k=5, seed=0, method="smc")
    assert s.status == "infeasible" and not bool(s.feasible.any())
    assert "closest came within" in s.stats["message"] and s.stats["returned_closest"] is True
    assert 1 <= len(s) <= 5 and torch.unique(s.codes, dim=0).shape[0] == len(s)
    gaps = 10.0 - s.values[:, 0].double()
    assert bool((gaps[1:] >= gaps[:-1] - 1e-6).all())
    assert float(gaps[0]) == pytest.approx(s.stats["best_violation"], abs=1e-4)
    assert s.stats["best_violation"] >= 6.0 - 1e-4  # sum(x) <= 4 on the unit cube


@pytest.mark.parametrize("resume_at", [None, 2])
def test_a_common_set_is_sampled_by_rejection_from_the_prior(tmp_path, resume_at):
    # P(set) = 0.23 >= rejection_rate: exact independent draws of the prior restricted to the set,
    # log_prob the fraction of prior draws inside, at about 1 / P evaluations per sample
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    exact = p.law.log_volume()
    zs = []
    for seed in range(10):
        s = fs.sample(p, n=400, seed=seed, method="smc")
        assert s.status == "success" and s.stats["smc_mode"] == "rejection" and s.stats["smc_stages"] == 0
        assert bool(p.membership(s.x.double()).all()) and torch.unique(s.codes, dim=0).shape[0] == 400
        assert s.stats["evals_per_sample"] < 1.25 / math.exp(exact)  # 1 / P, and the last batch's rest
        assert s.stats["mixed"] is None and "independent draws" in s.stats["diagnostics"]["skipped"]
        zs.append(_z(s, exact))
    assert sum(abs(z) <= 2 for z in zs) >= 9, zs
    # the law of w.x is the exact one (KS against the slab's exact sampler)
    from scipy import stats
    ref = p.t(p.exact_sample(4000, generator=torch.Generator().manual_seed(5))).numpy()
    assert stats.ks_2samp(p.t(s.x).numpy(), ref).pvalue > 1e-3
    if resume_at is not None:  # stopped between two batches, resumed bit for bit
        part = fs.sample(p, n=400, seed=9, method="smc", run_dir=tmp_path, callbacks=[StopAfter(resume_at)])
        assert part.status == "interrupted"
        resumed = fs.sample(p, n=400, resume=tmp_path)
        assert torch.equal(resumed.codes, s.codes) and resumed.stats["log_prob"] == s.stats["log_prob"]


def test_rejection_rate_none_keeps_the_levels_and_bad_values_are_refused():
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s = fs.sample(p, n=100, seed=0, method="smc", options={"rejection_rate": None})
    assert s.stats["smc_mode"] == "levels" and s.stats["smc_stages"] >= 1
    with pytest.raises(ValueError, match="rejection_rate"):
        fs.sample(p, n=100, seed=0, method="smc", options={"rejection_rate": 0.0})


SHELL_SEED = 3  # a seed of the shell whose first budget pass is not mixed


class StopAtFirstEmission:
    """Interrupt right after the first round that kept rows (the first pass is complete)."""

    def __call__(self, phase, state, info) -> None:
        if info.get("accepted", 0) > 0:
            raise KeyboardInterrupt


def test_budget_auto_moves_on_until_the_diagnostics_pass_and_resumes_bit_identically(tmp_path):
    # the thin shell in [0, 1]^10 (benchmarks/coverage.py), seed 3: the first pass's ancestral
    # families are not mixed; one more pass of moves mixes them (seed 0 mixed in one pass once
    # the band's cycle left out the pairs move there)
    from benchmarks.coverage import cases
    shell = cases()["shell"].problem
    one = fs.sample(shell, n=500, seed=SHELL_SEED, method="smc", options={"budget": None})
    assert one.stats["mixed"] is False and "budget_rounds" not in one.stats
    auto = fs.sample(shell, n=500, seed=SHELL_SEED, method="smc")  # budget="auto" is the default
    assert auto.status == "success" and auto.stats["budget_stop"] == "mixed"
    assert auto.stats["budget_rounds"] == 2 and auto.stats["mixed"] is True
    history = auto.stats["budget_history"]
    assert history[0]["mixed"] is False and history[-1]["mixed"] is True
    assert history[-1]["rhat_max"] < history[0]["rhat_max"]
    assert auto.stats["log_prob"] == one.stats["log_prob"]  # fixed by the levels, before any pass
    assert auto.n_evals > one.n_evals and auto.stats["evals"]["diagnostic"] == 2000 + len(auto)
    part = fs.sample(shell, n=500, seed=SHELL_SEED, method="smc", run_dir=tmp_path, callbacks=[StopAtFirstEmission()])
    assert part.status == "interrupted"
    resumed = fs.sample(shell, n=500, resume=tmp_path)
    assert torch.equal(resumed.codes, auto.codes) and resumed.stats["budget_history"] == history


def test_budget_auto_stops_at_the_cap_and_says_so(caplog):
    from benchmarks.coverage import cases
    shell = cases()["shell"].problem
    with caplog.at_level(logging.WARNING):
        s = fs.sample(shell, n=500, seed=SHELL_SEED, method="smc", options={"max_budget": 100})
    assert s.stats["budget_stop"] == "cap" and s.stats["budget_rounds"] == 1 and s.stats["mixed"] is False
    assert "stopped at the cap max_budget=100" in caplog.text
    with pytest.raises(ValueError, match="budget must be 'auto' or None"):
        fs.sample(shell, n=10, method="smc", options={"budget": 20})


# -- found by review: the rejection mode's edges, the prior, the budget's cap --------------------
def test_a_last_batch_without_any_in_band_row_does_not_crash():
    # ~6% acceptance: the last, small batches often hold no in-band row; measure() of 0 rows used
    # to be called (and an embed that reshapes a batch of 0 fails). 256 first draws (the default
    # at n = 50 is 128, where a seed can see under 5% inside and run the levels instead)
    p = fs.from_functions(lambda x: x.flatten(1)[:, :1], 0.0, 0.06, (4, 4), box=(0, 1), embed=lambda x: x * 2)
    for seed in (19, 20, 21):
        s = fs.sample(p, n=50, seed=seed, options={"first": 256})
        assert s.status == "success" and s.stats["smc_mode"] == "rejection" and len(s) == 50


def test_resuming_a_finished_rejection_run_to_a_larger_n_keeps_no_row_twice(tmp_path):
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    first = fs.sample(p, n=200, seed=0, run_dir=tmp_path)
    assert first.stats["smc_mode"] == "rejection"
    more = fs.sample(p, n=400, resume=tmp_path)
    assert more.status == "success" and len(more) == 400
    assert torch.unique(more.codes, dim=0).shape[0] == 400
    assert torch.equal(more.codes[:200], first.codes)


def test_a_custom_start_law_is_not_the_prior_smc_samples():
    # from_functions(init=...) is where the seeded methods start; smc samples log_prior's law
    # (uniform on the box): P(x0 + x1 <= 1) = 1/2 and the mean of x0 on the set is 1/3
    p = fs.from_functions(lambda x: x.sum(1), 0.0, 1.0, (2,), box=(0.0, 1.0),
                          init=lambda n, g: torch.rand(n, 2, generator=g) ** 3)
    s = fs.sample(p, n=2000, seed=0, dtype="float64")
    assert abs(s.stats["log_prob"] - math.log(0.5)) < 4 * s.stats["log_prob_se"]
    assert abs(float(s.x[:, 0].mean()) - 1 / 3) < 0.02  # sd of the mean: 0.236 / sqrt(2000) = 0.005


def test_budget_auto_respects_its_cap():
    from benchmarks.coverage import cases
    shell = cases()["shell"].problem
    # without the Galilean move the shell's walkers are still not mixed after two passes
    s = fs.sample(shell, n=500, seed=0, method="smc", options={"galilean": "off", "max_budget": 120})
    assert s.n_evals / len(s) <= 120 and s.stats["budget_stop"] == "cap" and s.stats["mixed"] is False


def test_small_levels_runs_are_not_called_independent_and_tiny_codes_skip_the_pairs_move():
    p = fs.LogisticHalfspace.random(16, 0.9, 0.95)  # rare enough for the levels
    s = fs.sample(p, n=10, seed=0)
    assert s.stats["smc_mode"] == "levels"
    assert "independent" not in s.stats["diagnostics"].get("skipped", "") and "independent" not in s.summary()
    # code size 2 with 2 constraints: no block of m + 1 = 3 coordinates, so no pairs move
    ring = fs.from_functions(lambda x: torch.stack([x.norm(dim=1), x[:, 0] + x[:, 1]], 1),
                             lo=[1.0, 0.0], hi=[2.0, float("inf")], code_shape=(2,), box=(-3, 3))
    s = fs.sample(ring, n=200, seed=0, options={"rejection_rate": None})
    assert s.status == "success" and s.stats["pairs"] is False
    with pytest.raises(ValueError, match="pairs='on' needs"):
        fs.sample(ring, n=200, seed=0, options={"pairs": "on"})


def test_every_round_reports_the_level_the_running_log_p_and_the_cost_so_far():
    p = fs.LogisticHalfspace.random(16, 1 / (1 + math.exp(-5.0)), 1.0)
    seen = []
    s = fs.sample(p, n=100, seed=0, options={"rejection_rate": None},
                  callbacks=[lambda phase, state, info: seen.append(dict(info))])
    assert all({"level", "evals_per_sample"} <= set(i) for i in seen)
    levels = [i["level"] for i in seen]
    assert levels[-1] == 0.0 and all(a >= b for a, b in zip(levels, levels[1:]))  # levels only fall
    costs = [i["evals_per_sample"] for i in seen]
    assert all(a <= b for a, b in zip(costs, costs[1:])) and costs[-1] == pytest.approx(s.n_evals / 100)
    assert seen[-1]["log_p"] == pytest.approx(s.log_prob)  # the running estimate ends at the result's
    assert "eta_evals" in seen[-1] and not any("eta_evals" in i for i in seen if i["level"] > 0)
