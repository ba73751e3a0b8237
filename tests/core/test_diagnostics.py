"""Convergence diagnostics of multi-walker runs (issue 11, item 3): split rank-normalized R-hat,
bulk/tail ESS over walkers, exact duplicates, ``mixed`` and its warning."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

import feassample as fs
from feassample.core import diagnostics


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _rows(chains: int, draws: int, gen: torch.Generator, shift: float = 0.0):
    """Rows of ``chains`` walkers interleaved as a sampler keeps them (one row per walker a round)."""
    codes = torch.randn(draws, chains, 5, generator=gen, dtype=torch.float64)
    codes = codes + shift * torch.arange(chains, dtype=torch.float64)[None, :, None]
    walkers = torch.arange(chains).repeat(draws)
    codes = codes.reshape(draws * chains, 5)
    return walkers, codes[:, :1].clone(), codes


def _classic_rhat(ary: np.ndarray) -> float:
    """Gelman-Rubin split R-hat on raw values (no ranks), written out from its definition."""
    half = ary.shape[1] // 2
    split = np.concatenate([ary[:, :half], ary[:, half:2 * half]])
    n = split.shape[1]
    w = split.var(axis=1, ddof=1).mean()
    b = n * split.mean(axis=1).var(ddof=1)
    return math.sqrt(((n - 1) / n * w + b / n) / w)


def test_iid_walkers_have_rhat_near_one_and_ess_near_the_draw_count():
    walkers, values, codes = _rows(10, 50, torch.Generator().manual_seed(0))
    d = diagnostics.diagnose(walkers, values, codes)
    assert d["chains"] == 10 and d["draws"] == 50 and d["duplicates"] == 0
    assert d["mixed"] is True and d["rhat_max"] < 1.05
    assert 250 < d["ess_bulk_min"] and max(d["ess_bulk"].values()) < 1000
    # the library's rank R-hat agrees with the classic formula on normal data
    column = values[:, 0].numpy().reshape(50, 10).T
    assert d["rhat"]["value:0"] == pytest.approx(_classic_rhat(column), abs=0.02)


def test_separated_or_frozen_walkers_are_not_mixed_and_say_so(caplog):
    walkers, values, codes = _rows(10, 20, torch.Generator().manual_seed(1), shift=3.0)
    d = diagnostics.diagnose(walkers, values, codes)
    assert d["mixed"] is False and d["rhat_max"] > 1.5 and "R-hat" in d["worst"]
    frozen = codes[:10].repeat(20, 1)  # every walker keeps its first point: never moves
    d = diagnostics.diagnose(walkers, frozen[:, :1], frozen)
    assert d["mixed"] is False and d["rhat_max"] == math.inf
    assert d["duplicates"] == 190  # 200 rows, 10 distinct
    with caplog.at_level(logging.WARNING, logger="feassample.core.diagnostics"):
        diagnostics.warn_if_not_mixed(d, certified=True)
    assert "not mixed" in caplog.text and "R-hat" in caplog.text and "inf" in caplog.text


def test_duplicates_and_too_few_rows():
    codes = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0], [0.0, 1.0]])
    assert diagnostics.duplicates(codes) == 2
    d = diagnostics.diagnose(torch.tensor([0, 1, 0, 1]), codes[:, :1], codes)
    assert d["mixed"] is None and "walkers" in d["skipped"] and d["duplicates"] == 2


def test_cover_on_a_slab_is_mixed_and_reports_its_diagnostics():
    p = fs.LogisticHalfspace.random(64, 0.6, 0.8)
    s = fs.sample(p, n=500, k=10, seed=0, method="cover")
    assert s.status == "success"
    # measured: R-hat max 1.014, bulk ESS min 423 over 10 walkers x 50 draws
    assert s.stats["mixed"] is True and s.stats["rhat_max"] < 1.05 and s.stats["ess_bulk_min"] > 200
    assert s.stats["duplicates"] == 0
    d = s.stats["diagnostics"]
    assert d["chains"] == 10 and d["draws"] == 50
    assert {"value:logit f(x)", "proj:0", "pc:0"} <= set(d["rhat"])
    assert "R-hat max" in s.summary() and "mixed" in s.summary()


def test_a_walk_that_barely_moves_is_certified_but_not_mixed(caplog):
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    with caplog.at_level(logging.WARNING, logger="feassample.core.diagnostics"):
        s = fs.sample(p, n=100, k=10, seed=0, method="walk", options={"walk_lr": 1e-6})
    assert s.status == "success" and bool(s.feasible.all())
    assert s.stats["mixed"] is False and s.stats["rhat_max"] > 1.5
    assert "certified inside the band but not mixed" in caplog.text and "R-hat of" in caplog.text
    assert "NOT MIXED" in s.summary()


def test_langevin_rows_carry_their_chain():
    p = fs.LogisticHalfspace.random(8, 0.4, 0.8)
    s = fs.sample(p, n=60, k=6, seed=0, method="langevin")
    assert "mixed" in s.stats and s.stats["diagnostics"]["rows"] == len(s)


def _families(families: int, size: int, gen: torch.Generator, rho: float):
    """One row per particle (walker ids all distinct), ``size`` rows per ancestral family, with
    correlation ``rho`` between the rows of one family (a shared family effect)."""
    common = torch.randn(families, 1, 5, generator=gen, dtype=torch.float64) * math.sqrt(rho)
    own = torch.randn(families, size, 5, generator=gen, dtype=torch.float64) * math.sqrt(1 - rho)
    codes = (common + own).reshape(families * size, 5)
    ancestors = torch.arange(families).repeat_interleave(size)
    walkers = torch.arange(families * size)
    return walkers, codes[:, :1].clone(), codes, ancestors


@pytest.mark.parametrize("seed", range(5))
def test_one_row_per_particle_is_diagnosed_over_ancestral_families(seed):
    # independent rows: every family looks like the population (R-hat within its null range)
    walkers, values, codes, anc = _families(60, 6, torch.Generator().manual_seed(seed), rho=0.0)
    d = diagnostics.diagnose(walkers, values, codes, ancestors=anc)
    assert d["chains_by"] == "ancestor" and d["chains"] == 60 and d["draws"] == 4
    assert d["thresholds"]["rhat_max"] == pytest.approx(1 + 7.0 / (4 * math.sqrt(60)))
    assert d["mixed"] is True, d.get("worst")
    # descendants that stay by their ancestor (correlation 0.8 within a family): not mixed
    walkers, values, codes, anc = _families(60, 6, torch.Generator().manual_seed(seed), rho=0.8)
    d = diagnostics.diagnose(walkers, values, codes, ancestors=anc)
    assert d["mixed"] is False and "R-hat" in d["worst"]
    # too few families for a verdict
    walkers, values, codes, anc = _families(10, 6, torch.Generator().manual_seed(seed), rho=0.0)
    d = diagnostics.diagnose(walkers, values, codes, ancestors=anc)
    assert d["mixed"] is None and "ancestral families" in d["skipped"]


def test_smc_whose_copies_never_separate_is_flagged_not_mixed(caplog):
    # the thin d = 784 slab with only the gradient-free step (no pairs, no Galilean move): the
    # copies of an ancestor stay together; one emission (particles = n), so chained by family
    p = fs.LogisticHalfspace.random(784, 0.7, 0.701)
    with caplog.at_level(logging.WARNING, logger="feassample.core.diagnostics"):
        bad = fs.sample(p, n=300, seed=0, method="smc",
                        options={"pairs": "off", "galilean": "off", "particles": 300, "budget": None})
    assert bad.status == "success" and bad.stats["mixed"] is False and bad.stats["rhat_max"] > 2
    assert "ancestral families" in caplog.text
    good = fs.sample(p, n=300, seed=0, method="smc", options={"particles": 300})
    assert good.stats["mixed"] is True and good.stats["diagnostics"]["chains_by"] == "ancestor"
    default = fs.sample(p, n=300, seed=0, method="smc")  # 75 particles, each emitted 4 times
    assert default.stats["mixed"] is True and default.stats["diagnostics"]["chains_by"] == "walker"


# -- diagnostics that never claim more than the data (issue 21) ---------------------------------
def _antithetic_rows(chains: int, draws: int, gen: torch.Generator):
    """Chains that flip sign every step (lag-1 autocorrelation about -0.9): the ESS estimator's
    raw value exceeds the number of rows."""
    codes = torch.empty(draws, chains, 5, dtype=torch.float64)
    codes[0] = torch.randn(chains, 5, generator=gen, dtype=torch.float64)
    for t in range(1, draws):
        codes[t] = -0.9 * codes[t - 1] + math.sqrt(1 - 0.81) * torch.randn(chains, 5, generator=gen,
                                                                              dtype=torch.float64)
    return torch.arange(chains).repeat(draws), codes.reshape(draws * chains, 5)


def test_ess_is_reported_over_its_rows_and_never_above_them():
    from arviz_stats.base import array_stats

    walkers, codes = _antithetic_rows(8, 30, torch.Generator().manual_seed(3))
    d = diagnostics.diagnose(walkers, codes[:, :1].clone(), codes)
    assert d["ess_rows"] == 8 * 30 == d["chains"] * d["draws"]
    raw = array_stats.ess(codes[:, 0].numpy().reshape(30, 8).T, chain_axis=-2, draw_axis=-1, method="bulk")
    assert raw > 240  # the estimator alone claims more effective draws than rows
    assert max(d["ess_bulk"].values()) <= 240 and max(d["ess_tail"].values()) <= 240
    assert d["ess_bulk"]["value:0"] == 240


def test_the_verdict_carries_its_threshold_and_margin():
    walkers, values, codes = _rows(10, 50, torch.Generator().manual_seed(0))
    d = diagnostics.diagnose(walkers, values, codes)
    assert d["rhat_threshold"] == diagnostics.RHAT_MAX == d["thresholds"]["rhat_max"]
    assert d["margin"] == pytest.approx(diagnostics.RHAT_MAX - max(d["rhat"].values()))
    assert d["margin"] > 0 and d["mixed"] is True
    s = fs.SampleSet(codes, codes, values, torch.ones(len(codes), dtype=torch.bool),
                     {"status": "success", "diagnostics": d})
    line = s.summary()
    assert f"against {diagnostics.RHAT_MAX:.4g}" in line and f"margin {d['margin']:+.2g}" in line
    assert "of 500 rows" in line and "10 walkers x 50 rows" in line
    walkers, values, codes = _rows(10, 20, torch.Generator().manual_seed(1), shift=3.0)
    bad = diagnostics.diagnose(walkers, values, codes)
    assert bad["margin"] < 0 and bad["mixed"] is False


def test_diagnostics_that_cannot_be_computed_say_not_checked_and_warn(caplog):
    codes = torch.tensor([[0.0, 1.0], [0.5, 1.0], [2.0, 3.0], [0.0, 1.5]])
    d = diagnostics.diagnose(torch.tensor([0, 1, 0, 1]), codes[:, :1], codes)
    assert d["mixed"] is None
    with caplog.at_level(logging.WARNING, logger="feassample.core.diagnostics"):
        diagnostics.warn_if_not_mixed(d, certified=True)
    assert "mixing not checked (needs 2 walkers" in caplog.text
    s = fs.SampleSet(codes, codes, codes[:, :1], torch.ones(4, dtype=torch.bool),
                     {"status": "success", "diagnostics": d})
    assert "mixing not checked (needs 2 walkers" in s.summary()
    no_chains = fs.SampleSet(codes, codes, codes[:, :1], torch.ones(4, dtype=torch.bool), {"status": "success"})
    assert "mixing not checked (the sampler records no walker per row)" in no_chains.summary()


def test_a_levels_run_too_small_for_a_verdict_warns_that_mixing_was_not_checked(caplog):
    p = fs.LogisticHalfspace.random(64, 0.7, 0.72)  # thin enough for levels (not rejection)
    with caplog.at_level(logging.WARNING, logger="feassample.core.diagnostics"):
        # an explicit population is kept through the band: 40 rows of 64 particles, one each
        s = fs.sample(p, n=40, seed=0, method="smc", progress=False, options={"particles": 64, "first": 256})
    assert s.status == "success" and s.stats["smc_mode"] == "levels" and s.stats["mixed"] is None
    assert "stopped: too few rows to check mixing" in s.summary()
    assert "mixing not checked" in caplog.text and "mixing not checked" in s.summary()


def test_a_small_default_levels_run_is_diagnosed_over_its_band_particles():
    # with the default population and n < 4 N, the band's level resamples to ceil(n / 4)
    # particles, each emitted 4 times: chains a diagnosis can compare (one row per particle
    # left "mixing not checked"); the levels run the default population's floor of 32
    p = fs.LogisticHalfspace.random(64, 0.7, 0.72)
    s = fs.sample(p, n=40, seed=0, method="smc", progress=False)
    assert s.status == "success" and s.stats["smc_mode"] == "levels" and s.stats["particles"] == 32
    d = s.stats["diagnostics"]
    assert s.stats["mixed"] is not None and d["chains_by"] == "walker"
    assert d["chains"] == 10 and d["draws"] == 4 and "over 10 walkers x 4 rows" in s.summary()
    assert torch.equal(torch.bincount(s.walker), torch.full((10,), 4))


def test_the_rows_ancestors_and_the_populations_are_two_names():
    walkers, values, codes, anc = _families(60, 6, torch.Generator().manual_seed(0), rho=0.0)
    d = diagnostics.diagnose(walkers, values, codes, ancestors=anc[torch.arange(360) % 6 < 5])
    assert "distinct_ancestors" not in d and d["row_ancestors"] == 60
