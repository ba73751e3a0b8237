"""Tests of the exact slab ground truth (``feassample.problems.slab_truth``).

Every check compares against something that does not come from the code under test: closed
forms derived by hand, Monte Carlo / plain rejection from the cube, or saddlepoint
approximations (Lugannani-Rice, Daniels) implemented independently below.
"""
import math

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats

from feassample.problems.slab_truth import SlabLaw

P_MIN = 1e-3  # KS p-value threshold


# ----------------------------------------------------------------------------- helpers
def std_weights(d: int, seed: int) -> np.ndarray:
    """``w ~ N(0, 1)`` scaled so that ``std(w.U) = 1`` for ``U`` uniform on the cube."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=torch.float64).numpy()
    return w / math.sqrt(float(np.sum(w * w)) / 12.0)


def plain_rejection(w, a, b, n, seed, batch=200_000):
    """Uniform samples on the slab by plain rejection from the cube, ``(n, d)`` float64."""
    w = torch.as_tensor(np.asarray(w, dtype=np.float64))
    g = torch.Generator().manual_seed(seed)
    out, got = [], 0
    while got < n:
        u = torch.rand(batch, w.numel(), generator=g, dtype=torch.float64)
        t = u @ w
        k = u[(t >= a) & (t <= b)]
        out.append(k)
        got += k.shape[0]
    return torch.cat(out)[:n]


def mc_cube_t(w, n, seed, chunk=250_000):
    """``t = w.U`` for ``n`` uniform draws on the cube (numpy, ``(n,)``)."""
    w = torch.as_tensor(np.asarray(w, dtype=np.float64))
    g = torch.Generator().manual_seed(seed)
    parts = []
    for s in range(0, n, chunk):
        u = torch.rand(min(chunk, n - s), w.numel(), generator=g, dtype=torch.float64)
        parts.append((u @ w).numpy())
    return np.concatenate(parts)


def cumulants(theta: float, w: np.ndarray):
    """``K, K', K''`` of ``t = w.U`` at ``theta`` (independent, plain formulas)."""
    lam = theta * w
    small = np.abs(lam) < 1e-3
    ls = np.where(small, 1.0, lam)
    K = np.where(small, lam / 2 + lam ** 2 / 24, np.log(np.abs(np.expm1(ls) / ls)))
    m = np.where(small, 0.5 + lam / 12, 1 / (-np.expm1(-ls)) - 1 / ls)
    v = np.where(small, 1 / 12 - lam ** 2 / 240, 1 / ls ** 2 - 1 / (4 * np.sinh(ls / 2) ** 2))
    return float(K.sum()), float((w * m).sum()), float((w * w * v).sum())


def saddle(w, x):
    th = optimize.brentq(lambda t: cumulants(t, w)[1] - x, -300.0, 300.0, xtol=1e-14)
    K, _, K2 = cumulants(th, w)
    return th, K, K2


def lugannani_rice_sf(w, x):
    """Lugannani-Rice approximation of ``P(w.U >= x)`` (x above the mean)."""
    th, K, K2 = saddle(w, x)
    r = math.copysign(math.sqrt(2 * (th * x - K)), th)
    u = th * math.sqrt(K2)
    return special.ndtr(-r) + math.exp(-r * r / 2) / math.sqrt(2 * math.pi) * (1 / u - 1 / r)


def daniels_density(w, x):
    """Daniels saddlepoint approximation of the density of ``w.U`` at ``x``."""
    th, K, K2 = saddle(w, x)
    return math.exp(K - th * x) / math.sqrt(2 * math.pi * K2)


def ks_t(law: SlabLaw, x: torch.Tensor) -> float:
    t = (x.to(torch.float64) @ torch.as_tensor(law.w)).numpy()
    return stats.kstest(t, law.cdf).pvalue


# ----------------------------------------------------------------------------- cube_cdf
def test_cube_cdf_d1_uniform_and_zero_weights():
    law = SlabLaw([0.0, 2.5, 0.0], -1.0, 1.0)
    s = np.array([-1.0, 0.0, 0.5, 1.0, 2.5, 3.0])
    np.testing.assert_allclose(law.cube_cdf(s), np.clip(s / 2.5, 0, 1), atol=1e-14)
    neg = SlabLaw([-1.5], -1.0, 1.0)  # t = -1.5 U is uniform on [-1.5, 0]
    s = np.array([-2.0, -1.5, -1.0, -0.3, 0.0, 0.1])
    np.testing.assert_allclose(neg.cube_cdf(s), np.clip((s + 1.5) / 1.5, 0, 1), atol=1e-14)
    assert np.asarray(neg.cube_cdf(-0.75)).shape == ()


