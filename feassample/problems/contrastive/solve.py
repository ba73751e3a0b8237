"""The solver of the contrastive explainer: one batched augmented-Lagrangian run of a
``ContrastSet`` (``sample(method="joint")``), keeping each row's best iterate inside the bands
(smallest ``||z - z0||``) and the class-likelihood path of every row.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ...core.sampling import SamplerConfig, run
from .problem import ContrastSet


class _PathRecorder:
    """A ``sample`` callback: the class likelihoods of every row at every iteration, and each
    row's best (smallest ``||z - z0||``) iterate that is inside the bands."""

    def __init__(self, problem: ContrastSet, init: Tensor) -> None:
        self.problem = problem
        self.prev = init.detach().clone()
        self.path: list[Tensor] = []
        self.code_path: list[Tensor] = []
        b = self.prev.shape[0]
        self.best_codes = self.prev.clone()
        self.best_obj = torch.full((b,), math.inf, dtype=torch.float64)
        self.best_iter = torch.full((b,), -1, dtype=torch.long)
        self.state = None

    def consider(self, codes: Tensor, values: Tensor, iteration: int) -> None:
        """Keep, per row, ``codes`` where they are inside the bands and closer to ``z0``."""
        pr = self.problem
        ok = pr.bands.feasible(values).cpu()
        z0 = pr.z0[pr.rows_of(codes)].to(codes.dtype)
        obj = ((codes[:, :pr.q] - z0) ** 2).sum(1).double().cpu()
        better = ok & (obj < self.best_obj)
        self.best_obj = torch.where(better, obj, self.best_obj)
        self.best_iter = torch.where(better, torch.full_like(self.best_iter, iteration), self.best_iter)
        here = better.to(codes.device)[:, None]
        self.best_codes = torch.where(here, codes.to(self.best_codes.dtype), self.best_codes)

    def __call__(self, phase: str, state, info=None) -> None:
        # the driver calls (phase, state) today and (phase, state, info) in the new core
        self.state = state
        c = self.problem.num_classes
        values = state.values.detach()
        self.path.append(values[:, -c:].exp().cpu())
        self.code_path.append(self.prev[:, :self.problem.q].cpu())
        # state.values were measured at the codes before this step (self.prev)
        self.consider(self.prev, values, len(self.path) - 1)
        self.prev = state.codes.detach().clone()


def _solve(problem: ContrastSet, init: Tensor, settings: dict, callbacks: Sequence
           ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
    """One batched augmented-Lagrangian run: ``(codes (B, q + 1), iteration (B,), path (B, T, C),
    code path (B, T, q), stats)``; each row's code is its best iterate inside the bands (smallest
    ``||z - z0||``), or the last iterate when none was inside."""
    recorder = _PathRecorder(problem, init)
    b = init.shape[0]
    cfg = SamplerConfig.build(n=b, k=b, method="joint", joint_until="converged",
                              objective=problem.objective(), seed_margin=0.0, penalty_rule="progress",
                              initial_codes=init, **settings)
    result = run(problem, cfg, callbacks=[recorder, *callbacks])
    state = recorder.state
    final = state.codes.detach()
    # run() re-measured the final codes after the last step: consider them too
    recorder.consider(final, state.values.detach(), len(recorder.path))
    found = torch.isfinite(recorder.best_obj).to(final.device)
    codes = torch.where(found[:, None], recorder.best_codes.to(final), final)
    iters = torch.where(found.cpu(), recorder.best_iter,
                        torch.full_like(recorder.best_iter, len(recorder.path)))
    c = problem.num_classes
    path = torch.stack(recorder.path, 1) if recorder.path else torch.zeros(b, 0, c)
    cpath = (torch.stack(recorder.code_path, 1) if recorder.code_path
             else torch.zeros(b, 0, problem.q))
    stats = {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool))}
    return codes, iters, path, cpath, stats
