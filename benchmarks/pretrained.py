"""Pretrained image networks whose weights ship inside their package (nothing downloads at run
time): MTCNN's output network ONet from ``facenet-pytorch`` (input 3x48x48 in [-1, 1]), one unit
of its output and one channel of a hidden conv layer, each in a band of prior probability below
1e-10 (uniform noise never reaches it). No exact sampler exists, so the checks are internal:

* per case, method and n: model evaluations per returned sample, wall seconds, the run's
  diagnostics (mixed, R-hat), exact duplicate rows, and seed agreement (two seeds, KS p > 0.01
  on the unit's value, the mean pixel and the distance to the box's centre: ``coverage.agreement``);
* ``log_prob`` calibration: two seeds, and the default population (``clamp(ceil(n / 4), 32, 512)``
  particles) against another population (``--other-particles``, default 256), agree within 3
  combined standard errors; each of them lies within 2 combined standard errors
  of a reference run with more particles (default 1024, at the smallest n).

Cases: ``onet_output``: ``dense6_1`` logit 1 (the face logit; mean -3.23, sd 0.51 under uniform
noise) in [1, 2]; ``onet_conv4``: channel 0 of ``conv4`` (its spatial mean over the 3x3 map, before
the PReLU; mean 0.74, sd 0.049 under noise) in [1.1, 1.3].

    python -m benchmarks.pretrained                          # both cases, smc and cover, n = 60 and 500, reference
    python -m benchmarks.pretrained --quick                  # n = 60, no reference run: a smoke run
    python -m benchmarks.pretrained --cases onet_output --methods smc --sizes 60 --write
    python -m benchmarks.coverage --cases pretrained [--quick] [--write]   # the same from coverage.py

Needs ``facenet-pytorch`` (``pip install facenet-pytorch --no-deps``: its pins want an older
torch; it imports torchvision, which ``feassample.models.vision`` makes importable); without it
the cases are skipped with a message.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

import feassample as fs
from benchmarks import cpu_name, write_block, markdown
from benchmarks.coverage import agreement, duplicates, rhat

SKIP = ("pretrained cases skipped: facenet-pytorch is not installed "
        "(pip install facenet-pytorch --no-deps; its weights ship inside the wheel)")
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# name -> (label, layer, unit, z1, z2)
CASES = {
    "onet_output": ("ONet dense6_1[1] (face logit) in [1, 2]", "dense6_1", 1, 1.0, 2.0),
    "onet_conv4": ("ONet conv4 channel 0 (spatial mean) in [1.1, 1.3]", "conv4", (0,), 1.1, 1.3),
}


def onet():
    """MTCNN's ONet with the weights shipped in the facenet-pytorch wheel, or ``None``."""
    try:
        import feassample.models.vision  # noqa: F401  (torchvision importable on a CPU torch)
    except ImportError:
        pass
    try:
        from facenet_pytorch.models.mtcnn import ONet
    except ImportError:
        return None
    return ONet(pretrained=True).eval()


def problem(net, name: str) -> fs.NeuronInverseSet:
    _, layer, unit, z1, z2 = CASES[name]
    return fs.NeuronInverseSet(net, layer, unit, z1, z2, input_shape=(3, 48, 48), input_range=(-1.0, 1.0))


def run(p, method: str, n: int, k: int, seed: int, particles=None):
    """One run and its wall seconds; ``particles`` sets the SMC population (smc only)."""
    options = {"particles": particles} if particles else {}
    t0 = time.perf_counter()
    s = fs.sample(p, n=n, k=k, seed=seed, method=method, **({"options": options} if options else {}))
    return s, time.perf_counter() - t0


def spread_row(label, p, method, n, runs) -> dict:
    """Cost, diagnostics, duplicates and seed agreement of two runs (``coverage.agreement``)."""
    samples = [s for s, _ in runs]
    row = agreement(method, n, 0, problem=p, name=label, runs=samples)
    diags = [s.diagnostics or {} for s in samples]
    row.update(status="/".join(s.status for s in samples), returned="/".join(str(len(s)) for s in samples),
               wall_s="/".join(f"{w:.0f}" for _, w in runs),
               mixed="/".join(mixing(d) for d in diags),
               rhat=max(rhat(s) for s in samples))
    return row


def mixing(diag: dict) -> str:
    """``yes``/``NO`` (R-hat and ESS checked), ``indep.`` (independent draws) or ``not checked``."""
    if diag.get("independent"):
        return "indep."
    return {True: "yes", False: "NO"}.get(diag.get("mixed"), "not checked")


def z(a, b) -> float:
    """(a - b) over the combined standard error of two runs' log_prob; NaN without estimates."""
    if a.log_prob is None or b.log_prob is None:
        return math.nan
    se = math.hypot(a.log_prob_se or math.nan, b.log_prob_se or math.nan)
    return (a.log_prob - b.log_prob) / se if se > 0 else math.nan


def calibration_rows(label, method, runs: dict, ref_key) -> list[dict]:
    """One row per run: log_prob ± SE, z against the first run (the first seed; target |z| <= 3)
    and against the reference (target |z| <= 2)."""
    base_key = next(iter(runs))
    base = runs[base_key][0]
    ref = runs[ref_key][0] if ref_key in runs else None
    rows = []
    for key, (s, wall) in runs.items():
        rows.append({"case": label, "method": method, "run": key, "n": len(s),
                     "particles": s.stats.get("particles", ""), "log_prob": s.log_prob, "se": s.log_prob_se,
                     "z_first": z(s, base) if key != base_key else math.nan,
                     "z_ref": z(s, ref) if ref is not None and key != ref_key else math.nan,
                     "evals_per_sample": s.n_evals / max(len(s), 1), "wall_s": wall})
    return rows