def trapezoid_cdf(y, c1, c2):
    """CDF of ``c1 U1 + c2 U2`` (``c1 >= c2 > 0``) at ``y``, derived by hand."""
    y = np.asarray(y, dtype=float)
    out = np.where(y <= 0, 0.0, 1.0)
    r1 = (y > 0) & (y <= c2)
    out = np.where(r1, y ** 2 / (2 * c1 * c2), out)
    r2 = (y > c2) & (y <= c1)
    out = np.where(r2, (y - c2 / 2) / c1, out)
    r3 = (y > c1) & (y < c1 + c2)
    out = np.where(r3, 1 - (c1 + c2 - y) ** 2 / (2 * c1 * c2), out)
    return out


@pytest.mark.parametrize("method", ["inclusion_exclusion", "cf"])
def test_cube_cdf_d2_closed_forms(method):
    # triangular: U1 + U2
    law = SlabLaw([1.0, 1.0], 0.2, 0.7)
    s = np.linspace(-0.5, 2.5, 61)
    tri = np.where(s <= 1, np.clip(s, 0, None) ** 2 / 2, 1 - np.clip(2 - s, 0, None) ** 2 / 2)
    np.testing.assert_allclose(law.cube_cdf(s, method=method), tri, atol=1e-9)
    # trapezoid with unequal weights and a negative one: t = 1.5 U1 - 0.5 U2 = y - 0.5
    law = SlabLaw([1.5, -0.5], -0.2, 0.4)
    s = np.linspace(-1.0, 1.5, 101)
    np.testing.assert_allclose(law.cube_cdf(s, method=method),
                               trapezoid_cdf(s + 0.5, 1.5, 0.5), atol=1e-9)
    # the negative weight first, with a zero weight in between
    law = SlabLaw([-0.5, 0.0, 1.5], -0.2, 0.4)
    np.testing.assert_allclose(law.cube_cdf(s, method=method),
                               trapezoid_cdf(s + 0.5, 1.5, 0.5), atol=1e-9)


@pytest.mark.parametrize("d", [3, 6, 10])
def test_cube_cdf_inclusion_exclusion_vs_cf(d):
    rng = np.random.default_rng(100 + d)
    w = rng.normal(size=d) * np.where(rng.random(d) < 0.5, -1.0, 1.0)
    law = SlabLaw(w, -0.1, 0.1)
    s = np.linspace(law.t_min - 0.05, law.t_max + 0.05, 57)
    ie = law.cube_cdf(s, method="inclusion_exclusion")
    cf = law.cube_cdf(s, method="cf")
    np.testing.assert_allclose(ie, cf, atol=1e-7)
    assert np.all(np.diff(ie) >= -1e-12) and ie[0] == 0.0 and ie[-1] == 1.0


@pytest.mark.parametrize("d,methods", [(6, ("inclusion_exclusion", "cf")),
                                       (10, ("inclusion_exclusion", "cf")),
                                       (20, ("cf",))])
def test_cube_cdf_monte_carlo(d, methods):
    rng = np.random.default_rng(7 + d)
    w = rng.normal(size=d)
    n = 1_000_000
    t = mc_cube_t(w, n, seed=d)
    s = np.quantile(t, [0.001, 0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 0.999])
    emp = np.array([np.mean(t <= x) for x in s])
    law = SlabLaw(w, -0.1, 0.1)
    for method in methods:
        F = law.cube_cdf(s, method=method)
        se = np.sqrt(F * (1 - F) / n)
        assert np.all(np.abs(F - emp) <= 5 * se + 1e-7), (method, F - emp, se)


