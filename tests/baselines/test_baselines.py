"""The baselines (feassample.baselines): each one succeeds where it must, respects its budget,
is reproducible, and says clearly when it cannot run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import feassample as fs
import feassample.baselines as fb
from feassample import metrics
from feassample.core.kernels import SAMPLERS

torch.set_num_threads(1)

GENERAL = ["activation_max", "multifaceted", "langevin", "rejection"]


def wide_slab(d: int = 8) -> fs.LogisticHalfspace:
    return fs.LogisticHalfspace.random(d, 0.3, 0.9)


def thin_slab(d: int = 16) -> fs.LogisticHalfspace:
    return fs.LogisticHalfspace.random(d, 0.7, 0.701)


def gaussian_problem(lo: float = 1.0, hi: float = 1.5) -> fs.FeasibleSet:
    """Unboxed codes from N(0, I) (the Langevin prior's own setting): lo <= sum(c) <= hi."""
    return fs.from_functions(lambda x: x.sum(dim=1), lo=lo, hi=hi, code_shape=(4,))


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(8, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def toy_neuron(z1: float, z2: float) -> fs.NeuronInverseSet:
    """A toy nn.Module's unit fc2[0] over inputs in [-1, 1]^6, embedding at fc1."""
    return fs.NeuronInverseSet(Toy(), "fc2", 0, z1, z2, encoder="fc1", input_shape=(6,),
                               input_range=(-1.0, 1.0))


def toy_range(problem, draws: int = 4000) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return problem.measure(problem.init_codes(draws, g)).values[:, 0]


def test_registered_at_import():
    for name in ("activation_max", "multifaceted", "langevin", "rejection", "hit_and_run"):
        assert SAMPLERS[name] is fb.BASELINES[name]
    fs.SamplerConfig(method="hit_and_run")  # accepted by the config's validation


# -- success where each must succeed -----------------------------------------------------------
def test_rejection_on_a_wide_slab_is_exact_and_counts_one_eval_per_draw():
    p = wide_slab()
    s = fs.sample(p, n=200, k=10, seed=0, method="rejection")
    assert s.status == "success" and len(s) == 200
    assert bool(p.membership(s.x).all()) and bool(s.feasible.all())
    assert s.n_evals == s.stats["drawn"]
    assert s.n_evals <= s.stats["max_evals"] == 200 * fb.DEFAULT_EVALS_PER_SAMPLE
    assert abs(s.stats["acceptance"] - p.volume()) < 0.1


@pytest.mark.parametrize("direction", ["coordinate", "random"])
def test_hit_and_run_thin_slab_exact_membership_and_law(direction):
    p = thin_slab(16)
    s = fs.sample(p, n=400, k=20, seed=0, method="hit_and_run",
                  options={"direction": direction, "thin": 48, "burn": 200})
    assert s.status == "success" and len(s) == 400
    assert s.codes.dtype == torch.float64
    assert bool(p.membership(s.x).all()), "every state of a hit-and-run chain is a member"
    assert metrics.ks_pvalue(p.t(s.x), p.t_cdf) > 1e-3
    # k chains: 64 bisection steps each, burn + 20 rounds of 48 steps, one exact re-check per keep
    assert s.n_evals == 20 * (64 + 200 + 20 * 48 + 20)


def test_hit_and_run_refuses_non_linear_problems():
    with pytest.raises(TypeError, match="linear slab"):
        fs.sample(gaussian_problem(), n=10, k=5, method="hit_and_run")
    with pytest.raises(TypeError, match="linear slab"):
        fs.sample(fs.Intersection([wide_slab(), wide_slab()]), n=10, k=5, method="hit_and_run")


def test_langevin_on_gaussian_codes_and_on_a_toy_module():
    s = fs.sample(gaussian_problem(), n=100, k=10, seed=0, method="langevin")
    assert s.status == "success" and bool(s.feasible.all())
    assert s.n_evals == 10 * s.stats["steps"]
    p = toy_neuron(0.5, 1.5)
    s = fs.sample(p, n=100, k=10, seed=0, method="langevin", options={"thin": 2})
    assert s.status == "success" and bool(s.feasible.all())
    assert bool(((s.x >= -1) & (s.x <= 1)).all()), "reflected into the box"


def test_activation_max_band_and_max_targets():
    p = toy_neuron(0.5, 1.5)
    s = fs.sample(p, n=60, k=10, seed=0, method="activation_max",
                  options={"target": "band", "steps": 30, "diversity": 0.5})
    assert s.status == "success" and bool(s.feasible.all())
    assert s.n_evals == s.stats["restarts"] * 10 * 31
    # Ascending the unit reaches the top of its range: a band just below the maximum.
    top = float(toy_range(p).max())
    q = toy_neuron(top - 0.5, math.inf)
    s = fs.sample(q, n=30, k=10, seed=0, method="activation_max", options={"target": "max", "steps": 60})
    assert s.status == "success" and bool(s.feasible.all())


def test_multifaceted_from_real_inputs_and_from_the_prior():
    p = toy_neuron(0.5, 1.5)
    g = torch.Generator().manual_seed(3)
    real = torch.rand((300, 6), generator=g) * 2 - 1
    s = fs.sample(p, n=40, k=5, seed=0, method="multifaceted",
                  options={"real_inputs": real, "target": "band", "steps": 30, "top": 0.2})
    assert s.status == "success" and bool(s.feasible.all())
    # 2 decodes (are codes inputs?) + 300 candidates measured, then 31 per code and restart
    assert s.stats["codes_are_inputs"] and s.stats["start_evals"] == 302
    assert s.n_evals == 302 + s.stats["restarts"] * 5 * 31
    # A generator (codes (2,) -> inputs (4,)): start from the prior codes nearest the facet means.
    lift = torch.tensor([[1.0, 0.5, 0.0, -0.5], [0.0, 1.0, 1.0, 0.5]])
    q = fs.from_functions(lambda x: x.sum(dim=1), lo=1.0, hi=1.5, code_shape=(2,),
                          decode=lambda c: c @ lift.to(c.dtype), input_shape=(4,))
    s = fs.sample(q, n=40, k=5, seed=0, method="multifaceted",
                  options={"target": "band", "steps": 30, "pool": 200})
    assert s.status == "success" and not s.stats["codes_are_inputs"]
    assert s.stats["start_evals"] == 200


def test_baselines_on_a_digits_band():
    from feassample.models import digits_data, digits_neuron

    p = digits_neuron("classifier.fc2", 3, 8.0, 12.0)
    for method, options in [("langevin", {}), ("activation_max", {"target": "band", "steps": 30}),
                            ("multifaceted", {"target": "band", "steps": 30,
                                              "real_inputs": digits_data("test")[0][:200]})]:
        s = fs.sample(p, n=20, k=10, seed=0, method=method, options={**options, "max_evals": 6000})
        assert s.status == "success", (method, s.stats["message"])
        assert bool(s.feasible.all()) and s.x.shape == (20, 1, 16, 16)
        assert s.n_evals <= 6000


# -- budgets, statuses, errors -----------------------------------------------------------------
@pytest.mark.parametrize("method", GENERAL + ["hit_and_run"])
def test_budget_is_respected(method):
    p = thin_slab(16)
    budget = 20 * 64 + 150 if method == "hit_and_run" else 700
    options = {"max_evals": budget}
    if method == "multifaceted":
        options["pool"] = 200
    s = fs.sample(p, n=300, k=20, seed=0, method=method, options=options)
    assert s.n_evals <= budget
    assert s.stats["max_evals"] == budget
    assert s.status in ("partial", "infeasible")
    assert s.stats["message"]
    if s.status == "partial":  # only the samples judged inside, all certified
        assert len(s) == int(s.feasible.sum()) == s.stats["accepted"]
    else:
        assert not bool(s.feasible.any())


@pytest.mark.parametrize("method", GENERAL)
def test_an_unreachable_band_is_infeasible(method):
    p = fs.from_functions(lambda x: x.sum(dim=1), lo=10.0, hi=11.0, code_shape=(4,), box=(0, 1))
    s = fs.sample(p, n=20, k=5, seed=0, method=method, options={"max_evals": 500, "pool": 100}
                  if method == "multifaceted" else {"max_evals": 500})
    assert s.status == "infeasible" and s.stats["accepted"] == 0
    assert "closest" in s.stats["message"] and s.stats["best_violation"] >= 6.0 - 1e-5
    # the closest iterates are returned, closest first, none of them feasible
    assert 1 <= len(s) <= 5 and not bool(s.feasible.any())
    gaps = 10.0 - s.values[:, 0]
    assert bool((gaps[1:] >= gaps[:-1] - 1e-6).all())
    assert abs(float(gaps[0]) - s.stats["best_violation"]) < 1e-4


@pytest.mark.parametrize("method", GENERAL + ["hit_and_run"])
def test_reproducible_with_a_seed(method):
    p = wide_slab()
    opts = ({"max_evals": 20_000, "steps": 20, "target": "band"}
            if method in ("activation_max", "multifaceted") else {})
    if method == "multifaceted":
        opts["pool"] = 200
    a = fs.sample(p, n=30, k=5, seed=3, method=method, options=opts)
    b = fs.sample(p, n=30, k=5, seed=3, method=method, options=opts)
    c = fs.sample(p, n=30, k=5, seed=4, method=method, options=opts)
    assert len(a) == 30 and torch.equal(a.codes, b.codes)
    assert a.n_evals == b.n_evals
    assert not torch.equal(a.codes, c.codes)


def test_clear_errors_for_bad_options():
    p = wide_slab()
    with pytest.raises(ValueError, match="target"):
        fs.sample(p, n=10, k=5, method="activation_max", options={"target": "min"})
    with pytest.raises(ValueError, match="max_evals"):
        fs.sample(p, n=10, k=5, method="rejection", options={"max_evals": 0})
    with pytest.raises(ValueError, match="direction"):
        fs.sample(p, n=10, k=5, method="hit_and_run", options={"direction": "diagonal"})
    with pytest.raises(ValueError, match="initial_codes"):
        fs.sample(p, n=10, k=5, method="rejection", initial_codes=torch.zeros(5, 8))
    with pytest.raises(ValueError, match="initial_codes"):
        fs.sample(p, n=10, k=5, method="hit_and_run", initial_codes=torch.zeros(5, 8))
    with pytest.raises(ValueError, match="initial_codes must be a tensor of shape"):
        fs.sample(p, n=10, k=5, method="langevin", initial_codes=torch.zeros(4, 8))
    with pytest.raises(ValueError, match="no option 'temperature'"):
        fs.sample(p, n=10, k=5, method="langevin", options={"temperature": 1.0})
    with pytest.raises(ValueError, match="thin"):
        fs.sample(p, n=10, k=5, method="langevin", options={"thin": 0})
    with pytest.raises(ValueError, match="eps3"):
        fs.sample(p, n=10, k=5, method="langevin", options={"eps3": -1.0})
    with pytest.raises(ValueError, match="top"):
        fs.sample(p, n=10, k=5, method="multifaceted", options={"top": 1.5})
    with pytest.raises(ValueError, match="facets"):
        fs.sample(p, n=10, k=5, method="multifaceted", options={"facets": 0})
    with pytest.raises(ValueError, match="burn"):
        fs.sample(p, n=10, k=5, method="hit_and_run", options={"burn": -1})
    with pytest.raises(ValueError, match="real_inputs must have shape"):
        fs.sample(p, n=10, k=5, method="multifaceted", options={"real_inputs": torch.zeros(50, 3)})


def test_callbacks_see_progress_and_initial_codes_are_used():
    p = gaussian_problem()
    seen = []
    start = torch.full((5, 4), 0.3)
    s = fs.sample(p, n=10, k=5, seed=0, method="langevin", initial_codes=start,
                  callbacks=[lambda phase, state, info: seen.append(
                      (phase, state.samples.count, state.used, state.samples.codes[: state.samples.count].clone()))])
    assert s.status == "success"
    assert seen and seen[0][0] == "langevin" and seen[-1][1] == 10
    assert seen[0][2] == 5
    assert s.n_evals == seen[-1][2]
    # the first step keeps (burn 0) the chains at the given starting codes that are inside the band
    inside = p.bands.feasible(p.measure(start).values)
    assert seen[0][1] == int(inside.sum()) and torch.equal(seen[0][3], start[inside])
    # a callback that cannot take (phase, state, info) is refused before any work, in one line
    with pytest.raises(TypeError, match=r"callbacks take \(phase, state, info\)"):
        fs.sample(p, n=10, k=5, seed=0, method="langevin", callbacks=[lambda phase, state: None])


@pytest.mark.parametrize("method", GENERAL + ["hit_and_run"])
def test_resume_after_ctrl_c_is_bit_identical(tmp_path, method):
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    opts = {"rejection": {"batch": 8}, "activation_max": {"target": "band", "steps": 10},
            "multifaceted": {"target": "band", "steps": 10, "pool": 100}}.get(method, {})
    full = fs.sample(p, n=40, k=5, seed=0, method=method, options=opts)
    calls = []

    def stop(phase, state, info):
        calls.append(phase)
        if len(calls) == 5:  # mid-run (mid-restart for the ascents)
            raise KeyboardInterrupt

    cut = fs.sample(p, n=40, k=5, seed=0, method=method, options=opts, run_dir=tmp_path, callbacks=[stop])
    assert cut.status == "interrupted" and "ran out" not in cut.stats["message"]
    resumed = fs.sample(p, n=40, resume=tmp_path)
    assert resumed.status == full.status == "success"
    assert torch.equal(resumed.codes, full.codes)
    assert resumed.n_evals == full.n_evals


def test_kmeans_recovers_separated_blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = (centers[:, None, :] + 0.1 * torch.randn((3, 50, 2), generator=g)).reshape(150, 2)
    found, assign = fb.kmeans(points, 3, torch.Generator().manual_seed(1))
    dist = torch.cdist(found, centers).min(dim=1).values
    assert bool((dist < 0.1).all())
    assert sorted(torch.bincount(assign).tolist()) == [50, 50, 50]
