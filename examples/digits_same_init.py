"""Paper Fig. 8 / §4.2 on the digits zoo: identical initial codes, with and without diversity.

The band is the logit of "3" in [16, 18], far from where the start decodes, so the seeds must
travel. All K = 10 seeds start from the same code (of 100 random codes, the one least like a
"3") (plus a 1e-3 jitter: with exactly equal codes
the gradient of a sum of pairwise distances is zero and nothing can separate them). Without the
diversity term (eq. 14) the samples stay alike; with it (eq. 5) they spread.

    .venv/bin/python examples/digits_same_init.py       # writes docs/img/digits_same_init.png
"""
from __future__ import annotations

from pathlib import Path

import torch

import feassample as fs
from feassample import metrics
from feassample.models import load_classifier, load_generator
from feassample.models.neurons import digits_neuron, embed
from feassample.viz import sample_rows

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "digits_same_init.png"


def main(n: int = 100, k: int = 10, out: Path = OUT):
    torch.set_num_threads(1)
    model, G = load_classifier(), load_generator()
    q = digits_neuron("classifier.fc2", 3, 16.0, 18.0, model=model, G=G)
    g = torch.Generator().manual_seed(0)
    # the start: of 100 random codes, the one whose decoded digit is least like a "3"
    candidates = q.init_codes(100, g)
    with torch.no_grad():
        logit3 = q.measure(q.decode(candidates)).values[:, 0]
    start = candidates[logit3.argmin()].unsqueeze(0).repeat(k, 1)
    start = start + 1e-3 * torch.randn(start.shape, generator=g)
    rows = []
    print("| objective | mean pairwise dist in E (all n) | mean NN dist in E (all n) | mean pairwise dist in pixels (all n) | mean pairwise dist in E (the K seeds) |")
    print("|---|---|---|---|---|")
    for label, objective, normalize in [("none (eq. 14)", "none", True),
                                        ("mean of squared distances", "sum_squared", True),
                                        ("sum of squared distances (eq. 5)", "sum_squared", False)]:
        s = fs.sample(q, n=n, k=k, seed=0, objective=objective, normalize=normalize,
                      initial_codes=start, method="walk", band_step=None)
        e = metrics.diversity(embed(q, s.x))
        px = metrics.mean_pairwise_distance(s.x.flatten(1))
        seeds = metrics.mean_pairwise_distance(embed(q, s.x[:k]))
        print(f"| {label} | {e['mean_pairwise']:.3f} | {e['mean_nn']:.3f} | {px:.3f} | {seeds:.3f} |")
        rows.append((f"same start,\n{label}", s))
    sample_rows(rows, out, pick="first",
                title="identical initial codes: the K = 10 seeds without and with the diversity term")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
