"""Side-by-side benchmark: our sampler against the baselines of ``feassample.baselines``.

Every method runs on the same problems, with the same seed and the same budget of per-sample model
evaluations (``max_evals``; our method has no budget option: the number it used is reported, and
flagged when above the budget), all in one run, single-threaded. Columns:

* certified: samples certified by ``problem.check`` (exact for the slab) of the ``n`` asked for;
  feasible %: certified / returned.
* evals / acc.: model evaluations per certified sample (per-sample forward or forward+backward
  passes, the certificate not included), and its ratio to ours.
* diversity: mean nearest-neighbour distance among ``m`` certified samples drawn at random (a
  method with fewer than ``m`` uses all of its own, and its ratio compares with ours subsampled to
  that same size, since the NN distance shrinks as a sample grows), in the embedding ``E`` (digits: ``embed(problem, x)``, the CNN's ``features.pool2``) or
  in ``x`` (slab); mean pairwise distance on the same points; ratio to ours (NN).
* slab only, coverage against exact iid uniform samples of the same size (``exact_sample``,
  ``metrics.coverage_report``): KS p-value of ``w.x`` against the exact law, NN ratio, fill
  ratio, energy z-score.

    python -m benchmarks.compare                  # everything (about 10 minutes on 2 cores)
    python -m benchmarks.compare --quick          # d = 64 and the digits high band, n = 100
    python -m benchmarks.compare --ours walk      # the reference method (any registered name)
    python -m benchmarks.compare --write docs/baselines.md   # refresh the tables in the doc
"""
from __future__ import annotations

import argparse
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

import feassample as fs
from benchmarks import cpu_name, write_block
import feassample.baselines  # noqa: F401  (registers the baselines)
from feassample import metrics



@dataclass
class Case:
    """One problem of the suite and how to judge its samples."""

    section: str
    label: str
    problem: fs.FeasibleSet
    budget: int
    embed: Callable[[torch.Tensor], torch.Tensor]
    methods: list
    slab: bool = False
    notes: list = field(default_factory=list)


# (row label, method, options). "real_inputs" is filled in for the digits cases.
SLAB_METHODS = [
    ("rejection", "rejection", {}),
    ("langevin", "langevin", {}),
    ("activation_max (band)", "activation_max", {"target": "band"}),
    ("multifaceted (band)", "multifaceted", {"target": "band"}),
    ("hit_and_run (coordinate)", "hit_and_run", {"direction": "coordinate"}),
    ("hit_and_run (random)", "hit_and_run", {"direction": "random"}),
]
DIGITS_METHODS = [
    ("rejection", "rejection", {}),
    ("langevin", "langevin", {}),
    ("activation_max (max)", "activation_max", {"target": "max"}),
    ("activation_max (band)", "activation_max", {"target": "band"}),
    ("multifaceted (band)", "multifaceted", {"target": "band", "real_inputs": None}),
    ("hit_and_run", "hit_and_run", {}),
]


def slab_cases(quick: bool, n: int) -> list[Case]:
    specs = [(64, 0.6, 0.8), (64, 0.7, 0.701)]
    if not quick:
        specs += [(784, 0.6, 0.8), (784, 0.7, 0.701)]
    cases = []
    for d, z1, z2 in specs:
        p = fs.LogisticHalfspace.random(d, z1, z2)
        kind = "thin" if z2 - z1 < 0.01 else "mid"
        cases.append(Case("slab", f"slab d={d} {kind} [{z1}, {z2}] (volume {p.volume():.2g})", p,
                          budget=1000 * n, embed=lambda x: x.reshape(x.shape[0], -1).double(),
                          methods=SLAB_METHODS, slab=True))
    return cases


def digits_cases(quick: bool, n: int, budget_per_sample: int) -> list[Case]:
    from feassample.models import digits_data, digits_neuron, embed, load_classifier, load_generator

    model, gen = load_classifier(), load_generator()
    real = digits_data("train")[0]

    def neuron(layer, unit, z1, z2):
        return digits_neuron(layer, unit, z1, z2, model=model, G=gen)

    specs = [("fc2[3] (logit of 3), high band [16, 18]", neuron("classifier.fc2", 3, 16.0, 18.0))]
    if not quick:
        specs = [("fc2[3] (logit of 3), low band [-6, -4]", neuron("classifier.fc2", 3, -6.0, -4.0)),
                 *specs,
                 ("conv2[5, 4, 4] (hidden unit), band [3.3, 4.0]", neuron("features.conv2", (5, 4, 4), 3.3, 4.0)),
                 ("fc2[3] and fc2[5] both in [8, 12] (intersection)",
                  fs.Intersection([neuron("classifier.fc2", 3, 8.0, 12.0),
                                   neuron("classifier.fc2", 5, 8.0, 12.0)]))]
    cases = []
    for label, p in specs:
        methods = [(name, m, {**o, "real_inputs": real} if "real_inputs" in o else o)
                   for name, m, o in DIGITS_METHODS]
        if "high band" in label:  # Lucid's batch diversity term, on one problem (it changes little)
            methods.insert(4, ("activation_max (band, diversity 1)", "activation_max",
                               {"target": "band", "diversity": 1.0}))
        cases.append(Case("digits", f"digits {label}", p, budget=budget_per_sample * n,
                          embed=lambda x, p=p: embed(p, x).double(), methods=methods))
    return cases