# ----------------------------------------------------------------------------- law on S
@pytest.mark.parametrize("d,lo,hi", [(8, -0.4, 0.9), (40, 0.3, 1.5), (40, -math.inf, -0.8)])
def test_cdf_on_slab_vs_cube_rejection(d, lo, hi):
    w = std_weights(d, seed=d)
    mu = w.sum() / 2
    a, b = mu + lo, mu + hi
    n = 400_000
    t = mc_cube_t(w, n, seed=1000 + d)
    inside = (t >= a) & (t <= b)
    law = SlabLaw(w, a, b)
    # volume against the Monte Carlo fraction
    frac = inside.mean()
    vol = law.volume()
    assert abs(vol - frac) <= 5 * math.sqrt(vol * (1 - vol) / n)
    assert law.log_volume() == pytest.approx(math.log(vol))
    # law of t on S against the empirical law of the accepted draws
    assert stats.kstest(t[inside][:20_000], law.cdf).pvalue > P_MIN
    s = np.linspace(max(a, law.t_min) - 0.1, min(b, law.t_max) + 0.1, 41)
    c = law.cdf(s)
    assert np.all(np.diff(c) >= -1e-12) and c[0] == 0.0 and c[-1] == 1.0
    # pdf integrates to the cdf
    grid = np.linspace(max(a, mu - 8), min(b, mu + 8), 4001)
    cum = np.concatenate([[0.0], np.cumsum((law.pdf(grid)[1:] + law.pdf(grid)[:-1]) / 2
                                           * np.diff(grid))])
    np.testing.assert_allclose(cum, law.cdf(grid) - law.cdf(grid[0]), atol=1e-5)


@pytest.mark.parametrize("band", [(2.5, 3.0), (2.0, 2.001), (-3.5, -3.49), (2.2, math.inf)])
def test_law_inclusion_exclusion_vs_tilted_cf(band):
    # two independent routes to the law on a tail / thin slab: exact rational inclusion-
    # exclusion and tilted characteristic-function inversion
    rng = np.random.default_rng(11)
    w = rng.normal(size=10) * (-1.0) ** np.arange(10)
    sd = math.sqrt(np.sum(w * w) / 12)
    mu = w.sum() / 2
    law = SlabLaw(w, mu + band[0] * sd, mu + band[1] * sd)
    lv_ie = law.log_volume(method="inclusion_exclusion")
    lv_cf = law.log_volume(method="cf")
    assert lv_ie == pytest.approx(lv_cf, abs=1e-9)
    s = np.linspace(law.a_eff, law.b_eff, 31)
    np.testing.assert_allclose(law.cdf(s, method="cf"), law.cdf(s, method="inclusion_exclusion"),
                               atol=1e-10)
    p_ie = law.pdf(s, method="inclusion_exclusion")
    np.testing.assert_allclose(law.pdf(s, method="cf"), p_ie, atol=1e-9 * p_ie.max())


def test_deep_tail_d784_log_volume_and_cdf_vs_saddlepoint():
    w = std_weights(784, seed=0)
    mu = w.sum() / 2
    a, b = mu + 8.0, mu + 10.0
    law = SlabLaw(w, a, b)
    lv = law.log_volume()
    assert math.isfinite(lv) and lv < -30
    qa, qb = lugannani_rice_sf(w, a), lugannani_rice_sf(w, b)
    lr = math.log(qa - qb)
    assert abs(lv - lr) <= 0.01 * abs(lr)   # "a few percent in log terms"
    assert abs(lv - lr) <= 5e-3             # in fact much closer
    s = np.linspace(a, b, 201)
    c = law.cdf(s)
    assert c[0] == 0.0 and c[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(c) >= -1e-14)
    inner = s[1:-1:20]
    lr_cdf = np.array([(qa - lugannani_rice_sf(w, x)) / (qa - qb) for x in inner])
    np.testing.assert_allclose(law.cdf(inner), lr_cdf, atol=1e-4)
    # a thin slab deep in the tail: log volume against the Daniels density times the width
    thin = SlabLaw(w, a, a + 1e-2)
    approx = math.log(daniels_density(w, a + 5e-3) * 1e-2)
    assert abs(thin.log_volume() - approx) <= 5e-3
    assert thin.pdf(a + 5e-3) == pytest.approx(daniels_density(w, a + 5e-3)
                                               / thin.volume(), rel=5e-3)
    # lower tail through the same machinery (flipped orientation)
    low = SlabLaw(w, -math.inf, mu - 9.0)
    lr_low = math.log(lugannani_rice_sf(-w, -mu + 9.0))
    assert abs(low.log_volume() - lr_low) <= 5e-3


