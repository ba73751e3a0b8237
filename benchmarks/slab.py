"""Benchmark on the analytic logistic slab, measured side by side in one run.

For each slab (d = 2, 64, 784 and a thin slab at d = 784) and each sampler configuration, print:
feasible fraction (exact membership), walk steps / the minimum ceil((n - K) / K) (the paper
reports 85 / 49 = 1.73), model evaluations per returned sample, wall seconds, and coverage
against exact iid uniform samples of the same n: KS p-value of w.x against the exact law,
boundary bias z-score of mean |x - 0.5| against repeated iid draws, mean nearest-neighbour
distance ratio, fill ratio (held-out uniform points to the nearest sample, ours / iid), and the
energy-distance z-score against the iid null.

    python -m benchmarks.slab                 # the full table (about a minute on 2 cores)
    python -m benchmarks.slab --quick         # d = 2 and 64 only
"""
from __future__ import annotations

import argparse
import math
import platform
import time

import torch

import feassample as fs
from feassample import metrics

SLABS = [
    ("d=2 mid", 2, 0.6, 0.8),
    ("d=64 mid", 64, 0.6, 0.8),
    ("d=784 mid", 784, 0.6, 0.8),
    ("d=784 thin", 784, 0.7, 0.701),
]

CONFIGS = {
    "cover": dict(method="cover"),
    "smc (default)": dict(method="smc"),
    "walk": dict(method="walk"),
    "paper": dict(method="walk", optimizer="gd", lr=0.01, normalize=False),
}


def measure(name: str, problem: fs.LogisticHalfspace, settings: dict, n: int, k: int, draws: int,
            seed: int) -> dict:
    t0 = time.perf_counter()
    s = fs.sample(problem, n=n, k=k, seed=seed, **settings)
    wall = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1234 + seed)
    t1 = time.perf_counter()
    reference = problem.exact_sample(n, generator=g)
    exact_wall = time.perf_counter() - t1
    probes = problem.exact_sample(n, generator=g)
    ref_draws = [problem.exact_sample(n, generator=g) for _ in range(draws)]
    x = s.x.double()
    inside = problem.membership(x)
    cov = metrics.coverage_report(x, reference, probes, ref_draws, t=problem.t(x), t_cdf=problem.t_cdf)
    steps_min = math.ceil((n - k) / k)
    return {
        "slab": name, "config": settings.get("_label", ""), "n": len(s),
        "feasible": float(inside.float().mean()) if len(s) else 0.0,
        "status": s.status,
        "seed_steps": s.stats.get("seed_steps", 0), "rounds": s.stats.get("rounds", 0),
        "walk_ratio": s.stats.get("rounds", 0) / steps_min,
        "evals_per_sample": s.n_evals / max(len(s), 1),
        "wall_s": wall, "exact_wall_s": exact_wall,
        "ks_p": cov["ks_p"], "boundary_z": cov["boundary_z"], "nn_ratio": cov["nn_ratio"],
        "fill_ratio": cov["fill_ratio"], "energy_z": cov["energy_z"],
    }


def table(rows: list[dict]) -> str:
    head = ("| slab | sampler | status | n | feasible | walk steps / min | evals / sample | wall s | "
            "exact iid wall s | KS p (w.x) | boundary z | NN ratio | fill ratio | energy z |")
    sep = "|" + "---|" * 14
    lines = [head, sep]
    for r in rows:
        steps = (f"{r['rounds']} rounds" if r["config"].startswith("smc") else
                 f"{r['rounds']}/{math.ceil((r['n'] - 10) / 10)} = {r['walk_ratio']:.2f}")
        lines.append(
            f"| {r['slab']} | {r['config']} | {r['status']} | {r['n']} | {100 * r['feasible']:.1f}% | "
            f"{steps} | "
            f"{r['evals_per_sample']:.2f} | {r['wall_s']:.2f} | {r['exact_wall_s']:.2f} | "
            f"{r['ks_p']:.2g} | {r['boundary_z']:.1f} | {r['nn_ratio']:.3f} | {r['fill_ratio']:.3f} | "
            f"{r['energy_z']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--draws", type=int, default=10, help="iid reference draws for the z-scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="only d = 2 and 64")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ",".join(CONFIGS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for label, d, z1, z2 in SLABS[:2] if args.quick else SLABS:
        problem = fs.LogisticHalfspace.random(d, z1, z2)
        for cname in args.configs.split(","):
            settings = dict(CONFIGS[cname], _label=cname)
            run_settings = {k: v for k, v in settings.items() if not k.startswith("_")}
            row = measure(label, problem, run_settings, args.n, args.k, args.draws, args.seed)
            row["config"] = cname
            rows.append(row)
    out = table(rows)
    print(f"# feassample slab benchmark: n={args.n}, K={args.k}, seed={args.seed}, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
