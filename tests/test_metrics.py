"""Tests for feassample.metrics.

Reference values come from hand computation, brute-force loops written here,
closed forms, or scipy -- never from the functions under test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from feassample import metrics as M


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unif(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=_gen(seed), dtype=torch.float64)


def _brute_nn(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Nearest-neighbour distances by an explicit double loop."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(len(x))
    for i in range(len(x)):
        best = math.inf
        cand = x if y is None else np.asarray(y, dtype=np.float64)
        for j in range(len(cand)):
            if y is None and j == i:
                continue
            dist = math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i], cand[j])))
            best = min(best, dist)
        out[i] = best
    return out


def _brute_energy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased energy distance by explicit loops (U-statistics within samples)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    n, m = len(x), len(y)
    exy = sum(np.linalg.norm(a - b) for a in x for b in y) / (n * m)
    exx = sum(np.linalg.norm(x[i] - x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    eyy = sum(np.linalg.norm(y[i] - y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return 2 * exy - exx - eyy


# --------------------------------------------------------------------------- #
# nn_distances
# --------------------------------------------------------------------------- #
def test_nn_distances_line_hand_case():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    out = M.nn_distances(x)
    assert out.dtype == torch.float64
    assert out.shape == (3,)
    np.testing.assert_allclose(out.numpy(), [1.0, 1.0, 2.0], atol=1e-12)


def test_nn_distances_to_other_set_hand_case():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    y = np.array([[0.0, 1.0], [6.0, 8.0], [3.0, 5.5]])
    np.testing.assert_allclose(M.nn_distances(x, y).numpy(), [1.0, 1.5], atol=1e-12)


def test_nn_distances_duplicate_counts_as_zero_but_self_is_excluded():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(M.nn_distances(x).numpy(), [0.0, 0.0, 2.0], atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_nn_distances_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(9, 3))
    y = rng.normal(size=(6, 3))
    np.testing.assert_allclose(M.nn_distances(x).numpy(), _brute_nn(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(M.nn_distances(torch.from_numpy(x), torch.from_numpy(y)).numpy(),
                               _brute_nn(x, y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_nn_distances_chunking_matches_one_block_and_brute_force(chunk):
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(23, 4))
    y = rng.uniform(size=(11, 4))
    full_self = M.nn_distances(x, chunk_size=10_000).numpy()
    full_other = M.nn_distances(x, y, chunk_size=10_000).numpy()
    np.testing.assert_allclose(M.nn_distances(x, chunk_size=chunk).numpy(), full_self, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(M.nn_distances(x, y, chunk_size=chunk).numpy(), full_other, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(full_self, _brute_nn(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(full_other, _brute_nn(x, y), rtol=1e-10, atol=1e-12)


def test_nn_distances_rejects_single_point_without_y():
    with pytest.raises(ValueError):
        M.nn_distances(torch.zeros(1, 2))


# --------------------------------------------------------------------------- #
# mean pairwise distance / diversity
# --------------------------------------------------------------------------- #
def test_mean_pairwise_unit_square_corners():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert M.mean_pairwise_distance(x) == pytest.approx((4 * 1 + 2 * math.sqrt(2)) / 6, rel=1e-12)


def test_mean_pairwise_line_and_chunking():
    assert M.mean_pairwise_distance(np.array([0.0, 1.0, 3.0])) == pytest.approx(2.0, rel=1e-12)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(17, 5))
    brute = np.mean([np.linalg.norm(x[i] - x[j]) for i, j in itertools.permutations(range(17), 2)])
    for chunk in (1, 4, 100):
        assert M.mean_pairwise_distance(x, chunk_size=chunk) == pytest.approx(brute, rel=1e-10)


def test_diversity_hand_case():
    d = M.diversity(torch.tensor([[0.0], [1.0], [3.0]]))
    assert set(d) == {"mean_pairwise", "mean_nn", "min_nn"}
    assert d["mean_pairwise"] == pytest.approx(2.0, rel=1e-12)
    assert d["mean_nn"] == pytest.approx(4.0 / 3.0, rel=1e-12)
    assert d["min_nn"] == pytest.approx(1.0, rel=1e-12)


# --------------------------------------------------------------------------- #
# energy distance
# --------------------------------------------------------------------------- #
def test_energy_distance_point_masses():
    x = torch.full((5, 2), 0.0)
    y = torch.tensor([[3.0, 4.0]]).repeat(7, 1)
    assert M.energy_distance(x, y) == pytest.approx(2 * 5.0, rel=1e-12)
    # 1-D point masses at 1 and -2.5
    assert M.energy_distance(np.full(4, 1.0), np.full(3, -2.5)) == pytest.approx(7.0, rel=1e-12)


def test_energy_distance_uses_u_statistics_hand_case():
    # x = {0,0,1,1}, y = {0,0,0}:  E|X-Y| = 1/2, E|X-X'| over i!=j = 8/12, E|Y-Y'| = 0
    # -> 2*(1/2) - 2/3 - 0 = 1/3  (a V-statistic would give 1 - 1/2 = 1/2)
    x = np.array([0.0, 0.0, 1.0, 1.0])
    y = np.zeros(3)
    assert M.energy_distance(x, y) == pytest.approx(1.0 / 3.0, rel=1e-12)


@pytest.mark.parametrize("chunk", [None, 2, 5])
def test_energy_distance_matches_brute_force(chunk):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(12, 3))
    y = rng.normal(size=(9, 3)) + 0.3
    assert M.energy_distance(x, y, chunk_size=chunk) == pytest.approx(_brute_energy(x, y), rel=1e-10)


def test_energy_distance_zero_in_expectation_for_same_law():
    vals = np.array([M.energy_distance(_unif(200, 3, 2 * s), _unif(200, 3, 2 * s + 1)) for s in range(30)])
    se = vals.std(ddof=1) / math.sqrt(len(vals))
    assert vals.std(ddof=1) > 0
    # A biased (V-statistic) estimator would sit at ~ +2*E|X-X'|/n ~ +0.0066 here (~15 se).
    assert abs(vals.mean()) < 4 * se
    # and single values are both signs: it is not a squared/clipped quantity
    assert (vals < 0).any() and (vals > 0).any()


def test_energy_distance_shifted_normals_closed_form():
    mu = 1.0

    def e_abs_normal(m: float, var: float) -> float:
        s = math.sqrt(var)
        return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * var)) + m * (1 - 2 * stats.norm.cdf(-m / s))

    # E|N(m, 2)| = 2 sqrt(1/pi) exp(-m^2/4) + m (1 - 2 Phi(-m/sqrt 2))
    assert e_abs_normal(mu, 2.0) == pytest.approx(
        2 * math.sqrt(1 / math.pi) * math.exp(-(mu**2) / 4) + mu * (1 - 2 * stats.norm.cdf(-mu / math.sqrt(2)))
    )
    truth = 2 * e_abs_normal(mu, 2.0) - 2 * e_abs_normal(0.0, 2.0)  # ~0.5418
    vals = []
    for s in range(8):
        g = _gen(100 + s)
        x = torch.randn(2000, generator=g, dtype=torch.float64)
        y = torch.randn(2000, generator=g, dtype=torch.float64) + mu
        vals.append(M.energy_distance(x, y))
    vals = np.array(vals)
    assert (vals > 0).all()
    # per-estimate sd ~0.03 at n=2000 -> se of the mean ~0.011
    assert vals.mean() == pytest.approx(truth, abs=0.05)


def test_energy_distance_null_hand_case_and_stacked_input():
    # 1-D point-mass draws at 0, 1, 3: pair energies 2*1, 2*3, 2*2 -> mean 4, sd(ddof=1) 2
    draws = [np.zeros(2), np.ones(2), np.full(2, 3.0)]
    mean, std = M.energy_distance_null(draws)
    assert mean == pytest.approx(4.0, rel=1e-12)
    assert std == pytest.approx(2.0, rel=1e-12)
    stacked = torch.tensor([[[0.0], [0.0]], [[1.0], [1.0]], [[3.0], [3.0]]])
    assert M.energy_distance_null(stacked) == pytest.approx((4.0, 2.0), rel=1e-12)


def test_energy_distance_null_uniform_draws_centered():
    draws = torch.rand(8, 150, 2, generator=_gen(7), dtype=torch.float64)
    mean, std = M.energy_distance_null(draws)
    assert std > 0
    assert abs(mean) < 2 * std


# --------------------------------------------------------------------------- #
# KS
# --------------------------------------------------------------------------- #
def test_ks_pvalue_uniform_and_shifted():
    u = torch.rand(1000, generator=_gen(0), dtype=torch.float64)
    cdf = stats.uniform.cdf
    assert M.ks_pvalue(u, cdf) > 0.05
    assert M.ks_pvalue(u.numpy(), lambda t: np.clip(t, 0.0, 1.0)) > 0.05
    assert M.ks_pvalue(np.clip(u.numpy() + 0.15, 0, 1), cdf) < 1e-8
    # agrees with scipy directly
    assert M.ks_pvalue(u, cdf) == pytest.approx(stats.kstest(u.numpy(), "uniform").pvalue, rel=1e-12)


# --------------------------------------------------------------------------- #
# boundary bias
# --------------------------------------------------------------------------- #
def test_boundary_bias_z_hand_case():
    # reference stats mean|r-0.5| = 0.1, 0.2, 0.3 -> mean 0.2, sd 0.1; x stat 0.4 -> z = 2
    refs = [np.full((3, 2), 0.4), np.full((3, 2), 0.7), np.full((3, 2), 0.2)]
    x = np.full((3, 2), 0.9)
    assert M.boundary_bias_z(x, refs) == pytest.approx(2.0, rel=1e-10)
    assert M.boundary_bias_z(x, torch.tensor(np.stack(refs))) == pytest.approx(2.0, rel=1e-10)


def test_boundary_bias_z_uniform_corners_center():
    n, d = 200, 3
    refs = torch.rand(30, n, d, generator=_gen(1), dtype=torch.float64)
    zs = np.array([M.boundary_bias_z(_unif(n, d, 1000 + s), refs) for s in range(20)])
    assert abs(zs.mean()) < 1.0
    corners = (torch.rand(n, d, generator=_gen(2)) < 0.5).double()  # entries in {0, 1}
    assert M.boundary_bias_z(corners, refs) > 5.0
    centre = torch.full((n, d), 0.5, dtype=torch.float64)
    assert M.boundary_bias_z(centre, refs) < -5.0


# --------------------------------------------------------------------------- #
# fill / nn ratios
# --------------------------------------------------------------------------- #
def test_fill_distance_hand_case():
    x = np.array([[0.0], [1.0]])
    probes = np.array([[0.25], [0.5], [2.0]])
    assert M.fill_distance(x, probes) == pytest.approx((0.25 + 0.5 + 1.0) / 3, rel=1e-12)


def test_fill_ratio_uniform_vs_clustered():
    n, d = 500, 2
    ref = _unif(n, d, 10)
    probes = _unif(2000, d, 11)
    assert M.fill_ratio(_unif(n, d, 12), ref, probes) == pytest.approx(1.0, abs=0.15)
    corner = 0.2 * _unif(n, d, 13)
    assert M.fill_ratio(corner, ref, probes) > 3.0


def test_nn_ratio_uniform_vs_clustered():
    n, d = 500, 2
    ref = _unif(n, d, 20)
    assert M.nn_ratio(_unif(n, d, 21), ref) == pytest.approx(1.0, abs=0.15)
    assert M.nn_ratio(0.1 * _unif(n, d, 22), ref) < 0.5


# --------------------------------------------------------------------------- #
# coverage report
# --------------------------------------------------------------------------- #
def test_coverage_report_bundles_metrics():
    n, d = 120, 2
    x = _unif(n, d, 30)
    ref = _unif(n, d, 31)
    probes = _unif(300, d, 32)
    draws = [_unif(n, d, 40 + k) for k in range(5)]
    t = x[:, 0]
    rep = M.coverage_report(x, ref, probes, draws, t=t, t_cdf=stats.uniform.cdf)
    expected_keys = {"ks_p", "boundary_z", "nn_ratio", "fill_ratio", "energy",
                     "energy_null_mean", "energy_null_std", "energy_ratio", "energy_z"}
    assert set(rep) == expected_keys
    assert rep["ks_p"] == pytest.approx(stats.kstest(t.numpy(), "uniform").pvalue, rel=1e-12)
    assert rep["energy"] == pytest.approx(_brute_energy(x.numpy(), ref.numpy()), rel=1e-9)
    assert rep["energy_ratio"] == pytest.approx(rep["energy"] / rep["energy_null_mean"], rel=1e-12)
    assert rep["energy_z"] == pytest.approx(
        (rep["energy"] - rep["energy_null_mean"]) / rep["energy_null_std"], rel=1e-12)
    assert rep["nn_ratio"] == pytest.approx(M.nn_ratio(x, ref))
    assert rep["fill_ratio"] == pytest.approx(M.fill_ratio(x, ref, probes))

    rep2 = M.coverage_report(x, ref, probes, draws)
    assert "ks_p" not in rep2


def test_coverage_report_box_centre_used_for_boundary():
    # shifting everything (sample, references) by +2 with box (2, 3) must not change boundary_z
    n, d = 100, 2
    x = _unif(n, d, 50) ** 2  # piled towards the lower faces
    ref = _unif(n, d, 51)
    probes = _unif(200, d, 52)
    draws = [_unif(n, d, 60 + k) for k in range(6)]
    a = M.coverage_report(x, ref, probes, draws)["boundary_z"]
    b = M.coverage_report(x + 2, ref + 2, probes + 2, [r + 2 for r in draws], box=(2.0, 3.0))["boundary_z"]
    assert b == pytest.approx(a, rel=1e-9)
