"""Coverage beyond the slab: is a method's sample spread like an exact sample of the prior
restricted to the set, on sets the covering walk was not tuned on? Measured side by side, per
case and method, over several seeds (the worst seed is what counts).

Cases (each with an exact sampler that does not come from our samplers):

* ``slab64``, ``slab784_thin``: the Gaussian-weight logistic slabs the covering walk was tuned
  on (d = 64, band [0.6, 0.8]; d = 784, band [0.7, 0.701]); exact: the slab's exact sampler. The
  cost target there is 10 evaluations per sample.
* ``shell``: a thin spherical shell ``0.55 <= ||x - 1/2|| <= 0.6`` in ``[0, 1]^10`` (0.89% of
  the cube: 4e6 uniform points); exact: rejection from the uniform law on the cube.
* ``two slabs``: the intersection of two logistic slabs in ``[0, 1]^32``; exact: rejection.
* ``heavy tails``: a logistic slab at d = 784 whose weights are Student-t (1.5 degrees of
  freedom); exact: the slab's own exact sampler (``SlabLaw``, docs/ground-truth.md).
* ``two pieces``: ``a <= |w.x - m| <= b`` in ``[0, 1]^16``, two slabs separated by a gap;
  exact: rejection. The share of samples in the upper piece is compared with the exact share.
* ``foreign``: a small image network that is not ours (random weights), one channel of its last
  conv stage in pixel space, in a band that noise never reaches; no exact sampler: two seeds must
  agree (KS on the unit's value, the mean pixel, the distance to the centre), with no exact
  duplicates and R-hat <= 1.01.
* ``digits``: the zoo CNN's logit 3 in [4, 8] through the VAE decoder (code ball r = 4),
  compared in the classifier's embedding E (the paper's space); exact: rejection from the code
  prior (``method="rejection"``: exact draws of the prior restricted to the band).

Per case, method and seed: the certified fraction, model evaluations per sample, wall seconds;
for a few scalar statistics (each constraint's value, the first coordinate, the distance to the
box's centre) the two-sample KS p-value and the z-score of the mean against an equal-size exact
sample; the NN ratio, the fill ratio, and an energy ratio (the V-statistic energy distance to an
exact reference, over the mean of the same for independent exact draws: 1 for iid); the piece
shares; exact duplicate rows; the R-hat reported by the run when it has diagnostics. The summary
checks the issue's targets: at most one seed with |z| > 3 per statistic, rms z <= 1.3,
NN ratio >= 0.9, fill ratio <= 1.05, energy ratio <= 1.3, shares within 3 iid standard deviations.

    python -m benchmarks.coverage                         # every case, smc (the default), cover and rejection, 10 seeds
    python -m benchmarks.coverage --methods cover,smc --seeds 5 --cases shell,two_pieces
    python -m benchmarks.coverage --quick                 # 2 seeds, n = 200: a smoke run
    python -m benchmarks.coverage --cases pretrained --methods smc,cover [--quick] [--write]

``pretrained`` (opt-in, not in the default list: tens of minutes on a CPU): MTCNN's ONet with
the weights shipped in ``facenet-pytorch``, units of its output and of a hidden conv layer in
bands of prior probability below 1e-10; see ``benchmarks/pretrained.py`` (skipped, with a
message, when facenet-pytorch is not installed).
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from scipy import stats as sstats

import feassample as fs
from feassample import metrics
from benchmarks import markdown


@dataclass
class Case:
    name: str
    problem: fs.FeasibleSet
    exact: Callable[[int, torch.Generator], torch.Tensor]     # (n, generator) -> exact samples
    statistics: Callable[[torch.Tensor], dict]                   # x (n, d) -> {name: (n,)}
    pieces: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # x -> (n,) bool: upper piece
    space: Optional[Callable[[torch.Tensor], torch.Tensor]] = None   # codes -> points compared (default: x)


def _rejection(problem: fs.FeasibleSet, batch: int = 200_000):
    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        got, total = [], 0
        while total < n:
            x = torch.rand((batch, *problem.code_shape), generator=g, dtype=torch.float64)
            _, ok = problem.check(x.float())
            x = x[ok]
            got.append(x)
            total += x.shape[0]
        return torch.cat(got)[:n]
    return draw


def _base_stats(problem):
    def statistics(x: torch.Tensor) -> dict:
        x = x.double().flatten(1)
        with torch.no_grad():
            values = problem.measure(problem.decode(x.to(torch.float32).reshape(-1, *problem.code_shape))).values
        out = {f"h{j}": values[:, j].double() for j in range(values.shape[1])}
        out["x0"] = x[:, 0]
        out["radius"] = (x - 0.5).norm(dim=1)
        return out
    return statistics


def cases() -> dict[str, Case]:
    shell = fs.from_functions(lambda x: (x - 0.5).norm(dim=1, keepdim=True), lo=[0.55], hi=[0.6],
                              code_shape=(10,), box=(0.0, 1.0), names=["radius"])
    s1 = fs.LogisticHalfspace.random(32, 0.3, 0.7, w_seed=0)
    s2 = fs.LogisticHalfspace.random(32, 0.3, 0.7, w_seed=1)
    slabs = fs.Intersection([s1, s2])
    w = torch.from_numpy(np.random.default_rng(5).standard_t(1.5, size=784)).float() * 0.05
    heavy = fs.LogisticHalfspace(w, c=-float(w.sum()) / 2, z1=0.6, z2=0.8)
    w16 = torch.from_numpy(np.random.default_rng(7).normal(size=16)).float()
    mid = float(w16.sum()) / 2
    gap = fs.from_functions(lambda x: (x @ w16.to(x.dtype) - mid).abs().unsqueeze(1), lo=[0.3], hi=[0.9],
                            code_shape=(16,), box=(0.0, 1.0), names=["|w.x - m|"])

    def heavy_stats(x):
        out = _base_stats(heavy)(x)
        out["w.x"] = heavy.t(x.double()) if hasattr(heavy, "t") else out["h0"]
        return out

    out = {
        "shell": Case("shell", shell, _rejection(shell), _base_stats(shell)),
        "two_slabs": Case("two slabs", slabs, _rejection(slabs), _base_stats(slabs)),
        "heavy_tails": Case("heavy tails", heavy, lambda n, g: heavy.exact_sample(n, generator=g).double(),
                            heavy_stats),
        "two_pieces": Case("two pieces", gap, _rejection(gap), _base_stats(gap),
                           pieces=lambda x: (x.double().flatten(1) @ w16.double() - mid) > 0),
    }
    for key, (d, z1, z2) in {"slab64": (64, 0.6, 0.8), "slab784_thin": (784, 0.7, 0.701)}.items():
        slab = fs.LogisticHalfspace.random(d, z1, z2)
        out[key] = Case(f"Gaussian slab d={d} [{z1}, {z2}]", slab,
                        lambda n, g, slab=slab: slab.exact_sample(n, generator=g).double(),
                        _base_stats(slab))
    out["digits"] = _digits_case()
    return out


def _digits_case() -> Case:
    """A digits band through the VAE: compared in the classifier's embedding E (the paper's
    space) with rejection samples, which are exact draws of the code prior restricted to the band."""
    from feassample.models import digits_neuron
    problem = digits_neuron("classifier.fc2", 3, 4.0, 8.0)

    def embed(codes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            m = problem.measure(problem.decode(codes.float().reshape(-1, *problem.code_shape)))
        return torch.cat([m.values, m.embedding], 1).double()

    def exact(n: int, g: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        return fs.sample(problem, n=n, k=10, seed=seed, method="rejection",
                         options={"max_evals": 5000 * n}).codes.double()

    def statistics(codes: torch.Tensor) -> dict:
        e = embed(codes)
        return {"unit": e[:, 0], "e_norm": e[:, 1:].norm(dim=1), "code_norm": codes.double().flatten(1).norm(dim=1)}

    return Case("digits [4, 8]", problem, exact, statistics, space=embed)

def energy(x: torch.Tensor, y: torch.Tensor) -> float:
    """The V-statistic energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (>= 0)."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def measure(case: Case, method: str, n: int, k: int, seed: int, draws: int) -> dict:
    t0 = time.perf_counter()
    s = fs.sample(case.problem, n=n, k=k, seed=seed, method=method)
    wall = time.perf_counter() - t0
    space = case.space or (lambda c: c.double().flatten(1))
    x = space(s.codes)
    g = torch.Generator().manual_seed(10_000 + seed)
    ref_codes = case.exact(n, g)
    ref = space(ref_codes)
    probes = space(case.exact(n, g))
    nulls = [space(case.exact(n, g)) for _ in range(draws)]
    row = {"case": case.name, "method": method, "seed": seed, "n": len(s), "status": s.status,
           "certified": float(s.feasible.float().mean()) if len(s) else 0.0,
           "evals_per_sample": s.n_evals / max(len(s), 1), "wall_s": wall,
           "duplicates": len(s) - int(torch.unique(s.codes.flatten(1), dim=0).shape[0]),
           "rhat": s.stats.get("rhat_max", math.nan)}
    if len(s) < 10:
        return row
    ours, theirs = case.statistics(s.codes.double()), case.statistics(ref_codes)
    for key in ours:
        a, b = ours[key].numpy(), theirs[key].numpy()
        row[f"ks_p[{key}]"] = float(sstats.ks_2samp(a, b).pvalue)
        se = math.sqrt(a.var() / len(a) + b.var() / len(b)) or math.inf
        row[f"z[{key}]"] = float((a.mean() - b.mean()) / se)
    row["nn_ratio"] = metrics.nn_ratio(x, ref)
    row["fill_ratio"] = metrics.fill_ratio(x, ref, probes)
    null = [energy(v, ref) for v in nulls]
    row["energy_ratio"] = energy(x, ref) / max(float(np.mean(null)), 1e-300)
    if case.pieces is not None:
        big = case.exact(20_000, g).flatten(1)
        p = float(case.pieces(big).double().mean())
        share = float(case.pieces(s.codes).double().mean())
        row["share"], row["share_exact"] = share, p
        row["share_sd"] = (share - p) / math.sqrt(p * (1 - p) / len(x))
    return row


