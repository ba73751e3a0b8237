"""``SampleSet.rarity``: every level of a levels run against the slab's exact law."""
from __future__ import annotations

import math

import pytest
import torch

import feassample as fs
from feassample.core.result import rarity_rows
from feassample.problems.slab_truth import SlabLaw


def _exact_log_prob(p: fs.LogisticHalfspace, lo: float, hi: float) -> float:
    """``log P(lo <= w.x + c <= hi)`` for ``x`` uniform on the cube (logit units)."""
    return float(SlabLaw(p.w64, lo - p.c, hi - p.c).log_volume())


@pytest.fixture(scope="module")
def runs():
    torch.set_num_threads(1)
    p = fs.LogisticHalfspace.random(16, 1 / (1 + math.exp(-5.0)), 1.0)  # P = 3.1e-5
    return p, [fs.sample(p, n=300, seed=seed, progress=False) for seed in range(3)]


def test_every_level_of_the_rarity_curve_is_within_4_se_of_the_slab_law(runs):
    p, samples = runs
    worst = 0.0
    for s in samples:
        rows = s.rarity
        assert len(rows) == len(s.stats["smc_levels"]) >= 10
        assert rows[-1].log_prob == pytest.approx(s.log_prob) and rows[-1].log_prob_se == pytest.approx(s.log_prob_se)
        assert rows[-1].threshold == pytest.approx(p.bands.lo[0])  # the band's own end
        for r in rows:
            assert r.side == "above" and r.hi == (math.inf,) and r.threshold == r.lo[0]
            z = (r.log_prob - _exact_log_prob(p, r.lo[0], r.hi[0])) / r.log_prob_se
            worst = max(worst, abs(z))
    assert worst <= 4.0, worst


def test_rarity_thresholds_rise_to_the_band_and_log_prob_falls(runs):
    _, samples = runs
    rows = samples[0].rarity
    th = [r.threshold for r in rows]
    assert th == sorted(th) and all(a > b for a, b in zip([r.log_prob for r in rows], [r.log_prob for r in rows][1:]))
    ses = [r.log_prob_se for r in rows]
    assert ses == sorted(ses) and ses[0] > 0


def test_rarity_of_a_band_below_the_prior_is_log_p_of_h_below_the_threshold():
    torch.set_num_threads(1)
    w = -fs.problems.logistic.random_weights(16, seed=0)  # the first test's slab, mirrored
    p = fs.LogisticHalfspace(w, None, 0.0, 1 / (1 + math.exp(5.0)))  # centred: P = 3e-5
    s = fs.sample(p, n=200, seed=0, progress=False, options={"rejection_rate": None})
    rows = s.rarity
    assert rows[0].side == "below" and rows[-1].threshold == pytest.approx(-5.0)
    for r in rows:
        assert r.threshold == r.hi[0] and r.lo == (-math.inf,)
        z = (r.log_prob - _exact_log_prob(p, -math.inf, r.hi[0])) / r.log_prob_se
        assert abs(z) <= 4.0, (r, z)


def test_a_rejection_run_has_one_row_the_band_and_other_methods_none():
    p = fs.LogisticHalfspace.random(4, 0.6, 1.0)
    s = fs.sample(p, n=50, seed=0, progress=False)
    assert s.stats["smc_mode"] == "rejection"
    (row,) = s.rarity
    assert row.threshold == pytest.approx(p.bands.lo[0]) and row.log_prob == s.log_prob
    assert rarity_rows({"log_prob": None}, {"lo": [0.0], "hi": [1.0]}) is None


def test_rarity_survives_save_and_load(runs, tmp_path):
    s = runs[1][0]
    s.save(tmp_path / "s")
    assert fs.SampleSet.load(tmp_path / "s").rarity == s.rarity


def test_rarity_curve_refuses_a_side_without_a_finite_end(runs):
    with pytest.raises(ValueError, match="side='below'"):
        runs[1][0].rarity_curve(side="below")
    with pytest.raises(ValueError, match="side must be"):
        runs[1][0].rarity_curve(side="up")


def test_several_constraints_thresholds_are_the_scaled_distance():
    stats = {"log_prob": -1.0, "log_prob_se": 0.2, "smc_levels": [2.0, 0.0], "smc_fractions": [0.5, 0.7],
             "smc_scale": [1.0, 10.0], "particles": 100, "smc_mode": "levels"}
    rows = rarity_rows(stats, {"lo": [0.0, 0.0], "hi": [1.0, "inf"], "tol": 0.0})
    assert rows[0].threshold == 2.0 and rows[0].lo == (-2.0, -20.0) and rows[0].hi == (3.0, math.inf)
    assert rows[1].log_prob == pytest.approx(math.log(0.35))
    binom = math.sqrt(0.5 / 50 + 0.3 / 70)  # 0.12, below the run's SE 0.2: scaled up to it
    assert rows[-1].log_prob_se == pytest.approx(0.2) and rows[0].log_prob_se > math.sqrt(0.5 / 50)
    assert binom < 0.2


def test_two_constraints_every_level_matches_the_product_of_independent_slab_laws():
    # two slabs on disjoint coordinates: independent under the uniform prior, so the event of a
    # level, lo_j(L) <= h_j for both j, has the product of the slabs' exact laws as probability
    torch.set_num_threads(1)
    w = fs.problems.logistic.random_weights(16, seed=5)
    wa, wb = w.clone(), w.clone()
    wa[8:], wb[:8] = 0.0, 0.0
    z = 1 / (1 + math.exp(-1.5))
    a, b = fs.LogisticHalfspace(wa, None, z), fs.LogisticHalfspace(wb, None, z)
    worst = 0.0
    for seed in range(3):
        s = fs.sample(fs.Intersection([a, b]), n=300, seed=seed, progress=False, options={"rejection_rate": None})
        rows = s.rarity
        assert len(rows) >= 10 and rows[-1].threshold == 0.0
        scale = s.stats["smc_scale"]
        for r in rows:
            assert r.threshold == r.level  # several constraints: the level of the scaled distance
            assert r.lo == pytest.approx((a.bands.lo[0] - r.level * scale[0], b.bands.lo[0] - r.level * scale[1]))
            exact = _exact_log_prob(a, r.lo[0], math.inf) + _exact_log_prob(b, r.lo[1], math.inf)
            worst = max(worst, abs(r.log_prob - exact) / r.log_prob_se)
    assert worst <= 4.0, worst
