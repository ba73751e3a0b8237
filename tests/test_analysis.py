"""``fs.facets`` and ``fs.overlap`` against exact answers: a set in three boxes of known mass, the
digits zoo's units whose inverse sets hold two classes, and intersections of slabs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import feassample as fs
from feassample.analysis import effective_size, facets, family_se
from feassample.problems.slab_truth import SlabLaw

#: three disjoint boxes of [0,1]^2 (lower and upper corners): masses 0.01, 0.04, 0.03
BOXES = [((0.0, 0.0), (0.1, 0.1)), ((0.6, 0.6), (0.8, 0.8)), ((0.85, 0.0), (1.0, 0.2))]


def _boxes_problem():
    lo = torch.tensor([b[0] for b in BOXES], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in BOXES], dtype=torch.float64)

    def distance(x):  # the sup-norm distance to the nearest box (0 inside one)
        out = torch.clamp(lo.to(x.dtype) - x[:, None, :], min=0) + torch.clamp(x[:, None, :] - hi.to(x.dtype), min=0)
        return out.amax(-1).amin(1)

    masses = [(b[1][0] - b[0][0]) * (b[1][1] - b[0][1]) for b in BOXES]
    return fs.from_functions(distance, -math.inf, 0.0, (2,), box=(0.0, 1.0)), lo, hi, masses


def _box_of(x, lo, hi):
    inside = ((x[:, None, :] >= lo) & (x[:, None, :] <= hi)).all(-1)  # (n, boxes)
    return inside.double().argmax(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_facets_of_a_set_in_three_boxes_have_the_exact_shares_within_3_se(seed):
    torch.set_num_threads(1)
    problem, lo, hi, masses = _boxes_problem()
    s = fs.sample(problem, n=400, seed=seed, progress=False, options={"rejection_rate": None})
    assert s.stats["smc_mode"] == "levels" and s.status == "success"
    f = fs.facets(s, problem=problem)
    assert f.k == 3 and f.space == "codes" and "silhouette" in f.criterion
    seen = set()
    for facet in f:
        boxes = _box_of(s.x.double()[facet.rows], lo, hi)
        box = int(boxes[0])
        assert bool((boxes == box).all())  # a facet is one piece
        seen.add(box)
        exact = masses[box] / sum(masses)
        assert abs(facet.share - exact) <= 3 * facet.share_se, (box, facet.share, exact, facet.share_se)
        assert facet.medoids[0] in facet.rows and len(facet.medoids) == 5
        assert facet.mean_values == [0.0]  # inside a box the distance is 0
    assert seen == {0, 1, 2}
    assert sum(x.share for x in f) == pytest.approx(1.0) and f.labels.shape == (400,)


def test_share_se_uses_the_effective_size_not_the_rows():
    problem, *_ = _boxes_problem()
    s = fs.sample(problem, n=200, seed=0, progress=False, options={"rejection_rate": None})
    s.stats["diagnostics"] = dict(s.stats["diagnostics"], ess_bulk_min=25.0, ess_rows=100)
    n_eff, why = effective_size(s)
    assert n_eff == pytest.approx(50.0) and "ess_bulk_min" in why
    f = fs.facets(s, problem=problem, k=3)
    binomial = math.sqrt(f[0].share * (1 - f[0].share) / 50.0)
    member = f.labels == 0
    assert f[0].share_se == pytest.approx(max(binomial, family_se(member, s)))
    assert f[0].share_se >= binomial
    assert f.criterion == "k given"


def test_share_se_counts_ancestral_families_when_a_facet_is_inherited():
    # 40 families of 10 rows: membership inherited from the family (a piece the moves never
    # leave) has the SE of 40 draws; membership drawn afresh for every row, that of 400 rows
    from types import SimpleNamespace
    rng = np.random.default_rng(0)
    ancestor = torch.arange(40).repeat_interleave(10)
    inherited = np.repeat(rng.random(40) < 0.3, 10)
    p = inherited.mean()
    se = family_se(inherited, SimpleNamespace(ancestor=ancestor))
    assert se == pytest.approx(math.sqrt(p * (1 - p) / 40), rel=1e-9)  # exact: equal families
    fresh = rng.random(400) < 0.3
    q = fresh.mean()
    ses = [family_se(rng.permutation(fresh), SimpleNamespace(ancestor=ancestor)) for _ in range(200)]
    assert float(np.mean(np.square(ses))) == pytest.approx(q * (1 - q) / 400, rel=0.15)
    # independent draws (negative ancestors) and rows without ancestors: no family term
    assert family_se(fresh, SimpleNamespace(ancestor=-torch.ones(400, dtype=torch.long))) == 0.0
    assert family_se(fresh, SimpleNamespace(ancestor=None)) == 0.0


def test_one_gaussian_blob_is_one_facet():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(300, 6, generator=g, dtype=torch.float64)
    s = fs.SampleSet(codes, codes, codes[:, :1], torch.ones(300, dtype=torch.bool))
    f = fs.facets(s)
    assert f.k == 1 and f.space == "codes" and f[0].share == 1.0 and f[0].share_se == 0.0
    assert "independent" in f.ess_from


@pytest.mark.parametrize("bad, match", [({"k": 0}, "k must be"), ({"k": "many"}, "k must be"),
                                        ({"k_max": 1}, "k_max must be"),
                                        ({"embedding": torch.zeros(3, 2)}, "embedding must have one row"),
                                        ({"layer": "fc"}, "layer='fc' needs problem=")])
def test_facets_refuse_bad_arguments_in_one_line(bad, match):
    codes = torch.rand(20, 2, generator=torch.Generator().manual_seed(0))
    s = fs.SampleSet(codes, codes, codes[:, :1], torch.ones(20, dtype=torch.bool))
    with pytest.raises(ValueError, match=match):
        fs.facets(s, **bad)


@pytest.mark.parametrize("unit, z1, layer, classes", [(58, 18.9, "classifier.fc1", {4, 6}), (12, 11.5, None, {2, 5})])
def test_facets_of_digits_units_are_their_classes(unit, z1, layer, classes):
    # fc1 units whose top 3% under the generator's prior are mostly two digits (measured on 4,000
    # prior codes: unit 58: 46% sixes, 45% fours; unit 12: 57% twos, 34% fives)
    from feassample.models import load_classifier, load_generator
    from feassample.models.neurons import digits_neuron
    torch.set_num_threads(1)
    model, G = load_classifier(), load_generator()
    q = digits_neuron("classifier.fc1", unit, z1, 1e4, model=model, G=G)
    s = fs.sample(q, n=300, seed=1, progress=False)
    f = fs.facets(s, problem=q, layer=layer)
    assert f.k == 2 and f.space == (f"layer {layer}" if layer else "the problem's embedding")
    with torch.no_grad():
        predicted = model(s.x.float()).argmax(1)
    got = set()
    for facet in f:
        medoid_classes = predicted[facet.medoids].tolist()
        counts = torch.bincount(predicted[facet.rows], minlength=10)
        major = int(counts.argmax())
        # the facet is mostly one class (measured: 72-80% of its rows), its medoid and at least
        # 4 of its 5 medoid rows are of that class (seed 1: one row of the 2s' is a 1)
        assert float(counts[major]) >= 0.6 * len(facet.rows), counts.tolist()
        assert medoid_classes[0] == major and medoid_classes.count(major) >= 4, medoid_classes
        got.add(major)
        assert 0.3 <= facet.share <= 0.7
    assert got == classes


def test_a_convex_slab_and_a_digit_logit_are_one_facet():
    # k-means cuts a uniform strip at a silhouette of about 0.41 by its shape alone; the
    # structureless reference reaches the same, so the strip stays one facet
    torch.set_num_threads(1)
    p = fs.LogisticHalfspace.random(2, 0.7, 0.95)
    s = fs.sample(p, n=500, seed=0, progress=False)
    f = fs.facets(s, problem=p)
    assert f.k == 1 and max(f.silhouettes.values()) > 0.35 and f.reference_silhouette > 0.35
    from feassample.models import load_classifier, load_generator
    from feassample.models.neurons import digits_neuron
    model = load_classifier()
    q = digits_neuron("classifier.fc2", 3, 8.0, 12.0, model=model, G=load_generator())
    s = fs.sample(q, n=300, seed=0, progress=False)
    f = fs.facets(s, problem=q)
    with torch.no_grad():
        predicted = model(s.x.float()).argmax(1)
    assert f.k == 1 and set(predicted[f[0].medoids].tolist()) == {3}


def test_facets_refuse_an_unknown_layer_with_the_valid_names():
    from feassample.models.neurons import digits_neuron
    q = digits_neuron("classifier.fc2", 3, 8.0, 12.0)
    codes = torch.zeros(8, 8)
    s = fs.SampleSet(q.decode(codes), codes, torch.zeros(8, 1), torch.ones(8, dtype=torch.bool))
    with pytest.raises(ValueError, match="layer='fc9' is not a layer of the model; valid names: .*classifier.fc1"):
        fs.facets(s, problem=q, layer="fc9")
