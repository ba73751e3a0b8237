"""A new diversity objective in one file: a soft nearest-neighbour distance to the pool's points.

The paper's sum of squared distances sees the pool only through its sums; this objective reads
the pool's points themselves (``needs_points = True``), so each walker is pushed away from its
nearest accepted samples. From Python (``python examples/extending_objective.py``) or from the
command line, with the paper's walk (the method whose steps climb the diversity term):

    feassample sampler=walk objective._target_=examples/extending_objective.py:SoftNearest \\
        +objective.options.temperature=0.05
"""
from __future__ import annotations

import torch
from torch import Tensor

import feassample as fs
from feassample.core import Diversity, register_objective


class SoftNearest(Diversity):
    """``mean_i softmin_j ||e_i - y_j||`` over the other walkers and the pool's points (to be
    maximized), with a log-sum-exp softmin at ``temperature`` (a fraction of the mean distance)."""

    needs_points = True

    def __init__(self, weight: float = 1.0, normalize: bool = True, temperature: float = 0.1,
                 space: str = "embedding") -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.weight, self.temperature, self.space = float(weight), float(temperature), space

    def value(self, batch: Tensor, pool) -> Tensor:
        others = batch
        if pool is not None and pool.points is not None and pool.points.shape[0]:
            others = torch.cat([batch, pool.points.to(batch.dtype)])
        if others.shape[0] < 2:
            return batch.sum() * 0.0
        d = torch.cdist(batch, others)
        d = d + torch.eye(batch.shape[0], others.shape[0], dtype=d.dtype, device=d.device) * 1e9
        scale = self.temperature * d[d < 1e8].mean().detach().clamp(min=1e-12)
        return (-scale * torch.logsumexp(-d / scale, dim=1)).mean()


register_objective("soft_nearest", SoftNearest)


if __name__ == "__main__":
    torch.set_num_threads(1)
    problem = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    for objective in ("sum_squared", "soft_nearest"):
        s = fs.sample(problem, n=200, k=10, seed=0, method="walk", objective=objective)
        x = s.x.double()
        nn_dist = torch.cdist(x, x).fill_diagonal_(float("inf")).min(1).values.mean()
        print(f"{objective:12s} {s.summary()}; mean nearest-neighbour distance {float(nn_dist):.3f}")
