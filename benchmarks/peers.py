"""Peers side by side: UltraNest, dynesty and OpenTURNS' subset simulation against feassample's
default (``fs.sample(problem, n=500, k=10, seed=s)``) on the suite's analytic cases, all with the
uniform prior on the unit cube.

    pip install -e '.[bench]'                            # ultranest, dynesty, openturns
    python -m benchmarks.peers                           # 3 seeds, n = 500, every case and method
    python -m benchmarks.peers --write                   # ... and the table into docs/benchmarks.md
    python -m benchmarks.peers --quick                   # 1 seed, n = 100, no d = 784 case (< 2 min)
    python -m benchmarks.peers --cases slab16_1e-4 --methods feassample,dynesty --seeds 1

Cases (``cases()``; each has an exact iid sampler that is none of the methods):

* ``slab16_1e-4``, ``slab16_1e-10``: rare logistic slabs ``fs.LogisticHalfspace.random(16, z1, z2)``
  with bands [0.99, 0.999] (P = 1.5e-4) and [0.999, 0.9999] (P = 4.5e-11); exact log P from
  ``p.law.log_volume()``, exact samples from ``p.exact_sample``.
* ``slab784_thin``: ``fs.LogisticHalfspace.random(784, 0.7, 0.701)`` (P = 1.3e-3), exact as above.
* ``slab16_common``: ``fs.LogisticHalfspace.random(16, 0.5, 0.6)`` (P = 0.115).
* ``shell``: ``0.55 <= ||x - 1/2|| <= 0.6`` in ``[0, 1]^10`` (0.89% of the cube by 4e6 uniform points), the case of
  ``benchmarks.coverage``; exact samples by rejection from the uniform law; its log P is
  estimated once by plain Monte Carlo on 4 million uniform points (its SE is in the table note).

Framing (the same constraint function for every peer; ``Constraint``):

* ``u(x)``: the signed distance outside the band in band widths, ``max_j max(lo_j - h_j(x),
  h_j(x) - hi_j) / (hi_j - lo_j)`` (> 0 outside, <= 0 inside), from one float64 pass of the
  problem's ``measure``. Every row any method passes through it is counted; feassample's rows are
  counted by wrapping the problem's ``measure`` and ``check`` for the run (nested calls once), so
  its own final certificate is counted too.
* Nested samplers (UltraNest's ``ReactiveNestedSampler``, dynesty's ``NestedSampler``, defaults
  otherwise): the identity prior transform on the unit cube and ``log L = -1e6 max(u, 0)^2``, 0 on
  the set. The set is the final likelihood plateau; both stop when their live points are on it
  (dynesty stops when the live likelihoods are all equal; UltraNest only shrinks on a plateau,
  Fowlie et al. 2020). ``nlive = min_num_live_points = n``. Their samples: the rows of their
  weighted sample on the plateau (``log L = 0``), i.e. the final live points, taken unweighted (they
  carry equal weight; an equal-weight resample would only add copies); their log P estimate: log
  Z with its own ``logzerr``. Above d = 20, UltraNest uses its slice step sampler (2d steps) and
  dynesty picks ``rslice`` itself (``sample="auto"``).
* OpenTURNS ``ot.SubsetSampling`` (defaults: conditional probability 0.1, proposal range 2) on the
  event ``{u(x) <= 0}`` with ``X`` uniform on the cube, ``n`` points per level (one block of ``n``
  rows per call); its samples: the last level's points in the event
  (``getInputSample(last, EVENT1)``); its estimate: the event probability, SE of log P = its
  coefficient of variation.
* feassample: ``fs.sample(problem, n, k=10, seed=s)``, its returned rows; ``log_prob`` and
  ``log_prob_se``.

Columns, per (case, method), the worst over the seeds of each column on its own (most rows per
sample, slowest, lowest certified fraction, most duplicates, largest |error| / SE, largest energy
ratio; the log P estimate shown is the one of the seed with the largest |error|):

* returned: in-set rows the method returned (fewest over the seeds).
* rows/sample: constraint rows evaluated / returned rows certified in the set.
* wall s: the method's wall seconds (the exact reference and the judging are not included).
* certified: returned rows inside the set by ``problem.check`` (exact for the slabs).
* dups: exact duplicate rows among the returned ones.
* log P: the method's estimate ± its SE; exact: the exact value (slabs) or the Monte Carlo one.
* err/SE: (estimate - exact) / the method's own SE.
* energy ratio: the V-statistic energy distance (``benchmarks.coverage.energy``) of the method's
  rows to an exact iid sample of the same size, over the mean of the same for ``--draws``
  independent exact draws (1 for an iid sample), as in ``benchmarks.coverage.measure``;
  exact spread: the largest of those draws' own ratios. "equal quality": energy ratio <= exact
  spread on every seed.

A run that raises or passes ``--cap`` seconds (checked at each constraint call) is reported with
what stopped it instead of numbers; after a run past the cap, the other seeds of that case and
method are skipped.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import math
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

import feassample as fs
from benchmarks import cpu_name, write_block
from benchmarks.coverage import _rejection, energy

BIG = 1e6           # log L = -BIG * u^2 outside the set (u in band widths)
METHODS = ("feassample", "ultranest", "dynesty", "openturns")
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass
class Case:
    name: str
    problem: fs.FeasibleSet
    exact: Callable[[int, torch.Generator], torch.Tensor]   # (n, generator) -> exact rows (n, d), float64
    log_p: Callable[[], tuple[float, float]]                   # -> (exact log P, its SE: 0 when exact)


def _slab(d: int, z1: float, z2: float, label: str) -> Case:
    p = fs.LogisticHalfspace.random(d, z1, z2)
    return Case(f"{label} slab d={d} [{z1}, {z2}]", p,
                lambda n, g: p.exact_sample(n, generator=g).double(), lambda: (p.law.log_volume(), 0.0))


def _mc_log_p(problem: fs.FeasibleSet, m: int = 4_000_000, batch: int = 500_000) -> tuple[float, float]:
    g, hits = torch.Generator().manual_seed(123), 0
    for _ in range(m // batch):
        _, ok = problem.check(torch.rand((batch, *problem.code_shape), generator=g, dtype=torch.float64))
        hits += int(ok.sum())
    p = hits / m
    return math.log(p), math.sqrt((1 - p) / (p * m))


def cases() -> dict[str, Case]:
    shell = fs.from_functions(lambda x: (x - 0.5).norm(dim=1, keepdim=True), lo=[0.55], hi=[0.6],
                              code_shape=(10,), box=(0.0, 1.0), names=["radius"])
    cache: dict = {}
    return {
        "slab16_1e-4": _slab(16, 0.99, 0.999, "rare"),
        "slab16_1e-10": _slab(16, 0.999, 0.9999, "rare"),
        "slab784_thin": _slab(784, 0.7, 0.701, "thin"),
        "slab16_common": _slab(16, 0.5, 0.6, "common"),
        "shell": Case("shell d=10, norm(x - 1/2) in [0.55, 0.6]", shell, _rejection(shell),
                      lambda: cache.setdefault("shell", _mc_log_p(shell))),
    }


class OutOfTime(RuntimeError):
    pass


class Constraint:
    """The peers' constraint function: ``u(x)``, the signed distance outside the band in band
    widths (> 0 outside), one float64 ``measure`` pass; counts rows; raises past the deadline."""

    def __init__(self, problem: fs.FeasibleSet, cap_s: float) -> None:
        self.problem, self.rows, self.deadline = problem, 0, time.perf_counter() + cap_s
        self.lo = torch.tensor(problem.bands.lo, dtype=torch.float64)
        self.hi = torch.tensor(problem.bands.hi, dtype=torch.float64)

    def __call__(self, x) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if time.perf_counter() > self.deadline:
            raise OutOfTime(f"past the cap after {self.rows} rows")
        self.rows += x.shape[0]
        codes = torch.from_numpy(x).reshape(-1, *self.problem.code_shape)
        with torch.no_grad():
            v = self.problem.measure(self.problem.decode(codes)).values.double()
        u = torch.maximum(self.lo - v, v - self.hi) / (self.hi - self.lo)
        return u.max(dim=1).values.numpy()

    def loglike(self, x) -> np.ndarray:
        return -BIG * np.maximum(self(x), 0.0) ** 2


class CountRows:
    """Count the rows passed to a problem's ``measure`` and ``check`` (nested calls once), by
    wrapping them on the instance for the duration of a ``with`` block."""

    def __init__(self, problem: fs.FeasibleSet) -> None:
        self.problem, self.rows, self.depth = problem, 0, 0

    def _wrap(self, fn):
        def counted(x, *args, **kwargs):
            if self.depth == 0:
                self.rows += int(x.shape[0])
            self.depth += 1
            try:
                return fn(x, *args, **kwargs)
            finally:
                self.depth -= 1
        return counted

    def __enter__(self):
        for name in ("measure", "check"):
            setattr(self.problem, name, self._wrap(getattr(self.problem, name)))
        return self

    def __exit__(self, *exc):
        for name in ("measure", "check"):
            delattr(self.problem, name)


# -- the methods: each returns (rows (m, d) float64, constraint rows, log P, SE, note) -------------

def run_feassample(case: Case, n: int, k: int, seed: int, cap_s: float):
    with CountRows(case.problem) as count:
        s = fs.sample(case.problem, n=n, k=k, seed=seed)
    lp, se = s.log_prob, s.log_prob_se
    return (s.codes.double().flatten(1), count.rows, math.nan if lp is None else lp,
            math.nan if se is None else se, s.status)


def run_ultranest(case: Case, n: int, k: int, seed: int, cap_s: float):
    import ultranest
    import ultranest.stepsampler
    d = int(np.prod(case.problem.code_shape))
    con = Constraint(case.problem, cap_s)
    np.random.seed(seed)
    sampler = ultranest.ReactiveNestedSampler([f"x{i}" for i in range(d)], con.loglike,
                                              transform=lambda u: u.copy(), vectorized=True)
    logging.getLogger("ultranest").setLevel(logging.WARNING)   # set after the sampler made its logger
    if d > 20:
        sampler.stepsampler = ultranest.stepsampler.SliceSampler(
            nsteps=2 * d, generate_direction=ultranest.stepsampler.generate_mixture_random_direction)
    r = sampler.run(min_num_live_points=n, show_status=False, viz_callback=False)
    w = r["weighted_samples"]
    inside = w["logl"] >= 0
    return np.asarray(w["points"])[inside], con.rows, float(r["logz"]), float(r["logzerr"]), ""


def run_dynesty(case: Case, n: int, k: int, seed: int, cap_s: float):
    import dynesty
    d = int(np.prod(case.problem.code_shape))
    con = Constraint(case.problem, cap_s)
    sampler = dynesty.NestedSampler(lambda x: float(con.loglike(x)[0]), lambda u: u.copy(), d, nlive=n,
                                    rstate=np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "We have reached the plateau ...": the intended stop
        sampler.run_nested(dlogz=1e-3, print_progress=False)
    r = sampler.results
    inside = np.asarray(r.logl) >= 0
    return np.asarray(r.samples)[inside], con.rows, float(r.logz[-1]), float(r.logzerr[-1]), ""


def run_openturns(case: Case, n: int, k: int, seed: int, cap_s: float):
    import openturns as ot
    d = int(np.prod(case.problem.code_shape))
    con = Constraint(case.problem, cap_s)
    ot.RandomGenerator.SetSeed(seed)
    g = ot.PythonFunction(d, 1, func_sample=lambda X: con(np.asarray(X))[:, None])
    X = ot.RandomVector(ot.JointDistribution([ot.Uniform(0.0, 1.0)] * d))
    event = ot.ThresholdEvent(ot.CompositeRandomVector(g, X), ot.LessOrEqual(), 0.0)
    ss = ot.SubsetSampling(event)
    ss.setMaximumOuterSampling(1)
    ss.setBlockSize(n)
    ss.setKeepSample(True)
    ss.run()
    res = ss.getResult()
    rows = np.asarray(ss.getInputSample(ss.getStepsNumber() - 1, ss.EVENT1))
    p, cov = res.getProbabilityEstimate(), res.getCoefficientOfVariation()
    return rows, con.rows, math.log(p) if p > 0 else -math.inf, cov, f"{ss.getStepsNumber()} levels"


RUNNERS = {"feassample": run_feassample, "ultranest": run_ultranest, "dynesty": run_dynesty,
           "openturns": run_openturns}


def judge(case: Case, method: str, seed: int, n: int, k: int, draws: int, cap_s: float) -> dict:
    row = {"case": case.name, "method": method, "seed": seed}
    t0 = time.perf_counter()
    try:
        x, rows, lp, se, note = RUNNERS[method](case, n, k, seed, cap_s)
    except Exception as e:   # a peer that fails or passes the cap: reported, not fatal
        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}",
                   wall_s=time.perf_counter() - t0)
        return row
    row["wall_s"] = time.perf_counter() - t0
    size = int(np.prod(case.problem.code_shape))
    x = torch.as_tensor(np.array(x, dtype=np.float64)).reshape(len(x), size)
    m = x.shape[0]
    ok = case.problem.check(x.reshape(m, *case.problem.code_shape))[1] if m else torch.zeros(0, dtype=torch.bool)
    exact_lp, exact_se = case.log_p()
    row.update(returned=m, rows=rows, rows_per_sample=rows / int(ok.sum()) if int(ok.sum()) else math.inf,
               certified=float(ok.double().mean()) if m else 0.0,
               duplicates=m - int(torch.unique(x, dim=0).shape[0]) if m else 0,
               log_p=lp, log_p_se=se, exact_log_p=exact_lp, exact_se=exact_se, note=note)
    sd = math.sqrt(se ** 2 + exact_se ** 2) if math.isfinite(se) else math.nan
    row["err_se"] = (lp - exact_lp) / sd if sd > 0 and math.isfinite(lp) else math.nan
    if m >= 10:
        g = torch.Generator().manual_seed(10_000 + seed)
        ref = case.exact(m, g).flatten(1)
        nulls = [energy(case.exact(m, g).flatten(1), ref) for _ in range(draws)]
        scale = max(float(np.mean(nulls)), 1e-300)
        row["energy_ratio"] = energy(x, ref) / scale
        row["exact_spread"] = max(nulls) / scale
    return row


def _f(v, spec=".3g") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(rows: list[dict]) -> str:
    head = ["case", "method", "returned", "rows/sample", "wall s", "certified", "dups",
            "log P (± SE)", "exact log P", "err/SE", "energy ratio", "exact spread", "equal quality"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["method"]), []).append(r)
    for (case, method), rs in groups.items():
        bad = [r for r in rs if "error" in r]
        if bad:
            out.append(f"| {case} | {method} | " + " | ".join(["—"] * (len(head) - 3))
                       + f" | failed on {len(bad)}/{len(rs)} seed(s) run: {bad[0]['error']} "
                       f"({bad[0]['wall_s']:.0f} s) |")
            continue
        worst = max(rs, key=lambda r: abs(r["err_se"]) if math.isfinite(r["err_se"]) else -1)
        er = [r.get("energy_ratio", math.inf) for r in rs]
        spread = [r.get("exact_spread", math.nan) for r in rs]
        equal = all(r.get("energy_ratio", math.inf) <= r.get("exact_spread", -1) for r in rs)
        exact = worst["exact_log_p"]
        exact_s = _f(exact, ".4g") + (f" ± {worst['exact_se']:.2g}" if worst["exact_se"] > 0 else "")
        out.append("| " + " | ".join([
            case, method, str(min(r["returned"] for r in rs)),
            _f(max(r["rows_per_sample"] for r in rs), ".4g"), _f(max(r["wall_s"] for r in rs), ".3g"),
            f"{min(r['certified'] for r in rs):.1%}", str(max(r["duplicates"] for r in rs)),
            f"{_f(worst['log_p'], '.4g')} ± {_f(worst['log_p_se'], '.2g')}", exact_s,
            _f(worst["err_se"], ".2f"), _f(max(er), ".3g"), _f(max(spread), ".3g"),
            "yes" if equal else "no"]) + " |")
    return "\n".join(out)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(cases()))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--draws", type=int, default=10, help="exact draws for the energy null")
    parser.add_argument("--cap", type=float, default=120.0,
                        help="wall seconds per run before it is stopped (the next seeds of that case "
                             "and method are then skipped)")
    parser.add_argument("--quick", action="store_true", help="1 seed, n = 100, no d = 784 case")
    parser.add_argument("--write", nargs="?", const=str(DOC), default=None,
                        help=f"put the table in this file (default {DOC.relative_to(DOC.parent.parent)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.n, args.draws, args.cap = 1, 100, 5, 30.0
        args.cases = ",".join(c for c in args.cases.split(",") if c != "slab784_thin")
    torch.set_num_threads(1)
    available = cases()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [c for c in chosen if c not in available] + [m for m in methods if m not in RUNNERS]
    if unknown:
        parser.error(f"unknown case(s) or method(s) {unknown}; cases {sorted(available)}, methods {list(RUNNERS)}")
    versions = {"torch": torch.__version__}
    for name in ("ultranest", "dynesty", "openturns"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    for name in methods:   # imported before any run, so that no run's wall time holds an import
        if name != "feassample":
            try:
                __import__(name)
            except ImportError:
                pass   # its rows say so
    rows, t0 = [], time.perf_counter()
    for name in chosen:
        for method in methods:
            for seed in range(args.seeds):
                if rows and rows[-1]["case"] == available[name].name and rows[-1]["method"] == method \
                        and "OutOfTime" in rows[-1].get("error", ""):
                    break   # past the cap once: the other seeds would be too
                r = judge(available[name], method, seed, args.n, args.k, args.draws, args.cap)
                print(f"  {name} {method} seed {seed}: " + ", ".join(
                    f"{k} {_f(v) if isinstance(v, float) else v}" for k, v in r.items()
                    if k not in ("case", "method", "seed")), flush=True)
                rows.append(r)
    shell_note = ""
    if "shell" in chosen:
        lp, se = available["shell"].log_p()
        shell_note = (f" The shell's exact log P is plain Monte Carlo on 4,000,000 uniform points "
                      f"({lp:.4f} ± {se:.4f}); its err/SE uses both SEs.")
    cmd = "python -m benchmarks.peers" + (" --quick" if args.quick else "") + (
        f" --cases {args.cases}" if args.cases != ",".join(available) and not args.quick else "") + (
        f" --methods {args.methods}" if args.methods != ",".join(METHODS) else "") + (
        f" --seeds {args.seeds} --n {args.n}" if not args.quick and (args.seeds, args.n) != (3, 500) else "") + (
        f" --cap {args.cap:g}" if not args.quick and args.cap != 120.0 else "")
    text = "\n".join([
        f"Measured {datetime.date.today().isoformat()}: `{cmd}`; {cpu_name()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f", Python {platform.python_version()}, 1 torch thread; n = {args.n}, k = {args.k}, "
        f"{args.seeds} seed(s) (worst shown), {args.draws} exact draws for the energy null, "
        f"cap {args.cap:.0f} s per run; {time.perf_counter() - t0:.0f} s in all.{shell_note}",
        "", table(rows)])
    print(text)
    if args.write:
        write_block(args.write, "peers", text)
    return text


if __name__ == "__main__":
    main()
