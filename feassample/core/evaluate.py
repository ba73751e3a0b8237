"""Evaluations every kernel shares: constraint values of flattened codes (in batches), values with
the constraints' gradients (one forward pass and ``m`` vector-Jacobian products), the domain test
and the band test. Written once; the kernels count what they spend."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .bands import Bands
from .problem import FeasibleSet


def gradient_rows(values: Tensor, codes: Tensor, keep_graph: bool) -> Tensor:
    """``(B, m, D)``: the gradient of each constraint column of ``values (B, m)`` with respect to
    ``codes (B, ...)``, one vector-Jacobian product per column (rows are independent, so the
    gradient of a column's batch sum is each row's gradient); zeros where a column does not depend
    on the codes. ``keep_graph``: keep the graph after the last product (the caller backpropagates
    through it again)."""
    B, m = values.shape[0], values.shape[1]
    cols = []
    for j in range(m):
        g, = torch.autograd.grad(values[:, j].sum(), codes, retain_graph=keep_graph or j < m - 1,
                                 allow_unused=True)
        cols.append(torch.zeros_like(codes) if g is None else g)
    if not cols:
        return codes.new_zeros(B, 0, codes[0].numel())
    return torch.stack([g.reshape(B, -1) for g in cols], 1)


def values_and_grads(problem: FeasibleSet, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Values ``(B, m)`` and gradients ``(B, m, D)`` of flattened codes ``(B, D)``: one forward and
    ``m`` vector-Jacobian products; non-finite gradient entries are zeroed."""
    b = codes.shape[0]
    m = problem.bands.m
    if b == 0:
        return codes.new_zeros(0, m), codes.new_zeros(0, m, codes.shape[1])
    c = codes.detach().reshape(b, *problem.code_shape).requires_grad_(True)
    with torch.enable_grad():
        values = problem.measure(problem.decode(c)).values
        grads = gradient_rows(values, c, keep_graph=False)
    grads = torch.nan_to_num(grads.to(codes.dtype), nan=0.0, posinf=0.0, neginf=0.0)
    return values.detach().to(codes.dtype), grads


def values_of(problem: FeasibleSet, codes: Tensor, batch: Optional[int] = None) -> Tensor:
    """Constraint values ``(B, m)`` of flattened codes ``(B, D)`` without gradients, in batches of
    ``batch`` codes (``None``: all at once)."""
    b = codes.shape[0]
    if b == 0:
        return codes.new_zeros(0, problem.bands.m)
    size = batch or b
    out = []
    with torch.no_grad():
        for i in range(0, b, size):
            c = codes[i:i + size].reshape(-1, *problem.code_shape)
            out.append(problem.measure(problem.decode(c)).values.to(codes.dtype))
    return torch.cat(out)


def values_and_grads_of(problem: FeasibleSet, codes: Tensor,
                        batch: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """``values_and_grads`` in batches of ``batch`` codes (``None``: all at once)."""
    b = codes.shape[0]
    size = batch or max(b, 1)
    parts = [values_and_grads(problem, codes[i:i + size]) for i in range(0, b, size)] or \
        [values_and_grads(problem, codes)]
    return torch.cat([v for v, _ in parts]), torch.cat([g for _, g in parts])


def in_domain(problem: FeasibleSet, codes: Tensor) -> Tensor:
    """``(B,)``: rows of flattened codes that the domain's projection (``problem.project``, e.g.
    the code ball) leaves unchanged and that are finite; no model evaluation."""
    if codes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=codes.device)
    proj = problem.project(codes.reshape(codes.shape[0], *problem.code_shape)).reshape(codes.shape[0], -1)
    return (proj == codes).all(1) & torch.isfinite(codes).all(1)


def band_ends(bands: Bands, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Effective ends ``lo - tol``, ``hi + tol`` and widths ``(m,)`` (inf for one-sided bands)."""
    lo, hi = bands.tensors(like)
    lo, hi = lo - bands.tol, hi + bands.tol
    return lo, hi, hi - lo


def in_band(values: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``(B,)``: rows whose values are finite and inside ``[lo, hi]`` in every column."""
    return (torch.isfinite(values) & (values >= lo) & (values <= hi)).all(1)


__all__ = ["gradient_rows", "values_and_grads", "values_of", "values_and_grads_of", "in_domain",
           "band_ends", "in_band"]
