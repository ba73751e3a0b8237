"""The covering walk (``method="cover"``): exact feasibility, a coverage floor against exact iid
samples of the logistic slab, reproducibility, checkpoint/resume, intersections, a neural inverse
set. Fast (a few seconds each on one thread); the full measurements are in docs/coverage.md."""
from __future__ import annotations

import math

import pytest
import torch

import feassample as fs
from feassample import metrics
from feassample.core.driver import Checkpoint
from feassample.core.kernels.cover import CoverConfig, CoverState


def _coverage(p: fs.LogisticHalfspace, s, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(1234 + seed)
    n = len(s)
    reference, probes = p.exact_sample(n, generator=g), p.exact_sample(n, generator=g)
    draws = [p.exact_sample(n, generator=g) for _ in range(10)]
    x = s.x.double()
    return metrics.coverage_report(x, reference, probes, draws, t=p.t(x), t_cdf=p.t_cdf)


def test_slab_d64_mid_is_feasible_and_covers():
    p = fs.LogisticHalfspace.random(64, 0.6, 0.8)
    s = fs.sample(p, n=500, k=10, seed=0, method="cover")
    assert s.status == "success" and len(s) == 500
    assert bool(p.membership(s.x.double()).all()) and bool(s.feasible.all())
    assert s.n_evals / len(s) <= 10.0  # seeds included
    cov = _coverage(p, s)
    # a coarse floor (measured: KS p ~0.1-0.6, |z| < 2.3, NN ratio ~0.99, fill ~1.0 over 8 seeds)
    assert cov["ks_p"] > 1e-3
    assert abs(cov["boundary_z"]) <= 5.0
    assert cov["nn_ratio"] >= 0.8
    assert cov["fill_ratio"] <= 1.1


def test_slab_d784_thin_is_feasible_and_spread():
    p = fs.LogisticHalfspace.random(784, 0.7, 0.701)
    s = fs.sample(p, n=200, k=10, seed=0, method="cover")
    assert s.status == "success" and len(s) == 200
    assert bool(p.membership(s.x.double()).all())
    assert s.n_evals / len(s) <= 12.0
    assert s.stats["acceptance_pairs"] > 0.99  # an affine constraint: the pairs move is a Gibbs step
    g = torch.Generator().manual_seed(0)
    ref = p.exact_sample(200, generator=g)
    assert metrics.nn_ratio(s.x.double(), ref) >= 0.8
    assert metrics.ks_pvalue(p.t(s.x.double()), p.t_cdf) > 1e-3


def test_same_seed_same_samples_and_another_seed_differs():
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    a = fs.sample(p, n=60, k=6, seed=3, method="cover")
    b = fs.sample(p, n=60, k=6, seed=3, method="cover")
    c = fs.sample(p, n=60, k=6, seed=4, method="cover")
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.codes, c.codes)


def test_checkpoint_and_resume_is_bit_identical(tmp_path):
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    saved = {}

    def keep(phase, state, info):
        if phase == "cover" and state.rounds == 25:
            assert isinstance(state, CoverState)
            torch.save({"state": state.state_dict(), "rows": state.samples.rows()}, tmp_path / "state.pt")
            saved["accepted"] = state.samples.count

    full = fs.sample(p, n=60, k=6, seed=1, method="cover", callbacks=[keep])
    disk = torch.load(tmp_path / "state.pt", weights_only=True)
    assert 0 < saved["accepted"] < 60
    resumed = fs.sample(p, n=60, k=6, seed=1, method="cover",
                        resume=Checkpoint("cover", disk["state"], disk["rows"]))
    assert resumed.stats.get("resumed") and torch.equal(full.codes, resumed.codes)


def test_intersection_of_two_slabs_m2():
    p1 = fs.LogisticHalfspace.random(8, 0.4, 0.8, w_seed=0)
    p2 = fs.LogisticHalfspace.random(8, 0.3, 0.7, w_seed=1)
    q = fs.Intersection([p1, p2])
    s = fs.sample(q, n=300, k=10, seed=0, method="cover")
    assert s.status == "success" and len(s) == 300
    x = s.x.double()
    assert bool((p1.membership(x) & p2.membership(x)).all())
    assert s.stats["schedule"][0] == "pairs" and len(s.stats["schedule"]) == 2
    # against rejection samples of the intersection: the law of both constraints
    from scipy import stats
    g = torch.Generator().manual_seed(5)
    u = torch.rand(60000, 8, generator=g, dtype=torch.float64)
    ref = u[p1.membership(u) & p2.membership(u)]
    assert stats.ks_2samp(p1.t(x).numpy(), p1.t(ref).numpy()).pvalue > 1e-3
    assert stats.ks_2samp(p2.t(x).numpy(), p2.t(ref).numpy()).pvalue > 1e-3


