"""The pictures and numbers of docs/analysis.md: a rarity curve against the slab's exact law,
the facets of a set in three boxes and of two digits units, overlaps of slabs, and ArviZ's
rank plots of two runs' exports (needs ``pip install -e '.[arviz]'``; skipped with a message
without it).

    .venv/bin/python examples/analysis.py   # writes docs/img/analysis_*.png, prints the numbers
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

import feassample as fs
from feassample.problems.slab_truth import SlabLaw
from feassample.viz import plot_facets, plot_rarity

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def rarity(out: Path = IMG / "analysis_rarity.png"):
    p = fs.LogisticHalfspace.random(16, 1 / (1 + math.exp(-5.0)), 1.0)  # logit f >= 5: P = 3.1e-5
    runs = [fs.sample(p, n=300, seed=seed, progress=False) for seed in range(3)]
    worst = 0.0
    for s in runs:
        for r in s.rarity:
            exact = SlabLaw(p.w64, r.lo[0] - p.c, math.inf).log_volume()
            worst = max(worst, abs(r.log_prob - exact) / r.log_prob_se)
    print(f"rarity: {len(runs[0].rarity)} levels (seed 0); largest |z| against the exact law over 3 seeds: {worst:.2f}")
    print("  seed 0: " + "; ".join(f"{r.threshold:.2f}: {r.log_prob:.3f} ± {r.log_prob_se:.3f}" for r in runs[0].rarity))
    plot_rarity(runs, out, labels=[f"seed {i}" for i in range(3)],
                exact=lambda t: SlabLaw(p.w64, t - p.c, math.inf).log_volume(),
                title="logit f(x) >= t on a 16-d slab: three levels runs (2-SE bands) and the exact law")
    return runs


#: three disjoint boxes of [0,1]^2 (lower and upper corners): masses 0.01, 0.04, 0.03
BOXES = [((0.0, 0.0), (0.1, 0.1)), ((0.6, 0.6), (0.8, 0.8)), ((0.85, 0.0), (1.0, 0.2))]


def boxes_problem():
    """The union of ``BOXES`` as one band: the sup-norm distance to the nearest box is <= 0."""
    lo = torch.tensor([b[0] for b in BOXES], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in BOXES], dtype=torch.float64)

    def distance(x):
        out = torch.clamp(lo.to(x.dtype) - x[:, None, :], min=0) + torch.clamp(x[:, None, :] - hi.to(x.dtype), min=0)
        return out.amax(-1).amin(1)

    masses = [(b[1][0] - b[0][0]) * (b[1][1] - b[0][1]) for b in BOXES]
    return fs.from_functions(distance, -math.inf, 0.0, (2,), box=(0.0, 1.0)), masses


def boxes(out: Path = IMG / "analysis_facets_boxes.png"):
    problem, masses = boxes_problem()
    s = fs.sample(problem, n=400, seed=0, progress=False, options={"rejection_rate": None})
    f = fs.facets(s, problem=problem)
    print(f"boxes: {f.criterion}; exact shares {[round(m / sum(masses), 3) for m in masses]}")
    print("  " + "; ".join(f"{x.share:.3f} ± {x.share_se:.3f}" for x in f))
    plot_facets(s, f, out)
    return s, f


def digits(out: Path = IMG / "analysis_facets_digits.png"):
    from feassample.models import load_classifier, load_generator
    from feassample.models.neurons import digits_neuron
    model, G = load_classifier(), load_generator()
    q = digits_neuron("classifier.fc1", 12, 11.5, 1e4, model=model, G=G)
    s = fs.sample(q, n=300, seed=1, progress=False)
    f = fs.facets(s, problem=q)
    with torch.no_grad():
        predicted = model(s.x.float()).argmax(1)
    print(f"digits fc1:12 >= 11.5: {f.criterion}; log P {s.log_prob:.3f} ± {s.log_prob_se:.3f}")
    for x in f:
        print(f"  share {x.share:.3f} ± {x.share_se:.3f}, medoids predicted {predicted[x.medoids].tolist()}")
    plot_facets(s, f, out)
    return s, f


def overlaps():
    w = fs.problems.logistic.random_weights(16, seed=5)
    wa, wb = w.clone(), w.clone()
    wa[8:], wb[:8] = 0.0, 0.0
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    a, b = fs.LogisticHalfspace(wa, None, sig(2.0)), fs.LogisticHalfspace(wb, None, sig(0.5))
    o = fs.overlap(a, b, n=400, seed=0)
    print(f"overlap, independent slabs: {o.method}: log P(B|A) {o.log_prob:.3f} ± {o.log_prob_se:.3f}, "
          f"exact log P(B) {b.law.log_volume():.3f}")
    w = fs.problems.logistic.random_weights(16, seed=2)
    a, b = fs.LogisticHalfspace(w, None, sig(1.5)), fs.LogisticHalfspace(w, None, sig(2.5))
    exact = b.law.log_volume() - a.law.log_volume()
    for method in ("fraction", "difference"):
        o = fs.overlap(a, b, n=400, seed=3, method=method)
        print(f"overlap, nested slabs: {method}: log P(B|A) {o.log_prob:.3f} ± {o.log_prob_se:.3f}, exact {exact:.3f}")


def arviz_ranks(out: Path = IMG / "analysis_arviz.png"):
    """ArviZ on ``SampleSet.to_inference_data()`` exports of one thin slab: ``az.rhat`` of the
    constraint value for the default (chains: ancestral families of 4 rows, too many and too
    short for a readable rank plot) and ``az.plot_rank`` for two walker runs, the covering walk
    (mixed) and the paper's walk (not mixed)."""
    try:
        import arviz as az
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        print(f"arviz: skipped ({err}; pip install -e '.[arviz]')")
        return None
    p = fs.LogisticHalfspace.random(64, 0.3, 0.301)
    runs = {"smc (default)": fs.sample(p, n=400, seed=0, progress=False),
            "cover": fs.sample(p, n=400, k=10, seed=0, method="cover", progress=False),
            "walk (the paper's)": fs.sample(p, n=400, k=10, seed=0, method="walk", progress=False)}
    exports = {name: s.to_inference_data() for name, s in runs.items()}
    rhats = {name: float(az.rhat(d, var_names=["h"])["h"].max()) for name, d in exports.items()}
    for name, d in exports.items():
        print(f"arviz: {name}: {d.posterior.sizes['chain']} chains by {d.posterior.attrs['chains_by']}, "
              f"{d.posterior.attrs['rows_used']} rows used, az.rhat of h {rhats[name]:.3f}")
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for ax, name in zip(axes, ("cover", "walk (the paper's)")):
        d = exports[name]
        az.plot_rank(d, var_names=["h"], ax=ax)
        ax.set_title(f"{name}: {d.posterior.sizes['chain']} walkers, az.rhat {rhats[name]:.2f}", fontsize=9)
    fig.suptitle("az.plot_rank(s.to_inference_data(), var_names=['h']): thin slab d=64, "
                 "w.x in a band 1e-3 wide, n = 400", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return runs


if __name__ == "__main__":
    torch.set_num_threads(1)
    rarity()
    boxes()
    digits()
    overlaps()
    arviz_ranks()