def prior_rate(problem: fs.FeasibleSet, draws: int = 20000) -> float:
    """Fraction of prior codes inside the band (the acceptance rate of rejection sampling)."""
    g = torch.Generator().manual_seed(99)
    codes = problem.project(problem.init_codes(draws, g))
    with torch.no_grad():
        return float(problem.bands.feasible(problem.measure(problem.decode(codes)).values).float().mean())


def run_one(case: Case, name: str, method: str, options: dict, n: int, k: int, seed: int,
            ours: bool) -> dict:
    row = {"name": name, "method": method, "ours": ours}
    opts = None if ours else {**options, "max_evals": case.budget}
    t0 = time.perf_counter()
    try:
        s = fs.sample(case.problem, n=n, k=k, seed=seed, method=method, options=opts)
    except TypeError as err:  # hit_and_run on a non-linear problem: reported, not run
        if "linear slab" not in str(err):
            raise
        row.update(skipped=str(err).split(";")[0].split(" (")[0])
        return row
    row["wall"] = time.perf_counter() - t0
    ok = s.feasible
    row.update(status=s.status, returned=len(s), certified=int(ok.sum()),
               evals=int(s.n_evals), x=s.x[ok].detach())
    return row


def _nn_at(case: Case, x: torch.Tensor, m: int, seed: int) -> tuple[float, float]:
    """Mean NN and mean pairwise distance of ``m`` points drawn at random from ``x``."""
    g = torch.Generator().manual_seed(seed + 7)
    e = case.embed(x[torch.randperm(x.shape[0], generator=g)[:m]])
    return float(metrics.nn_distances(e).mean()), metrics.mean_pairwise_distance(e)


def score(case: Case, rows: list[dict], m: int, seed: int, draws: int) -> None:
    """Diversity on ``m`` random certified samples (a method with fewer uses all of its own, and
    its ratio compares with ours at that same size), and (slab) coverage against exact samples."""
    ours = next(r for r in rows if r["ours"])
    for r in rows:
        if r.get("certified", 0) < 2:
            continue
        x = r["x"]
        r["m"] = min(m, x.shape[0])
        r["div_nn"], r["div_pair"] = _nn_at(case, x, r["m"], seed)
        if not r["ours"] and ours.get("certified", 0) >= r["m"]:
            r["ours_nn_same_m"] = _nn_at(case, ours["x"], r["m"], seed)[0]
        if case.slab:
            p = case.problem
            xx = x.double()
            gen = torch.Generator().manual_seed(1234 + seed)
            size = xx.shape[0]
            ref = p.exact_sample(size, generator=gen)
            probes = p.exact_sample(size, generator=gen)
            ref_draws = [p.exact_sample(size, generator=gen) for _ in range(draws)]
            cov = metrics.coverage_report(xx, ref, probes, ref_draws, t=p.t(xx), t_cdf=p.t_cdf)
            r.update(ks_p=cov["ks_p"], nn_ratio=cov["nn_ratio"], fill_ratio=cov["fill_ratio"],
                     energy_z=cov["energy_z"])


