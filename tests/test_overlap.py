"""``fs.overlap``: ``P(B | A)`` against exact values on intersections of slabs of the cube."""
from __future__ import annotations

import math

import pytest
import torch

import feassample as fs
from feassample.problems.slab_truth import SlabLaw


def _slab(w, z1, z2=1.0):
    return fs.LogisticHalfspace(w, None, z1, z2)


def _sig(t):
    return 1 / (1 + math.exp(-t))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _orthogonal(d=16):
    w = fs.problems.logistic.random_weights(d, seed=5)
    wa, wb = w.clone(), w.clone()
    wa[d // 2:], wb[: d // 2] = 0.0, 0.0  # disjoint coordinates: independent under the uniform prior
    return wa, wb


def test_independent_slabs_overlap_is_p_of_b_by_the_fraction():
    wa, wb = _orthogonal()
    a, b = _slab(wa, _sig(2.0)), _slab(wb, _sig(0.5))  # P(B) = 0.29
    exact = b.law.log_volume()  # P(B | A) = P(B) exactly
    zs = []
    for seed in range(3):
        o = fs.overlap(a, b, n=400, seed=seed)
        assert o.method == "fraction" and o.inside >= 50
        zs.append((o.log_prob - exact) / o.log_prob_se)
    assert max(abs(z) for z in zs) <= 3, (exact, zs)


def test_independent_rare_b_uses_the_difference_of_two_runs():
    wa, wb = _orthogonal()
    a, b = _slab(wa, _sig(2.0)), _slab(wb, _sig(3.2))  # P(B) ~ 1e-3: too few of A's rows inside
    exact = b.law.log_volume()
    o = fs.overlap(a, b, n=400, seed=0)
    assert o.method == "difference" and o.log_prob_ab < o.log_prob_a
    assert abs(o.log_prob - exact) <= 3 * o.log_prob_se, (o.log_prob, exact, o.log_prob_se)
    assert o.log_prob_se == pytest.approx(math.hypot(o.samples["A"].log_prob_se, o.samples["A and B"].log_prob_se))


@pytest.mark.parametrize("method", ["fraction", "difference"])
def test_nested_bands_of_one_weight_have_the_exact_ratio(method):
    w = fs.problems.logistic.random_weights(16, seed=2)
    a, b = _slab(w, _sig(1.5)), _slab(w, _sig(2.5))  # B inside A: P(B | A) = P(B) / P(A)
    exact = b.law.log_volume() - a.law.log_volume()
    o = fs.overlap(a, b, n=400, seed=3, method=method)
    assert o.method == method
    assert abs(o.log_prob - exact) <= 3 * o.log_prob_se, (o.log_prob, exact, o.log_prob_se)
    assert 0 < o.prob < 1


def test_overlap_refuses_bad_inputs_in_one_line():
    w = fs.problems.logistic.random_weights(4, seed=0)
    a = _slab(w, 0.6)
    with pytest.raises(ValueError, match="method must be"):
        fs.overlap(a, a, n=10, method="mean")
    with pytest.raises(ValueError, match="b: its codes have shape"):
        fs.overlap(a, _slab(fs.problems.logistic.random_weights(5, seed=0), 0.6), n=10)
    with pytest.raises(TypeError, match="b must be a FeasibleSet"):
        fs.overlap(a, "B", n=10)