def test_curved_constraint_in_a_box_keeps_the_uniform_law():
    """Ensemble directions make the pairs move exact for curved constraints too (own-gradient
    directions bias the law of h: KS p ~ 1e-150 on this problem, see docs/coverage.md)."""
    from scipy import stats
    h = lambda x: (x ** 2).sum(1, keepdim=True)  # noqa: E731
    p = fs.from_functions(h, 1.5, 2.0, (6,), box=(0.0, 1.0), dtype=torch.float64)
    s = fs.sample(p, n=600, k=10, seed=0, method="cover", dtype="float64")
    assert s.status == "success" and bool(s.feasible.all())
    g = torch.Generator().manual_seed(5)
    u = torch.rand(40000, 6, generator=g, dtype=torch.float64)
    ref = u[p.check(u)[1]]
    assert stats.ks_2samp(h(s.codes)[:, 0].numpy(), h(ref)[:, 0].numpy()).pvalue > 1e-3


def test_manifold_move_on_a_thin_shell_off_a_box():
    """No box: the level move and the manifold move (Newton back to a new level, reverse check);
    the radius of a uniform point of the shell 1 <= |x| <= 1.05 in R^10 has CDF (r^10-1)/(1.05^10-1)."""
    from scipy import stats
    d, lo, hi = 10, 1.0, 1.05
    p = fs.from_functions(lambda x: x.norm(dim=1, keepdim=True), lo, hi, (d,), dtype=torch.float64)
    s = fs.sample(p, n=300, k=30, seed=0, method="cover", dtype="float64",
                  options={"schedule": ("manifold", "level"), "burn": 30, "thin": 20})
    assert s.status == "success" and bool(s.feasible.all())
    assert s.stats["acceptance_manifold"] > 0.2
    r = s.x.norm(dim=1).numpy()
    assert stats.kstest(r, lambda v: (v.clip(lo, hi) ** d - lo ** d) / (hi ** d - lo ** d)).pvalue > 1e-3
    assert float((s.x / s.x.norm(dim=1, keepdim=True)).mean(0).norm()) * math.sqrt(len(s)) < 4.0


def test_digits_inverse_set_is_feasible_and_more_diverse_than_the_paper_walk():
    from feassample.models.neurons import digits_neuron, embed
    q = digits_neuron("classifier.fc2", 3, 8.0, 12.0)
    ours = fs.sample(q, n=150, k=10, seed=0, method="cover")
    paper = fs.sample(q, n=150, k=10, seed=0, method="walk")
    assert ours.status == "success" and bool(ours.feasible.all()) and len(ours) == 150
    assert bool(q.check(ours.codes)[1].all())
    assert ours.stats["schedule"] == ["level"]  # a wide band off a box: the level move alone
    d_ours = metrics.diversity(embed(q, ours.x))["mean_nn"]
    d_paper = metrics.diversity(embed(q, paper.x))["mean_nn"]
    assert d_ours > 2 * d_paper


def test_config_is_validated():
    with pytest.raises(ValueError, match="schedule"):
        CoverConfig(schedule=("jump",))
    with pytest.raises(ValueError, match="directions"):
        CoverConfig(directions="mine")
    p = fs.from_functions(lambda x: x.norm(dim=1, keepdim=True), 1.0, 2.0, (3,))
    with pytest.raises(ValueError, match="box"):
        fs.sample(p, n=20, k=4, method="cover", options={"schedule": "pairs,level"})


