"""The core engine against truths that do not come from it: closed forms, scipy, brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import feassample as fs
from feassample.core import Bands, CodeObjective, SumSquaredDistances
from feassample.core.diversity import PoolStats, pairwise_sum_naive
from feassample.core.lagrangian import (penalty_terms, residuals, side_masks,
                                        update_multipliers)


# -- bands --------------------------------------------------------------------------------------
def test_bands_enforce_both_sides_and_tolerance():
    b = Bands.of([0.0, 1.0], [1.0, math.inf])
    v = torch.tensor([[0.5, 2.0], [1.5, 2.0], [-0.1, 5.0], [0.5, 0.9]])
    assert b.feasible(v).tolist() == [True, False, False, False]
    assert torch.allclose(b.violation(v), torch.tensor([[0, 0], [0.5, 0], [0.1, 0], [0, 0.1]]))
    assert b.feasible(torch.tensor([[float("nan"), 2.0]])).tolist() == [False]


def test_bands_shrink_keeps_the_middle_fraction():
    b = Bands.of(2.0, 6.0).shrink(0.5)
    assert (b.lo, b.hi) == ((3.0,), (5.0,))
    one_sided = Bands.of(1.0, math.inf).shrink(0.5)
    assert (one_sided.lo, one_sided.hi) == ((1.0,), (math.inf,))


@pytest.mark.parametrize("lo,hi,tol,match", [
    (2.0, 1.0, 0.0, "empty"),
    (float("nan"), 1.0, 0.0, "NaN"),
    (1.0, 1.0, 0.0, "equality"),
    (math.inf, math.inf, 0.0, "admits nothing"),
])
def test_bands_refuse_bad_ends(lo, hi, tol, match):
    with pytest.raises(ValueError, match=match):
        Bands.of(lo, hi, tol=tol)


# -- diversity ----------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 7), p=st.integers(0, 9), dim=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_sum_squared_from_pool_sums_equals_the_double_sum(b, p, dim, seed):
    g = torch.Generator().manual_seed(seed)
    batch = torch.randn(b, dim, generator=g, dtype=torch.float64) * 3
    pool = torch.randn(p, dim, generator=g, dtype=torch.float64) + 1
    stats = PoolStats.of(pool) if p else None
    fast = SumSquaredDistances(normalize=False).value(batch, stats)
    naive = pairwise_sum_naive(batch, pool if p else None)
    assert torch.allclose(fast, naive, rtol=1e-9, atol=1e-9)
    normalized = SumSquaredDistances(normalize=True).value(batch, stats)
    assert torch.allclose(normalized, naive / (b * b + b * p), rtol=1e-9, atol=1e-9)


def test_pool_stats_add_matches_stats_of_concatenation():
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    s1, s2 = PoolStats.of(a).add(b), PoolStats.of(torch.cat([a, b]))
    assert torch.allclose(s1.total, s2.total) and torch.allclose(s1.sq_norms, s2.sq_norms)
    assert float(s1.count) == 9


# -- augmented Lagrangian -----------------------------------------------------------------------
def test_psi_is_the_slack_minimized_augmented_lagrangian():
    """eq. 17.65 equals min over s >= 0 of -lam (c - s) + rho/2 (c - s)^2, found by brute force."""
    bands = Bands.of(0.0, math.inf)
    masks = side_masks(bands, torch.zeros(1))
    s_grid = torch.linspace(0, 10, 200001, dtype=torch.float64)
    for c0, lam, rho in [(0.3, 0.0, 10.0), (-0.2, 1.0, 10.0), (2.0, 5.0, 3.0), (0.05, 4.0, 100.0)]:
        values = torch.tensor([[c0]], dtype=torch.float64)
        lo, hi = bands.tensors(values)
        c = residuals(values, lo, hi, masks)
        mult = torch.zeros(1, 1, 2, dtype=torch.float64)
        mult[0, 0, 0] = lam
        psi = penalty_terms(c, mult, torch.tensor([rho], dtype=torch.float64), masks)
        brute = (-lam * (c0 - s_grid) + rho / 2 * (c0 - s_grid) ** 2).min()
        assert abs(float(psi) - float(brute)) < 1e-6


def test_multiplier_update_is_clipped_for_inequalities_only():
    bands = Bands.of([0.0, 1.0], [math.inf, 1.0], tol=1e-3)
    values = torch.tensor([[0.5, 1.2]])
    masks = side_masks(bands, values)
    lo, hi = bands.tensors(values)
    c = residuals(values, lo, hi, masks)
    new = update_multipliers(c, torch.zeros(1, 2, 2), torch.tensor([10.0]), masks, 1e8)
    assert new[0, 0, 0] == 0.0                       # satisfied inequality: max(0 - 10*0.5, 0)
    assert torch.isclose(new[0, 1, 0], torch.tensor(-2.0))  # equality: 0 - 10 * 0.2
    assert new[0, 1, 1] == 0.0 and new[0, 0, 1] == 0.0      # inactive sides stay zero


def _optimize(problem, fn, n=6, **kw):
    settings = dict(method="joint", joint_until="converged", objective=CodeObjective(fn), lr=0.05,
                    inner_steps=300, max_outer=8, seed_margin=0.0, dtype="float64",
                    penalty_rule="progress", penalty0=1.0)
    settings.update(kw)
    return fs.sample(problem, n=n, k=n, seed=0, **settings)


def test_al_reaches_the_textbook_optimum_on_the_circle():
    """min x1 + x2 s.t. x1^2 + x2^2 = 2 has its minimum at (-1, -1) (N&W Example 12.1)."""
    circle = fs.from_functions(lambda x: (x * x).sum(1), lo=2.0, hi=2.0, tol=1e-6, code_shape=(2,))
    s = _optimize(circle, lambda c: c.sum(1))
    assert s.status == "success"
    assert torch.allclose(s.codes, torch.full_like(s.codes, -1.0), atol=1e-4)
    assert s.stats["joint_max_violation"] < 1e-5


def test_al_solves_a_convex_qp_like_scipy():
    """min ||x - p||^2 s.t. 1 <= a.x <= 2, x1 - x3 >= 0.5 in R^3, against scipy's SLSQP.

    The augmented Lagrangian approaches an active bound from outside, so the bands carry a
    tolerance of 1e-6, as any optimization problem solved to a boundary optimum needs."""
    from scipy.optimize import minimize

    p = np.array([3.0, -1.0, 2.0])
    a = np.array([1.0, 2.0, -1.0])
    problem = fs.from_functions(
        lambda x: torch.stack([x @ torch.tensor(a, dtype=x.dtype), x[:, 0] - x[:, 2]], 1),
        lo=[1.0, 0.5], hi=[2.0, math.inf], code_shape=(3,), tol=1e-6)
    pt = torch.tensor(p)
    s = _optimize(problem, lambda c: ((c - pt.to(c.dtype)) ** 2).sum(1), n=4)
    ref = minimize(lambda x: ((x - p) ** 2).sum(), np.zeros(3), method="SLSQP", constraints=[
        {"type": "ineq", "fun": lambda x: a @ x - 1.0}, {"type": "ineq", "fun": lambda x: 2.0 - a @ x},
        {"type": "ineq", "fun": lambda x: x[0] - x[2] - 0.5}], tol=1e-12)
    assert ref.success
    assert np.allclose(s.codes.numpy(), ref.x[None, :], atol=1e-4), (s.codes, ref.x)


def test_projection_onto_a_halfspace_in_a_box_matches_closed_form():
    """min ||x - p||^2 s.t. a.x >= b with the box inactive: x* = p + (b - a.p)/||a||^2 a."""
    a, p, b = torch.tensor([0.3, -0.2, 0.5]), torch.tensor([0.2, 0.7, 0.3]), 0.25
    problem = fs.from_functions(lambda x: x @ a.to(x.dtype), lo=b, hi=math.inf, code_shape=(3,),
                                box=(0.0, 1.0), tol=1e-6)
    s = _optimize(problem, lambda c: ((c - p.to(c.dtype)) ** 2).sum(1), n=3)
    expected = p.double() + (b - float(a @ p)) / float(a @ a) * a.double()
    assert torch.allclose(s.codes, expected.expand_as(s.codes), atol=1e-4)


def test_infeasible_pair_of_constraints_ends_infeasible_not_success():
    """x1 >= 1 and x1 <= -1 cannot both hold: the run must end 'infeasible' with the best iterates."""
    problem = fs.from_functions(lambda x: torch.stack([x[:, 0], x[:, 0]], 1),
                                lo=[1.0, -math.inf], hi=[math.inf, -1.0], code_shape=(2,))
    s = fs.sample(problem, n=20, k=4, seed=0, inner_steps=20, max_outer=3)
    assert s.status == "infeasible"
    assert not bool(s.feasible.any())
    assert "closest came within" in s.stats["message"]
    assert len(s) == 4  # the best iterates, closest first


# -- sampling the analytic slab ------------------------------------------------------------------
def _independent_membership(problem: fs.LogisticHalfspace, x: torch.Tensor) -> torch.Tensor:
    """Membership recomputed here from w, c, z1, z2 (not from the problem's own check)."""
    x64 = x.double()
    f = torch.sigmoid(x64 @ problem.w64 + problem.c)
    return ((x64 >= 0) & (x64 <= 1)).all(1) & (f >= problem.z1) & (f <= problem.z2)


@pytest.mark.parametrize("d,z1,z2", [(2, 0.6, 0.8), (64, 0.6, 0.8), (784, 0.6, 0.8), (784, 0.7, 0.701)])
def test_sample_returns_n_samples_all_inside_the_slab(d, z1, z2):
    problem = fs.LogisticHalfspace.random(d, z1, z2)
    s = fs.sample(problem, n=300, k=10, seed=1)
    assert s.status == "success" and len(s) == 300
    assert s.x.shape == (300, d) and s.codes.shape == (300, d) and s.values.shape == (300, 1)
    assert bool(_independent_membership(problem, s.x).all())
    assert bool(s.feasible.all())
    assert s.n_evals >= 300 and s.stats["method"] == "smc"  # the default
    assert math.isfinite(s.stats["log_prob"]) and s.stats["log_prob_se"] > 0


def test_paper_scale_prob_and_gd_step_also_certify():
    problem = fs.LogisticHalfspace.random(16, 0.6, 0.8, scale="prob")
    s = fs.sample(problem, n=100, k=10, seed=0, optimizer="gd", lr=0.01, objective="sum_squared",
                  normalize=False)
    assert bool(_independent_membership(problem, s.x).all()) and len(s) == 100


@pytest.mark.parametrize("objective", ["none", "codes", "sum_squared"])
def test_every_objective_samples_feasibly(objective):
    problem = fs.LogisticHalfspace.random(8, 0.5, 0.9)
    s = fs.sample(problem, n=60, k=6, seed=0, objective=objective)
    assert s.status == "success" and bool(_independent_membership(problem, s.x).all())


def test_float64_and_same_seed_give_identical_samples():
    problem = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s1 = fs.sample(problem, n=50, k=5, seed=3, dtype="float64")
    s2 = fs.sample(problem, n=50, k=5, seed=3, dtype="float64")
    s3 = fs.sample(problem, n=50, k=5, seed=4, dtype="float64")
    assert s1.x.dtype == torch.float64
    assert torch.equal(s1.x, s2.x)
    assert not torch.equal(s1.x, s3.x)


def test_joint_solve_returns_feasible_rows():
    problem = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    s = fs.sample(problem, n=40, k=10, seed=0, method="joint", joint_until="converged",
                  inner_steps=50, max_outer=3)
    assert s.status == "success" and len(s) == 40
    assert s.stats["joint_steps"] == 150
    assert bool(_independent_membership(problem, s.x).all())


def test_intersection_satisfies_every_band():
    w1, w2 = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-1.0, 1.5, 1.0])
    p1 = fs.LogisticHalfspace(w1, None, 0.6, 0.9)
    p2 = fs.LogisticHalfspace(w2, None, 0.3, 0.6)
    both = fs.Intersection([p1, p2])
    s = fs.sample(both, n=80, k=8, seed=0)
    assert s.status == "success" and s.values.shape == (80, 2)
    assert bool((_independent_membership(p1, s.x) & _independent_membership(p2, s.x)).all())