class ForeignNet(torch.nn.Module):
    """A small image network that is not ours (random weights, fixed seed): conv-relu-pool x2."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.features(x)


def foreign_problem() -> fs.NeuronInverseSet:
    """Channel 5 of the last conv stage of ``ForeignNet`` in pixel space, in a band that uniform
    noise does not reach (above the largest value seen on 2,000 noise images)."""
    net = ForeignNet().eval()
    with torch.no_grad():
        noise = net(torch.rand(2000, 3, 16, 16, generator=torch.Generator().manual_seed(0)))[:, 5].mean((1, 2))
    top = float(noise.max())
    return fs.NeuronInverseSet(net, "features.4", (5,), top * 1.05, top * 1.25, input_shape=(3, 16, 16),
                               input_range=(0.0, 1.0))


def agreement(method: str, n: int, k: int, seeds: tuple[int, int] = (0, 1), problem=None,
              name: str = "foreign net", runs=None) -> dict:
    """Two runs with different seeds must agree (KS on the unit's value, the mean pixel, the
    distance to the box's centre): for sets with no exact sample. ``problem`` defaults to the
    foreign-network case; ``runs`` (two finished runs of ``problem``) skips the sampling."""
    problem = foreign_problem() if problem is None else problem
    if runs is None:
        runs = [fs.sample(problem, n=n, k=k, seed=s, method=method) for s in seeds]
    row = {"case": name, "method": method, "n": n,
           "certified": min(float(r.feasible.float().mean()) for r in runs),
           "evals_per_sample": max(r.n_evals / max(len(r), 1) for r in runs),
           "duplicates": max(duplicates(r) for r in runs),
           "rhat": max(rhat(r) for r in runs)}
    row.update(seed_ks(runs, box_centre(problem)))
    return row


def duplicates(s) -> int:
    """Exact duplicate rows of a run's codes."""
    return len(s) - int(torch.unique(s.codes.flatten(1), dim=0).shape[0])


def rhat(s) -> float:
    """The run's worst R-hat: from its diagnostics, else its stats; NaN where not checked."""
    value = (s.diagnostics or {}).get("rhat_max", s.stats.get("rhat_max"))
    return math.nan if value is None else float(value)


def box_centre(problem) -> float:
    """The centre of the inputs' range (one number for every pixel); 1/2 without a range."""
    lo_hi = getattr(problem, "input_range", None) or getattr(problem, "box", None)
    return 0.5 if lo_hi is None else (float(lo_hi[0]) + float(lo_hi[1])) / 2


def seed_ks(runs, centre: float = 0.5) -> dict:
    """KS p-values between two runs: the unit's value, the mean pixel, the distance to the centre."""
    stats = [{"unit": r.values[:, 0].double(), "mean_pixel": r.x.double().flatten(1).mean(1),
              "radius": (r.x.double().flatten(1) - centre).norm(dim=1)} for r in runs]
    return {f"ks_p[{key}]": float(sstats.ks_2samp(stats[0][key].numpy(), stats[1][key].numpy()).pvalue)
            for key in stats[0]} if min(len(r) for r in runs) else {}


def agreement_verdict(row: dict) -> str:
    checks = {f"no exact duplicates ({row['duplicates']})": row["duplicates"] == 0,
              f"R-hat <= 1.01 ({row['rhat']:.3g})": row["rhat"] <= 1.01,
              **{f"two seeds agree, {k} (p {v:.2g})": v > 0.01 for k, v in row.items() if k.startswith("ks_p[")},
              f"evals/sample <= 30 ({row['evals_per_sample']:.1f})": row["evals_per_sample"] <= 30}
    met = [k for k, v in checks.items() if v]
    missed = [k for k, v in checks.items() if not v]
    return (f"- **foreign net, {row['method']}**: met: {'; '.join(met) or 'none'}"
            f"{'; **missed**: ' + '; '.join(missed) if missed else ''}")


def verdict(rows: list[dict]) -> list[str]:
    """Each (case, method): the issue's targets, met or missed, over the seeds."""
    lines = []
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["method"]), []).append(r)
    for (case, method), rs in groups.items():
        zs = {k: [r[k] for r in rs if k in r] for k in rs[0] if k.startswith("z[")}
        big = {k: sum(abs(v) > 3 for v in vals) for k, vals in zs.items()}
        allz = [v for vals in zs.values() for v in vals]
        rms = math.sqrt(sum(v * v for v in allz) / max(len(allz), 1))
        checks = {
            "certified 100%": all(r["certified"] == 1.0 for r in rs),
            "|z|>3 on <= 1 seed per statistic": all(c <= 1 for c in big.values()),
            f"rms z <= 1.3 ({rms:.2f})": rms <= 1.3,
            f"NN ratio >= 0.9 (worst {min(r.get('nn_ratio', 0) for r in rs):.3f})":
                min(r.get("nn_ratio", 0) for r in rs) >= 0.9,
            f"fill ratio <= 1.05 (worst {max(r.get('fill_ratio', math.inf) for r in rs):.3f})":
                max(r.get("fill_ratio", math.inf) for r in rs) <= 1.05,
            f"energy ratio <= 1.3 (worst {max(r.get('energy_ratio', math.inf) for r in rs):.2f})":
                max(r.get("energy_ratio", math.inf) for r in rs) <= 1.3,
        }
        if "share_sd" in rs[0]:
            worst = max(abs(r["share_sd"]) for r in rs)
            checks[f"piece share within 3 SD (worst {worst:.2f} SD)"] = worst <= 3
        evals = max(r["evals_per_sample"] for r in rs)
        cap = 10 if case.startswith("Gaussian slab") else 30
        checks[f"evals/sample <= {cap} (worst {evals:.1f})"] = evals <= cap
        met = [k for k, v in checks.items() if v]
        missed = [k for k, v in checks.items() if not v]
        lines.append(f"- **{case}, {method}** ({len(rs)} seeds): met: {'; '.join(met) or 'none'}"
                     f"{'; **missed**: ' + '; '.join(missed) if missed else ''}")
    return lines