def _f(v: Optional[float], fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return format(v, fmt)


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b == 0 or not math.isfinite(b):
        return "—"
    if not math.isfinite(a):
        return "∞"
    return f"{a / b:.2g}×"


def table(case: Case, rows: list[dict], n: int) -> str:
    head = ["method", "status", "certified / n", "feasible %", "evals", "evals / acc.", "× ours",
            "diversity NN (m)", "× ours", "mean pairwise", "wall s", "× ours"]
    if case.slab:
        head += ["KS p (w.x)", "NN ratio", "fill ratio", "energy z"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ours = next(r for r in rows if r["ours"])
    ours_epa = ours["evals"] / ours["certified"] if ours.get("certified") else None
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | not run: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        epa = r["evals"] / r["certified"] if r["certified"] else math.inf
        feas = 100 * r["certified"] / r["returned"] if r["returned"] else None
        over = " (over budget)" if r["ours"] and r["evals"] > case.budget else ""
        name = f"**{r['name']} (ours)**" if r["ours"] else r["name"]
        cells = [name, r["status"], f"{r['certified']} / {n}", _f(feas, ".1f"), f"{r['evals']}{over}",
                 _f(epa, ".3g"), "—" if r["ours"] else _ratio(epa, ours_epa),
                 f"{_f(r.get('div_nn'), '.3g')} ({r.get('m', 0)})",
                 "—" if r["ours"] else _ratio(r.get("div_nn"), r.get("ours_nn_same_m")),
                 _f(r.get("div_pair"), ".3g"), f"{r['wall']:.2f}",
                 "—" if r["ours"] else _ratio(r["wall"], ours["wall"])]
        if case.slab:
            cells += [_f(r.get("ks_p"), ".2g"), _f(r.get("nn_ratio"), ".3f"),
                      _f(r.get("fill_ratio"), ".3f"), _f(r.get("energy_z"), ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(case: Case, rows: list[dict]) -> list[str]:
    """The digits targets, reported (not asserted)."""
    ours = next(r for r in rows if r["ours"])
    out = []
    if "certified" not in ours:
        return out
    feas = ours["certified"] / ours["returned"] if ours["returned"] else 0.0
    out.append(f"ours feasible {100 * feas:.1f}% of returned ({'met' if feas == 1.0 else 'NOT met'}: target 100%)")
    epa = ours["evals"] / max(ours["certified"], 1)
    for r in rows:
        if r["method"] in ("langevin", "rejection") and "certified" in r:
            other = r["evals"] / r["certified"] if r["certified"] else math.inf
            ratio = other / epa
            out.append(f"evals per accepted sample, {r['name']} / ours = {ratio:.3g} "
                       f"({'met' if ratio >= 10 else 'NOT met'}: target >= 10)")
    divs = [(r["name"], r["div_nn"] / r["ours_nn_same_m"]) for r in rows
            if not r["ours"] and "ours_nn_same_m" in r]
    if divs:
        best_name, best = max(divs, key=lambda t: t[1])
        met = best < 1
        out.append(f"diversity (mean NN in E at equal sample size): the best baseline, {best_name}, "
                   f"is {best:.3g}× ours ({'met' if met else 'NOT met'}: target ours above every baseline)")
    return out


def machine() -> str:
    return f"{cpu_name()}, torch {torch.__version__}, Python {platform.python_version()}, 1 thread"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", default="cover", help="the reference method (default: cover, the default of fs.sample)")
    parser.add_argument("--n", type=int, default=None, help="samples per run (default 300; quick: 100)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=100,
                        help="digits budget, model evaluations per requested sample (slab: 1000)")
    parser.add_argument("--m", type=int, default=100, help="samples per diversity estimate")
    parser.add_argument("--draws", type=int, default=5, help="iid reference draws (slab z-scores)")
    parser.add_argument("--quick", action="store_true", help="d = 64 and the digits high band, n = 100")
    parser.add_argument("--only", choices=("slab", "digits"), default=None)
    parser.add_argument("--write", default=None, help="replace the tables in this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("feassample").setLevel(logging.ERROR)  # partial runs are in the tables
    n = args.n or (100 if args.quick else 300)
    t_start = time.perf_counter()
    cases = []
    if args.only in (None, "slab"):
        cases += slab_cases(args.quick, n)
    if args.only in (None, "digits"):
        cases += digits_cases(args.quick, n, args.budget)
    command = "python -m benchmarks.compare" + " ".join([""] + [a for a in (argv or [])
                                                                 if not a.startswith("--write")])
    parts = [f"Command: `{command.strip()}`; n = {n}, K = {args.k}, seed = {args.seed}, "
             f"reference method `{args.ours}`; machine: {machine()}.", ""]
    print(parts[0] + "\n", flush=True)
    for case in cases:
        rows = [run_one(case, f"{args.ours}", args.ours, {}, n, args.k, args.seed, ours=True)]
        for name, method, options in case.methods:
            rows.append(run_one(case, name, method, options, n, args.k, args.seed, ours=False))
        score(case, rows, args.m, args.seed, args.draws)
        rate = prior_rate(case.problem)
        block = [f"### {case.label}", "",
                 f"Budget: {case.budget} model evaluations per method; fraction of prior codes "
                 f"inside the band: {rate:.3g}.", "", table(case, rows, n)]
        if case.section == "digits":
            block += ["", "Targets: " + "; ".join(targets(case, rows)) + "."]
        text = "\n".join(block) + "\n"
        print(text, flush=True)
        parts.append(text)
    total = time.perf_counter() - t_start
    parts.append(f"Total wall time of the suite: {total:.0f} s.")
    print(parts[-1])
    out = "\n".join(parts)
    if args.write:
        write_block(args.write, "compare", out)
    return out


if __name__ == "__main__":
    main()