def test_sampleset_save_and_load_round_trip(tmp_path):
    problem = fs.LogisticHalfspace.random(4, 0.6, 0.8)
    s = fs.sample(problem, n=30, k=5, seed=0)
    s.save(tmp_path / "run1")
    t = fs.SampleSet.load(tmp_path / "run1")
    assert torch.equal(s.x, t.x) and torch.equal(s.feasible, t.feasible)
    assert t.stats["status"] == "success" and t.config["problem"]["d"] == 4
    with pytest.raises(FileNotFoundError):
        fs.SampleSet.load(tmp_path / "nothing-here")


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "n must be"), (dict(k=0), "k must be"), (dict(n=5, k=6), "k .* must be <= n"),
    (dict(method="mcmc"), "method"), (dict(dtype="float16"), "dtype"),
])
def test_bad_sampler_settings_fail_before_work(kwargs, match):
    problem = fs.LogisticHalfspace.random(4, 0.6, 0.8)
    args = dict(n=10, k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fs.sample(problem, **args)


@pytest.mark.parametrize("kwargs,match", [
    (dict(w=[1.0, float("nan")]), "finite"), (dict(z1=0.9, z2=0.5), "z1 < z2"),
    (dict(z1=1.2), r"\[0, 1\]"), (dict(w=[[1.0]]), "1-D"),
    (dict(w=[1.0, 1.0], c=-10.0, z1=0.99, z2=0.999), "empty"),
])
def test_logistic_halfspace_refuses_bad_arguments(kwargs, match):
    args = dict(w=[1.0, -1.0], c=0.0, z1=0.5, z2=0.9)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fs.LogisticHalfspace(**args)


def test_a_custom_problem_from_plain_functions_is_sampled_inside():
    ring = fs.from_functions(lambda x: torch.stack([x.norm(dim=1), x[:, 0] + x[:, 1]], 1),
                             lo=[1.0, 0.0], hi=[2.0, math.inf], code_shape=(2,), box=(-3, 3))
    s = fs.sample(ring, n=200, k=10, seed=0)
    r = s.x.double().norm(dim=1)
    assert s.status == "success"
    assert bool(((r >= 1) & (r <= 2) & (s.x.sum(1) >= 0)).all())


def test_progress_bar_reports_samples_and_steps(capsys):
    problem = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    s = fs.sample(problem, n=50, k=5, seed=0, progress=True)
    err = capsys.readouterr().err
    assert s.status == "success"
    assert "sampling" in err and "sample" in err
