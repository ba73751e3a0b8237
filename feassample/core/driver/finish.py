"""The one ``finish`` of every run: certify the codes by an independent pass, derive the status
from that certificate, diagnose the rows, and build the ``SampleSet`` with its stable fields
(``core.result``)."""
from __future__ import annotations

import logging
import math
import time
from typing import Optional

import torch
from torch import Tensor

from .. import diagnostics
from ..problem import FeasibleSet
from ..result import SampleSet

log = logging.getLogger("feassample.core.driver")


def finish(problem: FeasibleSet, codes: Tensor, stats: dict, cfg, t0: float,
           interrupted: bool = False, walkers: Optional[Tensor] = None,
           ancestors: Optional[Tensor] = None) -> SampleSet:
    """The ``SampleSet`` of some codes, certified by ``problem.check`` (an independent pass), with
    ``status`` derived from that certificate for every method:

    * ``"interrupted"``: a signal or Ctrl-C stopped the run (resume to continue);
    * ``"success"``: at least ``n`` returned rows certify inside the band;
    * ``"partial"``: some, but fewer than ``n``, certify;
    * ``"infeasible"``: none does (the closest iterates are returned where a method has them).

    ``stats["why"]`` (set by a sampler that stopped short) completes the message.

    With ``walkers`` ``(n,)`` (which walker kept each row: the MCMC-type samplers record it), the
    run's convergence diagnostics (``core.diagnostics``) go into ``stats["diagnostics"]``, with
    ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``, ``duplicates`` and ``mixed`` at the top; a
    run that is not mixed says so in a warning. With ``ancestors`` ``(n,)`` (population methods:
    each row's initial particle) they add ``distinct_ancestors`` and ``effective_ancestors`` of the
    returned rows (``diagnostics.ancestry``), the latter also at the top. The embedding is measured once more for them
    (``stats['evals']['diagnostic']`` forward passes, no gradients).
    """
    why = stats.pop("why", "")
    with torch.no_grad():
        values, feasible = problem.check(codes)
        x = problem.decode(codes)
    n = int(cfg.n)
    certified = int(feasible.sum())
    failed = int(codes.shape[0]) - certified
    evals = stats.setdefault("evals", {"model": 0})
    evals["check"] = evals.get("check", 0) + int(codes.shape[0])
    stats["wall_s"] = time.perf_counter() - t0
    stats["n_returned"] = int(codes.shape[0])
    stats["certified"] = certified
    stats["certified_fraction"] = certified / codes.shape[0] if codes.shape[0] else 0.0
    if interrupted:
        status, message = "interrupted", (f"interrupted ({stats.get('interrupted_by', 'stopped')}) with "
                                          f"{certified} of {n} samples certified; resume to continue")
    elif certified >= n:
        status, message = "success", f"{n} samples, all certified inside the band"
        if failed:
            message = f"{certified} samples certified inside the band ({failed} returned row(s) failed)"
    elif certified > 0:
        status, message = "partial", f"{certified} of {n} samples certified"
    else:
        status, message = "infeasible", f"no certified sample of {n}"
    if why and status != "success":
        message += f": {why}"
    if failed and status != "success":
        message += f" ({failed} returned row(s) failed the certificate)"
    stats.update(status=status, message=message)
    if status != "success":
        log.warning(message)
    if walkers is not None and not interrupted:
        _diagnose(problem, codes, x, values, walkers, stats, certified=status == "success",
                  ancestors=ancestors)
    violation = problem.bands.violation(values)
    stats["max_violation"] = (float(torch.nan_to_num(violation, nan=math.inf).amax())
                              if violation.numel() else None)
    stats.setdefault("log_prob", None)
    stats.setdefault("log_prob_se", None)
    stats.setdefault("diagnostics", None)
    config = {"problem": problem.config(), "sampler": cfg.record()}
    return SampleSet(x.detach(), codes.detach(), values.detach(), feasible.detach(), stats, config,
                     walker=None if walkers is None else walkers.detach().cpu().long(),
                     ancestor=None if ancestors is None else ancestors.detach().cpu().long())


def _diagnose(problem: FeasibleSet, codes: Tensor, x: Tensor, values: Tensor, walkers: Tensor,
              stats: dict, certified: bool, ancestors: Optional[Tensor] = None) -> None:
    embedding = diagnostics.embedding_of(problem, x)
    evals = stats["evals"]
    evals["diagnostic"] = evals.get("diagnostic", 0) + int(x.shape[0])
    diag = diagnostics.diagnose(walkers, values, codes, embedding, names=problem.bands.names,
                                ancestors=ancestors)
    stats["diagnostics"] = diag
    stats["duplicates"] = diag["duplicates"]
    stats["mixed"] = diag["mixed"]
    for key in ("rhat_max", "ess_bulk_min", "ess_tail_min", "effective_ancestors"):
        if key in diag:
            stats[key] = diag[key]
    diagnostics.warn_if_not_mixed(diag, certified)


__all__ = ["finish"]
