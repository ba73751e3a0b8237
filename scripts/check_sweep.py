"""Check the run directories of a sweep: every run ended with status success, wrote
``metrics.json`` and ``samples/``, and its samples are certified AND inside their band by a check
that does not use the sampler's certificate (an independent forward pass of the zoo classifier for
neuron runs at its output layer, ``sigmoid(w.x + c)`` in float64 for the logistic slab).

    python scripts/check_sweep.py RUN_DIR [RUN_DIR ...] --n 40 [--resumed]

Prints one line per run; exits 1 when any run fails. Used by scripts/slurm-local.sh.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

import feassample as fs

ROOT = Path(__file__).resolve().parent.parent


def independent_values(cfg, s) -> tuple[torch.Tensor, float, float, str] | None:
    """``(values, z1, z2, what)`` recomputed outside the sampler, or None for other problems."""
    problem = cfg.problem
    kind = problem.get("kind") or problem.get("_target_", "").rsplit(".", 2)[-2]
    if kind == "neuron" and len(problem.units) == 1 and problem.units[0].layer == "classifier.fc2":
        from feassample.models import load_classifier

        u = problem.units[0]
        z1, z2 = (u.band if u.band is not None else (u.z1, u.z2))
        with torch.no_grad():
            logits = load_classifier()(s.x)   # the model's own forward, not the sampler's hooks
        return logits[:, int(u.unit)], float(z1), float(z2), f"classifier(x)[{int(u.unit)}]"
    if kind == "LogisticHalfspace":
        from feassample.cli.app import build_problem

        p = build_problem(cfg, ROOT)
        x = s.x.reshape(len(s), -1).double()
        if not bool(((x >= 0) & (x <= 1)).all()):
            raise AssertionError("a sample leaves the cube [0, 1]^d")
        return torch.sigmoid(x @ p.w64 + p.c), float(problem.z1), float(problem.z2), "sigmoid(w.x + c)"
    return None


def check(run: Path, n: int, resumed: bool = False) -> str:
    """One line describing the run; raises AssertionError when it is not a certified success."""
    metrics_file = run / "metrics.json"
    assert metrics_file.is_file(), "no metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["status"] == "success", f"status {metrics['status']}: {metrics.get('message')}"
    if resumed:
        assert metrics.get("resumed") is True, "metrics.json does not say the run was resumed"
    s = fs.SampleSet.load(run / "samples")
    assert len(s) == n == metrics["n_returned"], f"{len(s)} samples, expected {n}"
    assert bool(s.feasible.all()), f"{int((~s.feasible).sum())} samples not certified"
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    indep = independent_values(cfg, s)
    extra = ""
    if indep is not None:
        values, z1, z2, what = indep
        tol = 1e-5 if what.startswith("sigmoid") else 0.0   # float32 samples, a float64 check
        inside = (values >= z1 - tol) & (values <= z2 + tol)
        assert bool(inside.all()), f"{int((~inside).sum())} samples outside [{z1}, {z2}] by {what}"
        extra = f", {what} in [{z1:g}, {z2:g}]: {len(s)}/{len(s)}"
    return f"n={len(s)} certified={int(s.feasible.sum())}/{len(s)}{extra}, wall {metrics['wall_s']:.1f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, required=True, help="samples each run must return")
    parser.add_argument("--resumed", action="store_true", help="each run must be a resumed one")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bad = 0
    for run in args.runs:
        try:
            print(f"  ok    {run.name}: {check(run, args.n, args.resumed)}")
        except (AssertionError, FileNotFoundError, KeyError) as err:
            print(f"  FAIL  {run}: {err}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
