"""What a sampling run of the app writes beside ``samples/``: ``metrics.json`` (the result's
stats, its rarity curve and facets, and its coverage against exact iid samples where the problem
has them), ``plot.png`` and ``report.html`` (one self-contained page: docs/analysis.md);
with ``keep_checkpoint=false``, ``fs.sample`` removed a successful run's checkpoint files
(``metrics.json``'s ``checkpoint`` says so)."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from ..core.result import SampleSet, atomic_write_bytes

log = logging.getLogger("feassample")


def coverage(problem, samples: SampleSet, draws: int, seed: int) -> tuple[dict, Any]:
    """Coverage metrics against exact iid uniform samples of the same size (where available)."""
    from .. import metrics

    if not hasattr(problem, "exact_sample") or len(samples) < 2:
        return {}, None
    g = torch.Generator().manual_seed(10_000 + int(seed))
    n = len(samples)
    x = samples.x.double()
    reference = problem.exact_sample(n, generator=g)
    probes = problem.exact_sample(n, generator=g)
    ref_draws = [problem.exact_sample(n, generator=g) for _ in range(max(draws, 2))]
    report = metrics.coverage_report(x, reference, probes, ref_draws, t=problem.t(x),
                                     t_cdf=problem.t_cdf, box=problem.box or (0.0, 1.0))
    report.pop("energy_ratio", None)  # the null mean is ~0: energy_z is the calibrated number
    law = getattr(problem, "law", None)
    if law is not None and samples.log_prob is not None:  # the exact volume against the estimate
        exact = float(law.log_volume())
        report["log_prob_exact"] = exact
        se = samples.log_prob_se
        report["log_prob_z"] = (samples.log_prob - exact) / se if se and se > 0 else math.nan
    return report, reference


def run_facets(problem, result: SampleSet):
    """``(facets, record)``: the facets of a run's certified rows in the problem's embedding
    (``fs.facets``, ``k="auto"``) and their ``metrics.json`` record; ``(None, {"skipped": why})``
    when there are too few rows or the clustering fails."""
    from ..analysis import facets

    if len(result) < 20 or result.status == "infeasible":
        return None, {"skipped": f"{len(result)} row(s) of status {result.status}: facets need 20 certified rows"}
    try:
        found = facets(result, problem=problem)
    except (ValueError, RuntimeError, ImportError) as err:
        log.warning("no facets: %s", err)
        return None, {"skipped": str(err).splitlines()[0]}
    return found, found.as_dicts()


def write_outputs(cfg: DictConfig, problem, result: SampleSet, seed: int, out_dir: Path,
                  command: Optional[str] = None) -> dict:
    """Write ``metrics.json``, ``plot.png`` (with ``cfg.plot``) and ``report.html`` (with ``cfg.report``) for
    ``result`` (``command``: the command line that reproduces the run, shown in the report);
    the metrics."""
    metrics_out = {"feasible_fraction": float(result.feasible.float().mean()) if len(result) else 0.0,
                   "n_evals": result.n_evals, **{k: v for k, v in result.stats.items()}}
    rarity = result.rarity
    metrics_out["rarity"] = [r._asdict() for r in rarity] if rarity else None
    write_report = bool(cfg.get("report", True))
    found, metrics_out["facets"] = run_facets(problem, result) if write_report else (None, {"skipped": "report=false"})
    reference = None
    if cfg.coverage and result.status != "infeasible":
        cov, reference = coverage(problem, result, int(cfg.reference_draws), seed)
        metrics_out["coverage"] = cov
        if cov:
            log.info("coverage vs exact iid: KS p=%.3g, boundary z=%.2f, NN ratio=%.2f, fill ratio=%.3f",
                     cov.get("ks_p", math.nan), cov["boundary_z"], cov["nn_ratio"], cov["fill_ratio"])
            if "log_prob_exact" in cov:
                log.info("log P(set): exact %.4g, estimated %.4g (z = %.2f)", cov["log_prob_exact"],
                         result.log_prob, cov["log_prob_z"])
    if not cfg.keep_checkpoint:  # fs.sample removed it after a success (stats["checkpoint"])
        metrics_out.setdefault("checkpoint", "kept")
    text = json.dumps(metrics_out, indent=2, default=str)
    atomic_write_bytes(out_dir / "metrics.json", lambda fh: fh.write(text.encode()))
    picture = None
    if cfg.plot and len(result):
        from ..viz import plot_run

        picture = plot_run(problem, result, out_dir / "plot.png", reference)
    if not write_report:
        return metrics_out
    from ..viz import run_report

    cov = metrics_out.get("coverage") or {}
    extra = ""
    if cov:
        from ..viz.report import table
        extra = "<h2>Coverage against exact iid samples</h2>" + table(["field", "value"], sorted(cov.items()), left=2)
    run_report(out_dir / "report.html", result, title=f"feassample run: {problem.describe()}", picture=picture,
               facets=found, problem=problem, command=command, extra=extra)
    return metrics_out
