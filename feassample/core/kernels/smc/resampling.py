"""Resampling ``N`` particles from ``s`` survivors, from the run's generator."""
from __future__ import annotations

import torch
from torch import Tensor

RESAMPLING = ("systematic", "multinomial")


def resample(s: int, N: int, scheme: str, gen: torch.Generator) -> Tensor:
    """``(N,)`` indices into ``s`` survivors: ``"systematic"`` (one uniform offset, evenly spaced
    points: each survivor is copied ``floor`` or ``ceil`` of ``N / s`` times) or ``"multinomial"``
    (``N`` independent uniform picks)."""
    if scheme == "systematic":
        u = float(torch.rand((), generator=gen, dtype=torch.float64))
        return ((u + torch.arange(N, dtype=torch.float64)) * s / N).floor().long().clamp(max=s - 1)
    return torch.randint(s, (N,), generator=gen)


__all__ = ["RESAMPLING", "resample"]