# -- degenerate blocks (issue 11, item 4): singular Gram matrices in the pairs move ------------
class PoolNet(torch.nn.Module):
    """conv -> ReLU -> max-pool -> linear: the logit's pixel gradient is sparse (the max-pool
    routes it to one pixel of each window), so on a block it is often zero or parallel to the
    gradient of a local unit of the conv layer, which is zero outside its 3x3 receptive field."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.pool = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.MaxPool2d(4))
        self.fc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))

    def forward(self, x):
        return self.fc(self.pool(self.conv1(x)))


def _middle_band(values: torch.Tensor) -> tuple[float, float]:
    lo, hi = torch.quantile(values, torch.tensor([0.3, 0.7]))
    return float(lo), float(hi)


def test_global_and_local_unit_of_a_cnn_with_singular_blocks_are_sampled():
    """Crashed with ``linalg.solve ... singular`` in ``_block_directions`` before the fix."""
    torch.manual_seed(0)
    net = PoolNet()
    with torch.no_grad():
        u = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(1))
        logit, unit = net(u)[:, 1], net.conv1(u)[:, 1, 3, 4]
    (a, b), (c, e) = _middle_band(logit), _middle_band(unit)
    top = fs.NeuronInverseSet(net, "fc.1", 1, a, b, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    local = fs.NeuronInverseSet(net, "conv1", (1, 3, 4), c, e, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    s = fs.sample(fs.Intersection([top, local]), n=60, k=10, seed=0)
    assert s.status == "success" and len(s) == 60 and bool(s.feasible.all())
    with torch.no_grad():  # an independent forward pass, without hooks
        f, h = net(s.x)[:, 1], torch.nn.functional.conv2d(s.x, net.conv1.weight, net.conv1.bias, padding=1)[:, 1, 3, 4]
    assert bool(((f >= a - 1e-4) & (f <= b + 1e-4) & (h >= c - 1e-4) & (h <= e + 1e-4)).all())
    # the walkers move (repeats are legitimate MCMC rejections: measured 42 distinct of 60)
    assert len({tuple(r) for r in s.x.flatten(1).tolist()}) >= 30


def _rejection_ks(s, stat, check, d: int) -> float:
    from scipy import stats
    u = torch.rand(40000, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = u[check(u)]
    return stats.ks_2samp(stat(s.codes.double()).numpy(), stat(ref).numpy()).pvalue


def test_parallel_gradients_are_sampled_with_the_right_law():
    """``h = [s, 2s]``: the two gradient rows are parallel on every block."""
    d = 8
    s_of = lambda x: x.sum(1) / math.sqrt(d)  # noqa: E731
    p = fs.from_functions(lambda x: torch.stack([s_of(x), 2 * s_of(x)], 1), lo=[1.0, 1.8], hi=[1.5, 3.2],
                          code_shape=(d,), box=(0.0, 1.0))
    out = fs.sample(p, n=200, k=10, seed=0)
    assert out.status == "success" and len(out) == 200 and bool(out.feasible.all())
    assert _rejection_ks(out, s_of, lambda u: (s_of(u) >= 1.0) & (s_of(u) <= 1.5), d) > 1e-3


def test_one_slab_twice_is_sampled_with_the_slab_law():
    q = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    out = fs.sample(fs.Intersection([q, q]), n=200, k=10, seed=0)
    assert out.status == "success" and len(out) == 200 and bool(out.feasible.all())
    assert bool(q.membership(out.x.double()).all())
    assert metrics.ks_pvalue(q.t(out.x.double()), q.t_cdf) > 1e-3


def test_block_directions_are_orthogonal_to_rank_deficient_gradients():
    from feassample.core.kernels.proposals import block_directions as _block_directions
    g = torch.Generator().manual_seed(0)
    G = torch.randn(4, 2, 6, generator=g, dtype=torch.float64)
    G[0, 1] = 2 * G[0, 0]           # parallel rows
    G[1, 1] = 0.0                   # one zero row
    G[2] = 0.0                      # both zero
    blocks = torch.arange(6).reshape(1, 2, 3).expand(4, 2, 3)
    z = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    d = _block_directions(G, blocks, z)
    Gb = G.reshape(4, 2, 2, 3).permute(0, 2, 1, 3)            # (B, nb, m, b)
    assert torch.allclose(d.norm(dim=-1), torch.ones(4, 2, dtype=torch.float64))
    assert float((Gb @ d.unsqueeze(-1)).abs().max()) < 1e-10  # in the null space of every block
    # the projection is the orthogonal one: z - d * (d.z) lies in the row space (checked by rank)
    resid = z - d * (d * z).sum(-1, keepdim=True)
    for i in range(4):
        for j in range(2):
            both = torch.cat([Gb[i, j], resid[i, j, None]])
            assert torch.linalg.matrix_rank(both, atol=1e-9) == torch.linalg.matrix_rank(Gb[i, j], atol=1e-9)


def test_walk_band_step_follows_a_thin_band_and_keeps_the_spread():
    """Issue 11, item 5: the paper's plain walk needs 7-12x its minimum steps on a 5e-4 band
    (d = 784). ``band_step`` (on by default) limits only the step across the band: within 2x of
    the minimum, the samples are not copies of their seeds, and on a wide band they spread at least
    as far as the plain walk's."""
    from feassample import metrics
    p = fs.LogisticHalfspace.random(784, 0.7, 0.7005)
    s = fs.sample(p, n=100, k=10, seed=1, method="walk")
    assert s.status == "success" and bool(p.membership(s.x.double()).all())
    assert s.stats["rounds"] <= 2 * s.stats["rounds_min"]
    assert s.stats["evals"]["vjp"] == s.n_evals - s.stats["seed_evals"]  # one constraint: one VJP per evaluation
    plain = fs.sample(p, n=100, k=10, seed=1, method="walk", options={"band_step": None})
    assert plain.stats["rounds"] > 2 * plain.stats["rounds_min"]  # what the option fixes
    assert "vjp" not in plain.stats["evals"]
    # not copies of the seeds (a global step cap gave 0.0002 against the plain walk's 0.2 here);
    # the plain walk spends 7-12x the steps, so its samples lie further apart in time
    nn = lambda t: metrics.diversity(t.x.double())["mean_nn"]
    assert nn(s) >= 0.5 * nn(plain)
    # on a wide band, where the plain walk needs few extra steps, the spread is not worse
    wide = fs.LogisticHalfspace.random(784, 0.6, 0.8, scale="prob")
    on = fs.sample(wide, n=100, k=10, seed=0, method="walk")
    off = fs.sample(wide, n=100, k=10, seed=0, method="walk", options={"band_step": None})
    assert on.stats["rounds"] <= 2 * on.stats["rounds_min"]
    assert nn(on) >= nn(off)
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="band_step"):
            fs.WalkConfig(band_step=bad)


