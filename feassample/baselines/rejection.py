"""Rejection sampling from the prior: draw codes (``problem.init_codes``) in batches, keep those
inside the band. One forward pass per draw; the samples are iid from the prior restricted to the
set (for the slab: exactly uniform on it)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..core.problem import FeasibleSet
from ..core.sample import SamplerConfig
from . import common
from .common import Budget, Collector


def rejection(problem: FeasibleSet, cfg: SamplerConfig, device, dtype, callbacks, t0, *,
              batch: int = 1024, max_evals: Optional[int] = None, initial_codes=None):
    """Rejection sampling.

    Options:
        batch: largest number of draws per forward pass (the batch shrinks to what the estimated
            acceptance rate says is still needed, so few draws are wasted past ``n``).
        max_evals: budget of draws, i.e. forward passes (default ``200 * n``).
    """
    common.reject_initial_codes("rejection", initial_codes)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    gen = common.generator(cfg)
    budget = Budget(max_evals, cfg)
    collector = Collector(cfg.n)
    closest = common.Closest(cfg.k)
    drawn = hits = 0
    while not collector.full and budget.left > 0:
        need = cfg.n - collector.count
        rate = (hits + 1) / (drawn + 2)  # a smoothed acceptance estimate
        size = min(batch, budget.left, max(64, math.ceil(1.2 * need / rate)))
        codes = common.random_codes(problem, size, gen, device, dtype)
        with torch.no_grad():
            values = common.measure(problem, codes)[0].values
        budget.spend(size)
        drawn += size
        inside = problem.bands.feasible(values)
        hits += int(inside.sum())
        collector.add(codes[inside])
        closest.update(problem, codes, values)
        common.notify(callbacks, "rejection", collector, budget)
    stats = {"drawn": drawn, "acceptance": hits / max(drawn, 1)}
    return common.conclude(problem, cfg, t0, "rejection", collector, budget, stats, device, dtype,
                           closest=closest)
