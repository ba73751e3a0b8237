"""Pieces shared by the baselines: the evaluation budget, one measured forward pass, the band
objectives, the collector of accepted codes and the common ending (certify, status, message).

Every baseline touches a problem only through the ``FeasibleSet`` contract (``decode``,
``measure``, ``bands``, ``project``, ``init_codes``, ``box``, ``check``), except ``hit_and_run``,
which needs the linear slab's ``w64``, ``a`` and ``b`` and says so.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from torch import Tensor

from ..core.problem import FeasibleSet, Measurement
from ..core.result import SampleSet
from ..core.sample import SamplerConfig, finish

log = logging.getLogger(__name__)

#: the default budget of a baseline, in model evaluations per requested sample
DEFAULT_EVALS_PER_SAMPLE = 200


class Budget:
    """Counts per-sample model evaluations (a forward pass, or a forward+backward pass, of one
    sample costs 1) against ``max_evals``."""

    def __init__(self, max_evals: Optional[int], cfg: SamplerConfig) -> None:
        if max_evals is None:
            max_evals = DEFAULT_EVALS_PER_SAMPLE * cfg.n
        if isinstance(max_evals, bool) or not isinstance(max_evals, (int, float)) or not max_evals >= 1:
            raise ValueError(f"max_evals must be a number >= 1 (per-sample model evaluations), got {max_evals!r}")
        self.max = int(max_evals)
        self.used = 0

    @property
    def left(self) -> int:
        return self.max - self.used

    def spend(self, count: int) -> None:
        self.used += int(count)
        if self.used > self.max:  # a bug in a baseline, never the user's fault
            raise AssertionError(f"budget overrun: {self.used} > {self.max} model evaluations")


def generator(cfg: SamplerConfig) -> torch.Generator:
    """The run's CPU generator, seeded from ``cfg.seed`` (every random draw comes from it)."""
    return torch.Generator(device="cpu").manual_seed(int(cfg.seed))


def random_codes(problem: FeasibleSet, count: int, gen: torch.Generator, device, dtype) -> Tensor:
    """``count`` codes from the problem's prior (``init_codes``), projected."""
    codes = problem.init_codes(count, gen, dtype=dtype, device=device)
    return problem.project(codes.to(device=device, dtype=dtype))


def given_codes(problem: FeasibleSet, codes: Tensor, device, dtype) -> Tensor:
    return problem.project(codes.detach().to(device=device, dtype=dtype).clone())


def measure(problem: FeasibleSet, codes: Tensor) -> tuple[Measurement, Tensor]:
    """One forward pass: ``(measurement, decoded inputs)`` (gradients flow if ``codes`` needs them)."""
    x = problem.decode(codes)
    return problem.measure(x), x


def embedding_of(problem: FeasibleSet, m: Measurement, x: Tensor, codes: Tensor) -> Tensor:
    """The embedding ``(B, p)`` of a measurement, or what stands in for it (inputs or codes)."""
    if m.embedding is not None:
        return m.embedding.reshape(m.embedding.shape[0], -1)
    base = codes if getattr(problem, "embedding_space", "inputs") == "codes" else x
    return base.reshape(base.shape[0], -1)


def worst_violation(problem: FeasibleSet, values: Tensor) -> Tensor:
    """Per-row largest distance outside a band ``(B,)`` (NaN rows: +inf)."""
    viol = problem.bands.violation(values).amax(dim=1)
    return torch.where(torch.isnan(viol), torch.full_like(viol, math.inf), viol)


def band_loss(problem: FeasibleSet, values: Tensor) -> Tensor:
    """Per-row loss ``(B,)`` that pulls toward the middle of every band.

    A finite band contributes ``((h - mid) / half_width)^2`` (1 on the band's edges); a
    one-sided band contributes the squared distance outside it (zero inside).
    """
    bands = problem.bands
    lo, hi = bands.tensors(values)
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    mid = torch.where(finite, (lo + hi) / 2, torch.zeros_like(lo))
    half = torch.where(finite, ((hi - lo) / 2).clamp(min=1e-12), torch.ones_like(lo))
    centred = ((values - mid) / half) ** 2
    outside = bands.violation(values) ** 2
    return torch.where(finite, centred, outside).sum(dim=1)


def band_penalty(problem: FeasibleSet, values: Tensor) -> Tensor:
    """Per-row penalty ``(B,)``: half the squared distance outside the bands, zero inside."""
    return 0.5 * (problem.bands.violation(values) ** 2).sum(dim=1)