def test_limit_across_keeps_the_tangent_step_and_lands_in_the_band():
    """The split of a step against an independent least-squares projection (numpy), on two random
    linear constraints ``h = A x``: the part along the band is untouched, ``h`` after the step is
    inside the band for walkers inside it, and a walker outside moves at most ``band_step`` of its
    room. With a box, the new codes stay in the box and ``h`` (a fresh product) still lands inside."""
    import numpy as np
    from feassample.core.kernels.walk import limit_across
    g = torch.Generator().manual_seed(0)
    B, m, D = 6, 2, 40
    A = torch.randn(B, m, D, generator=g, dtype=torch.float64)
    x = 0.5 + 0.05 * (torch.rand(B, D, generator=g, dtype=torch.float64) - 0.5)
    lo, hi = torch.tensor([0.0, -0.1], dtype=torch.float64), torch.tensor([0.01, 0.1], dtype=torch.float64)
    h = torch.einsum("bmd,bd->bm", A, x)
    # put rows 0-3 inside the band by moving along A's rows; rows 4-5 stay outside
    want = torch.stack([lo + (hi - lo) * torch.rand(m, generator=g, dtype=torch.float64) for _ in range(B)])
    want[4:] = h[4:]
    x = x + (torch.linalg.pinv(A) @ (want - h).unsqueeze(-1)).squeeze(-1)
    h = torch.einsum("bmd,bd->bm", A, x)
    assert bool(((x > 0) & (x < 1)).all())
    step = 0.3 * torch.randn(B, D, generator=g, dtype=torch.float64)
    fa, fb = lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo)
    out = limit_across(x, x + step, h, A, lo, hi, 0.5, fold=(fa, fb))
    new = out - x
    for i in range(B):
        a, s0, s1 = A[i].numpy(), step[i].numpy(), new[i].numpy()
        proj = a.T @ np.linalg.lstsq(a.T, s0, rcond=None)[0]          # part of s0 in span(A_i)
        proj1 = a.T @ np.linalg.lstsq(a.T, s1, rcond=None)[0]
        assert np.allclose(s0 - proj, s1 - proj1, atol=1e-10)        # the tangent part is kept
    h1 = torch.einsum("bmd,bd->bm", A, out)
    inside = ((h >= lo) & (h <= hi)).all(1)
    assert bool(inside[:4].all()) and not bool(inside[4:].any())
    assert bool(((h1[:4] >= fa - 1e-12) & (h1[:4] <= fb + 1e-12)).all())  # folded into [fa, fb]
    assert float((h1[:4] - h[:4]).abs().max()) > 0.1 * float((hi - lo).min())  # and moved across
    room = torch.where(h1[4:] > h[4:], hi - h[4:], h[4:] - lo).clamp(min=0)
    assert bool(((h1[4:] - h[4:]).abs() <= 0.5 * room + 1e-12).all())
    # without a fold interval every row moves at most half its room
    h3 = torch.einsum("bmd,bd->bm", A, limit_across(x, x + step, h, A, lo, hi, 0.5))
    room = torch.where(h3 > h, hi - h, h - lo).clamp(min=0)
    assert bool(((h3 - h).abs() <= 0.5 * room + 1e-12).all())
    boxed = limit_across(x, (x + step).clamp(0, 1), h, A, lo, hi, 0.5, box=(0.0, 1.0),
                         fold=(fa, fb))
    assert bool(((boxed >= 0) & (boxed <= 1)).all())
    h2 = torch.einsum("bmd,bd->bm", A, boxed)
    assert bool(((h2[:4] >= fa - 1e-9) & (h2[:4] <= fb + 1e-9)).all())