def table(rows: list[dict]) -> str:
    keys = ["case", "method", "seed", "status", "certified", "evals_per_sample", "wall_s", "nn_ratio",
            "fill_ratio", "energy_ratio", "duplicates", "rhat"]
    zkeys = sorted({k for r in rows for k in r if k.startswith(("z[", "ks_p["))})
    extra = ["share", "share_exact", "share_sd"] if any("share" in r for r in rows) else []
    head = keys + zkeys + extra

    return markdown(rows, head, fmt=lambda v: f"{v:.3g}" if isinstance(v, float) else ("" if v is None else str(v)))


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="smc,cover,rejection")
    parser.add_argument("--cases", default="slab64,slab784_thin,shell,two_slabs,heavy_tails,two_pieces,digits,foreign")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--draws", type=int, default=5, help="exact draws for the energy null")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 seeds, n = 200")
    parser.add_argument("--write", action="store_true",
                        help="with --cases pretrained: write its tables into docs/benchmarks.md")
    parser.add_argument("--exact-n", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.n, args.draws = 2, 200, 3
    torch.set_num_threads(args.threads)
    available = cases()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in available and c not in ("foreign", "pretrained")]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(available)}")
    rows = []
    t0 = time.perf_counter()
    foreign, pretrained = [], ""
    for name in chosen:
        if name == "pretrained":
            pretrained = run_pretrained(args)
            continue
        if name == "foreign":
            foreign = [agreement(m.strip(), args.n, args.k) for m in args.methods.split(",")]
            continue
        for method in args.methods.split(","):
            for seed in range(args.seeds):
                rows.append(measure(available[name], method.strip(), args.n, args.k, seed, args.draws))
    text = "\n".join([
        f"Command: `python -m benchmarks.coverage --methods {args.methods} --cases {args.cases} "
        f"--seeds {args.seeds} --n {args.n} --k {args.k}`; torch {torch.__version__}, "
        f"Python {platform.python_version()}, {args.threads} thread(s); {time.perf_counter() - t0:.0f} s.",
        *(["", table(rows), "", "Targets (issue 11), worst over the seeds:", *verdict(rows)] if rows else []),
        *([""] + ["Foreign network (two seeds must agree; no exact sampler):", "",
                  table(foreign), ""] + [agreement_verdict(r) for r in foreign] if foreign else []),
        *(["", "Pretrained networks (benchmarks/pretrained.py):", "", pretrained] if pretrained else [])])
    print(text)
    return text


def run_pretrained(args) -> str:
    """The pretrained-network cases (``benchmarks.pretrained``; opt-in: ``--cases pretrained``).
    Rejection is left out: it cannot reach a band of probability below 1e-10."""
    from benchmarks import pretrained
    methods = [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != "rejection"]
    argv = ["--methods", ",".join(methods), "--k", str(args.k), "--threads", str(args.threads)]
    return pretrained.main(argv + ["--quick"] * args.quick + ["--write"] * args.write, echo=False)


if __name__ == "__main__":
    main()