def mean_cosine(embedding: Tensor) -> Tensor:
    """Mean cosine similarity over the distinct pairs of a batch (0 for a batch of one)."""
    b = embedding.shape[0]
    if b < 2:
        return embedding.sum() * 0.0
    unit = embedding / embedding.norm(dim=1, keepdim=True).clamp(min=1e-12)
    gram = unit @ unit.T
    return (gram.sum() - gram.diagonal().sum()) / (b * (b - 1))


class Collector:
    """Accepted codes, in order, up to ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[Tensor] = []
        self.count = 0

    def add(self, codes: Tensor) -> None:
        need = self.n - self.count
        if need <= 0 or codes.shape[0] == 0:
            return
        part = codes[:need].detach().clone()
        self.parts.append(part)
        self.count += int(part.shape[0])

    @property
    def full(self) -> bool:
        return self.count >= self.n

    def codes(self, problem: FeasibleSet, device, dtype) -> Tensor:
        if self.parts:
            return torch.cat(self.parts, dim=0)
        return torch.zeros((0, *problem.code_shape), device=device, dtype=dtype)


class Closest:
    """The ``size`` iterates closest to the band seen so far (returned, closest first, when no
    iterate was ever inside: the core's ``"infeasible"`` convention)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.codes: Optional[Tensor] = None
        self.violation: Optional[Tensor] = None

    def update(self, problem: FeasibleSet, codes: Tensor, values: Tensor) -> None:
        viol = worst_violation(problem, values.detach())
        codes = codes.detach()
        if self.codes is not None:
            viol = torch.cat([self.violation, viol.to(self.violation.dtype)])
            codes = torch.cat([self.codes, codes.to(self.codes.dtype)])
        keep = torch.topk(viol, min(self.size, viol.shape[0]), largest=False).indices
        self.codes, self.violation = codes[keep].clone(), viol[keep].clone()

    @property
    def best(self) -> float:
        return math.inf if self.violation is None else float(self.violation.min())


def notify(callbacks, method: str, collector: Collector, budget: Budget) -> None:
    """Tell the callbacks how far the run is (phase = the method's name, state = a dict)."""
    if callbacks:
        state = {"accepted": collector.count, "model_evals": budget.used, "max_evals": budget.max}
        for cb in callbacks:
            cb(method, state)


def conclude(problem: FeasibleSet, cfg: SamplerConfig, t0: float, method: str,
             collector: Collector, budget: Budget, stats: dict, device, dtype,
             closest: Optional[Closest] = None, why_short: str = "") -> SampleSet:
    """Certify the accepted codes (``finish``) and set ``status`` / ``message`` from the certificate:
    ``"success"`` (n certified), ``"partial"`` (fewer), ``"infeasible"`` (none).

    When nothing was accepted, the closest iterates (``closest``) that were inside the band are
    returned, or, when none ever was, the closest iterates, closest first, as the core does for
    ``"infeasible"`` runs (their ``feasible`` is then False).
    """
    best_violation = closest.best if closest is not None else math.nan
    if collector.count == 0 and closest is not None and closest.codes is not None:
        inside = closest.violation <= problem.bands.tol
        if bool(inside.any()):  # inside the band between two keeps (thinning): judged inside
            collector.add(closest.codes[inside])
            codes = collector.codes(problem, device, dtype)
        else:
            codes = closest.codes
            stats["returned_closest"] = True
    else:
        codes = collector.codes(problem, device, dtype)
    stats.update(method=method, n_requested=cfg.n, k=cfg.k, model_evals=budget.used,
                 max_evals=budget.max, accepted=collector.count)
    if math.isfinite(best_violation):
        stats["best_violation"] = float(best_violation)
    result = finish(problem, codes, stats, cfg, t0)
    certified = int(result.feasible.sum())
    rejected = collector.count - certified if collector.count else 0
    stats["rejected_by_check"] = rejected
    if certified >= cfg.n:
        stats.update(status="success", message=f"{cfg.n} samples, all certified inside the band")
    else:
        why = why_short or f"the budget of {budget.max} model evaluations ran out"
        if certified > 0:
            status, head = "partial", f"{certified} of {cfg.n} samples certified"
        else:
            status, head = "infeasible", f"no certified sample of {cfg.n}"
            if math.isfinite(best_violation):
                head += (f" (the closest iterate came within {best_violation:.4g} of the band: "
                         f"{problem.bands.describe()}; the closest iterates are returned)")
        stats.update(status=status, message=f"{head}: {why} ({method}, {budget.used} model evaluations)")
        log.warning(stats["message"])
    if rejected:
        stats["message"] += f"; {rejected} accepted sample(s) failed the certificate"
    return result


def reject_initial_codes(method: str, initial_codes) -> None:
    if initial_codes is not None:
        raise ValueError(f"method {method!r} does not take initial_codes (it draws its own starts)")