# ----------------------------------------------------------------------------- sampling
def test_sample_d2_slab_through_square():
    w, a, b = [0.7, -1.3], -0.4, 0.1
    law = SlabLaw(w, a, b)
    g = torch.Generator().manual_seed(1)
    x = law.sample(5000, generator=g)
    assert x.shape == (5000, 2) and x.dtype == torch.float64
    assert bool(law.membership(x).all())
    y = plain_rejection(w, a, b, 5000, seed=2)
    for i in range(2):
        assert stats.ks_2samp(x[:, i].numpy(), y[:, i].numpy()).pvalue > P_MIN
    wt = torch.tensor(w, dtype=torch.float64)
    assert stats.ks_2samp((x @ wt).numpy(), (y @ wt).numpy()).pvalue > P_MIN
    assert ks_t(law, x) > P_MIN
    # near a corner of the square (tilted proposal)
    law = SlabLaw(w, -1.3, -1.1)
    x = law.sample(4000, generator=g)
    y = plain_rejection(w, -1.3, -1.1, 4000, seed=3)
    assert bool(law.membership(x).all())
    for i in range(2):
        assert stats.ks_2samp(x[:, i].numpy(), y[:, i].numpy()).pvalue > P_MIN
    assert ks_t(law, x) > P_MIN


def test_sample_d3_thin_band_vs_plain_rejection():
    w, a, b = [1.0, 0.5, -0.8], 0.30, 0.32
    law = SlabLaw(w, a, b)
    x = law.sample(4000, generator=torch.Generator().manual_seed(4))
    y = plain_rejection(w, a, b, 4000, seed=5)
    assert bool(law.membership(x).all())
    for i in range(3):
        assert stats.ks_2samp(x[:, i].numpy(), y[:, i].numpy()).pvalue > P_MIN
    assert ks_t(law, x) > P_MIN


@pytest.mark.parametrize("lo,hi", [(-0.3, 0.5), (0.5, 0.55)])
def test_sample_d64_vs_plain_rejection(lo, hi):
    w = std_weights(64, seed=3)
    mu = w.sum() / 2
    a, b = mu + lo, mu + hi
    law = SlabLaw(w, a, b)
    n = 4000
    x = law.sample(n, generator=torch.Generator().manual_seed(6))
    assert x.shape == (n, 64)
    assert bool(law.membership(x).all())
    assert ks_t(law, x) > P_MIN
    y = plain_rejection(w, a, b, n, seed=7)
    j = int(np.argmax(np.abs(w)))
    for i in sorted({0, 1, 2, j, int(np.argmin(np.abs(w)))}):
        assert stats.ks_2samp(x[:, i].numpy(), y[:, i].numpy()).pvalue > P_MIN, i


def saddlepoint_marginal_cdf(w, i, a, b, thin):
    """CDF of ``x_i`` under the uniform law on the slab, from the law of
    ``tau = t - w_i x_i`` (an independent saddlepoint computation):
    ``P(x_i in dv) ∝ P(a - w_i v <= tau <= b - w_i v) dv``."""
    wi, rest = w[i], np.delete(w, i)
    v = np.linspace(0.0, 1.0, 161)
    if thin:   # Daniels density times the width
        g = np.array([daniels_density(rest, (a + b) / 2 - wi * x) for x in v]) * (b - a)
    else:      # difference of Lugannani-Rice tails
        g = np.array([lugannani_rice_sf(rest, a - wi * x) - lugannani_rice_sf(rest, b - wi * x)
                      for x in v])
    c = np.concatenate([[0.0], np.cumsum((g[1:] + g[:-1]) / 2 * np.diff(v))])
    c /= c[-1]
    return lambda u: np.interp(u, v, c)


def test_sample_d784_thin_band():
    w = std_weights(784, seed=0)
    mu = w.sum() / 2
    law = SlabLaw(w, mu + 0.5, mu + 0.51)     # width 1e-2 std(t)
    x = law.sample(3000, generator=torch.Generator().manual_seed(8))
    assert x.shape == (3000, 784)
    assert bool(law.membership(x).all())
    assert ks_t(law, x) > P_MIN
    assert law.last_acceptance > 0.05