def measure_case(net, name: str, method: str, args) -> tuple[list[dict], list[dict], float]:
    """Every run of one case and method: the spread rows (one per n), the calibration rows, seconds."""
    t0 = time.perf_counter()
    label, p = CASES[name][0], problem(net, name)
    spread, first = [], None
    for n in args.sizes:
        runs = [run(p, method, n, args.k, seed) for seed in args.seeds]
        spread.append(spread_row(label, p, method, n, runs))
        first = first or runs
    calib = {}
    if first[0][0].log_prob is not None:
        n0 = args.sizes[0]
        calib = {f"seed {s}": r for s, r in zip(args.seeds, first)}
        if args.other_particles:
            calib[f"particles {args.other_particles}"] = run(p, method, n0, args.k, args.seeds[0], args.other_particles)
        if args.ref_particles:
            calib[f"reference {args.ref_particles}"] = run(p, method, n0, args.k, args.seeds[0] + 100, args.ref_particles)
    rows = calibration_rows(label, method, calib, f"reference {args.ref_particles}") if calib else []
    return spread, rows, time.perf_counter() - t0


SPREAD_KEYS = ["case", "method", "n", "status", "returned", "certified", "evals_per_sample", "wall_s", "mixed",
               "rhat", "duplicates", "ks_p[unit]", "ks_p[mean_pixel]", "ks_p[radius]"]
CALIB_KEYS = ["case", "method", "run", "n", "particles", "log_prob", "se", "z_first", "z_ref",
              "evals_per_sample", "wall_s"]


def verdict(spread: list[dict], calib: list[dict]) -> list[str]:
    """Per case and method: the targets met and missed."""
    lines = []
    for r in spread:
        checks = {f"no exact duplicates ({r['duplicates']})": r["duplicates"] == 0,
                  f"mixed ({r['mixed']})": all(m in ("yes", "indep.") for m in r["mixed"].split("/")),
                  **{f"seeds agree, {k[5:-1]} (p {v:.2g})": v > 0.01 for k, v in r.items() if k.startswith("ks_p[")}}
        lines.append(line(f"{r['case']}, {r['method']}, n = {r['n']}", checks))
    groups: dict = {}
    for r in calib:
        groups.setdefault((r["case"], r["method"]), []).append(r)
    for (case, method), rs in groups.items():
        checks = {f"{r['run']} vs the first seed within 3 SE (z {r['z_first']:.2f})": abs(r["z_first"]) <= 3
                  for r in rs if not math.isnan(r["z_first"]) and not r["run"].startswith("reference")}
        checks.update({f"{r['run']} vs reference within 2 SE (z {r['z_ref']:.2f})": abs(r["z_ref"]) <= 2
                       for r in rs if not math.isnan(r["z_ref"])})
        lines.append(line(f"{case}, {method}, log_prob", checks))
    return lines


def line(title: str, checks: dict) -> str:
    met = [k for k, v in checks.items() if v]
    missed = [k for k, v in checks.items() if not v]
    return f"- **{title}**: met: {'; '.join(met) or 'none'}{'; **missed**: ' + '; '.join(missed) if missed else ''}"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pretrained", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--methods", default="smc,cover")
    ap.add_argument("--sizes", default="60,500", help="sample sizes n (the first is used for log_prob)")
    ap.add_argument("--seeds", default="0,1", help="two seeds")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--other-particles", type=int, default=256,
                    help="a population other than the default one, for log_prob (0: none)")
    ap.add_argument("--ref-particles", type=int, default=1024, help="the reference population (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="n = 60 only, no reference run")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmarks.md")
    return ap


def main(argv=None, echo: bool = True) -> str:
    ap = parser()
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.ref_particles = "60", 0
    args.sizes = [int(v) for v in str(args.sizes).split(",")]
    args.seeds = [int(v) for v in str(args.seeds).split(",")]
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    if [c for c in chosen if c not in CASES] or len(args.seeds) != 2:
        ap.error(f"choose cases from {sorted(CASES)} and exactly two seeds")
    net = onet()
    if net is None:
        print(SKIP) if echo else None
        return SKIP
    torch.set_num_threads(args.threads)
    spread, calib, times = [], [], []
    t0 = time.perf_counter()
    for name in chosen:
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            s, c, secs = measure_case(net, name, method, args)
            spread, calib = spread + s, calib + c
            times.append(f"{name} {method}: {secs:.0f} s")
            print(f"[pretrained] {times[-1]}", file=sys.stderr, flush=True)
    text = report(argv, args, spread, calib, times, time.perf_counter() - t0)
    print(text) if echo else None
    if args.write:
        write_block(DOC, "pretrained", text)
    return text


def report(argv, args, spread, calib, times, total) -> str:
    command = "python -m benchmarks.pretrained " + " ".join(argv if argv is not None else sys.argv[1:])
    return "\n".join([
        f"Command: `{command.strip()}`; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{cpu_name()}, {args.threads} thread(s); {total:.0f} s ({'; '.join(times)}).", "",
        markdown(spread, SPREAD_KEYS), "", markdown(calib, CALIB_KEYS) if calib else "(no log_prob estimates)",
        "", "Targets:", *verdict(spread, calib)])


if __name__ == "__main__":
    main()
