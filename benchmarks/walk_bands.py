"""The paper's walk (``method="walk"``) on bands of decreasing width: walk steps over the minimum.

``rounds_min = ceil((n - seeds) / k)`` is the number of rounds a walk that accepts every
walker in every round would need; the ratio ``rounds / rounds_min`` is the walk's overhead.
Run: ``python -m benchmarks.walk_bands [--band-step 0.5 | --band-step off]`` (one thread; about a
minute). The mean nearest-neighbour distance of the samples is printed too: a rule that makes the
walk take fewer steps by not moving shows up there. "grads/sample" is the walk's model evaluations
plus its extra vector-Jacobian products (``vjp_evals``), per returned sample.
"""
from __future__ import annotations

import argparse
import itertools

import torch

import feassample as fs
from feassample import metrics

BANDS = {0.2: (0.6, 0.8), 0.02: (0.69, 0.71), 5e-4: (0.7, 0.7005)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band-step", default="default",
                    help="WalkConfig.band_step: a number, 'off', or 'default' (the library's)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    options = {} if args.band_step == "default" else \
        {"band_step": None if args.band_step == "off" else float(args.band_step)}
    print("| d | width in z | scale | worst ratio | ratios | mean NN | grads/sample | status |")
    print("|---|---|---|---|---|---|---|---|")
    worst_all = 0.0
    for d, (width, (z1, z2)), scale in itertools.product((784, 64), BANDS.items(), ("logit", "prob")):
        p = fs.LogisticHalfspace.random(d, z1, z2, scale=scale)
        ratios, statuses, spread, cost = [], set(), [], []
        for seed in range(args.seeds):
            s = fs.sample(p, n=args.n, k=10, seed=seed, method="walk", options=options)
            ratios.append(s.stats["rounds"] / max(s.stats["rounds_min"], 1))
            statuses.add(s.status)
            spread.append(metrics.diversity(s.x.double())["mean_nn"])
            cost.append((s.n_evals - s.stats["seed_evals"] + s.stats["evals"].get("vjp", 0)) / max(len(s.x), 1))
        worst_all = max(worst_all, max(ratios))
        print(f"| {d} | {width:g} | {scale} | {max(ratios):.2f} | {', '.join(f'{r:.2f}' for r in ratios)} "
              f"| {sum(spread) / len(spread):.3g} | {sum(cost) / len(cost):.2f} "
              f"| {','.join(sorted(statuses))} |")
    print(f"worst ratio over all bands: {worst_all:.2f}")


if __name__ == "__main__":
    main()