@pytest.mark.parametrize("lo,hi,thin", [(8.0, 10.0, False), (8.0, 8.01, True)])
def test_sample_d784_deep_tail(lo, hi, thin):
    w = std_weights(784, seed=0)
    mu = w.sum() / 2
    a, b = mu + lo, mu + hi
    law = SlabLaw(w, a, b)
    x = law.sample(3000, generator=torch.Generator().manual_seed(9))
    assert bool(law.membership(x).all())
    assert ks_t(law, x) > P_MIN
    assert law.last_acceptance > 0.03
    # marginals of the two coordinates with the largest |w_i| against saddlepoint truths
    for i in np.argsort(-np.abs(w))[:2]:
        F = saddlepoint_marginal_cdf(w, int(i), a, b, thin)
        assert stats.kstest(x[:, i].numpy(), F).pvalue > P_MIN, int(i)


@pytest.mark.parametrize("d,lo,hi", [(3, None, None), (64, 0.5, 0.55), (64, 3.0, 3.05),
                                     (64, -math.inf, -2.5)])
def test_sample_acceptance_matches_exact_value(d, lo, hi):
    # the sampler accepts with probability vol / (M_{-j}(theta) B) exactly when B bounds
    # L(tau) exp(-theta tau); a wrong bound or a missing rejection step shows up here
    if d == 3:
        w, a, b = np.array([1.0, 0.5, -0.8]), 0.30, 0.32
    else:
        w = std_weights(d, seed=3)
        a, b = w.sum() / 2 + lo, w.sum() / 2 + hi
    law = SlabLaw(w, a, b)
    n = 20_000
    x = law.sample(n, generator=torch.Generator().manual_seed(12))
    assert bool(law.membership(x).all())
    pexp = law.expected_acceptance()
    proposals = n / law.last_acceptance
    assert abs(law.last_acceptance - pexp) <= 5 * math.sqrt(pexp * (1 - pexp) / proposals)


def test_sample_reproducible_and_dtype():
    w = std_weights(32, seed=1)
    law = SlabLaw(w, w.sum() / 2 + 1.0, math.inf)
    x1 = law.sample(500, generator=torch.Generator().manual_seed(123))
    x2 = law.sample(500, generator=torch.Generator().manual_seed(123))
    x3 = law.sample(500, generator=torch.Generator().manual_seed(124))
    assert torch.equal(x1, x2)
    assert not torch.equal(x1, x3)
    assert law.last_acceptance is not None and 0 < law.last_acceptance <= 1
    x4 = law.sample(500, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    assert x4.dtype == torch.float32 and x4.shape == (500, 32)
    assert bool(law.membership(x4).all())
    assert law.sample(0).shape == (0, 32)


def test_errors_for_empty_or_null_slabs():
    w = [1.0, -2.0, 0.5]           # w.x ranges over [-2, 1.5]
    with pytest.raises(ValueError, match="empty"):
        SlabLaw(w, 1.6, 3.0)
    with pytest.raises(ValueError, match="empty"):
        SlabLaw(w, -5.0, -2.1)
    with pytest.raises(ValueError, match="zero volume"):
        SlabLaw(w, 0.3, 0.3)
    with pytest.raises(ValueError, match="zero volume"):
        SlabLaw(w, 1.5, math.inf)
    with pytest.raises(ValueError, match="empty"):
        SlabLaw(w, 0.5, 0.2)
    with pytest.raises(ValueError, match="empty"):
        SlabLaw([0.0, 0.0], 0.5, 1.0)
    with pytest.raises(ValueError):
        SlabLaw(w, math.nan, 1.0)
    whole = SlabLaw([0.0, 0.0], -1.0, 1.0)    # the whole cube
    assert whole.volume() == 1.0
    assert whole.sample(10, generator=torch.Generator().manual_seed(0)).shape == (10, 2)


def test_membership_box_and_band():
    law = SlabLaw(torch.tensor([1.0, -2.0, 0.5]), -0.5, 0.25)
    x = torch.tensor([[0.5, 0.25, 0.0],     # t = 0      in
                      [0.25, 0.0, 0.0],     # t = 0.25   in (edge)
                      [0.5, 0.5, 0.0],      # t = -0.5   in (edge)
                      [0.5, 0.0, 0.5],      # t = 0.75   out (band)
                      [1.2, 0.5, 0.0],      # box out
                      [-0.1, 0.0, 0.0]])    # box out
    assert law.membership(x).tolist() == [True, True, True, False, False, False]
    assert law.membership(x[None]).shape == (1, 6)
    assert law.w.dtype == np.float64 and law.d == 3 and law.a == -0.5 and law.b == 0.25
