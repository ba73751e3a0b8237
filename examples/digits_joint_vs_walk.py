"""Paper Fig. 9 / §4.3 on the digits zoo: the joint solve of eq. (15) vs the fast process.

Three ways to get n = 100 samples of the logit of "3" in [12, 14] from the same initial codes:
1. eq. (15) over all n codes at once, optimized for the whole augmented-Lagrangian budget;
2. K = 10 seeds optimized for the whole budget, then the walk;
3. the paper's process: seeds stopped as soon as they are feasible, then the walk.
The table reports batched gradient steps and per-sample model evaluations of each phase.

    .venv/bin/python examples/digits_joint_vs_walk.py   # writes docs/img/digits_joint_vs_walk.png
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

import feassample as fs
from feassample import metrics
from feassample.models import load_classifier, load_generator
from feassample.models.neurons import digits_neuron, embed
from feassample.viz import sample_rows

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "digits_joint_vs_walk.png"


def main(n: int = 100, k: int = 10, out: Path = OUT):
    torch.set_num_threads(1)
    model, G = load_classifier(), load_generator()
    q = digits_neuron("classifier.fc2", 3, 12.0, 14.0, model=model, G=G)
    start = q.init_codes(n, torch.Generator().manual_seed(0))
    budget = dict(inner_steps=100, max_outer=4)
    runs = [
        ("1. joint eq. (15), full budget", dict(method="joint", joint_until="converged", initial_codes=start, **budget)),
        ("2. seeds to convergence + walk", dict(initial_codes=start[:k], seed_margin=0.5, **budget, _full_seeds=True)),
        ("3. seeds until feasible + walk", dict(initial_codes=start[:k], method="walk", band_step=None, **budget)),
    ]
    rows = []
    print("| process | status | seed/joint steps | walk steps | model evals | mean NN dist in E | wall s |")
    print("|---|---|---|---|---|---|---|")
    for label, settings in runs:
        full = settings.pop("_full_seeds", False)
        t0 = time.perf_counter()
        if full:
            # Seeds optimized "all the way" (the joint solve on K codes), then the walk from them.
            seeds = fs.sample(q, n=k, k=k, seed=0, method="joint", joint_until="converged", **settings)
            s = fs.sample(q, n=n, k=k, seed=0, initial_codes=seeds.codes[:k], method="walk", band_step=None, **budget)
            seed_steps = seeds.stats["seed_steps"] + s.stats["seed_steps"]
            evals = seeds.n_evals + s.n_evals
        else:
            s = fs.sample(q, n=n, k=k, seed=0, **settings)
            seed_steps, evals = s.stats["seed_steps"], s.n_evals
        wall = time.perf_counter() - t0
        div = metrics.diversity(embed(q, s.x))["mean_nn"]
        print(f"| {label} | {s.status} | {seed_steps} | {s.stats['rounds']} | {evals} | {div:.3f} | {wall:.2f} |")
        rows.append((label.replace(", ", ",\n"), s))
    sample_rows(rows, out, title="joint solve vs incremental process (n = 100)")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
