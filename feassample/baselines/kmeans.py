"""A tiny batched k-means (k-means++ seeding, then Lloyd iterations), seeded by a generator."""
from __future__ import annotations

import torch
from torch import Tensor


def kmeans(points: Tensor, k: int, generator: torch.Generator, iters: int = 25) -> tuple[Tensor, Tensor]:
    """Cluster ``points (N, p)`` into ``k`` clusters.

    Args:
        points: the data, ``(N, p)``, ``N >= k``.
        k: number of clusters.
        generator: a CPU ``torch.Generator`` (k-means++ draws).
        iters: Lloyd iterations (stops early when the assignment no longer changes).

    Returns:
        ``(centers (k, p), assignment (N,))``. A cluster that empties keeps its previous center.
    """
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points, got k={k}, N={n}")
    x = points.reshape(n, -1).to(torch.float64)
    # k-means++: each next center drawn with probability proportional to the squared distance.
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than clusters: take any remaining point
            idx = int(torch.randint(n, (1,), generator=generator))
        else:
            idx = int(torch.multinomial((d2 / total).cpu(), 1, generator=generator))
        centers.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(dim=1))
    c = torch.stack(centers)
    assign = torch.cdist(x, c).argmin(dim=1)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], c)
        new = torch.cdist(x, c).argmin(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
    return c.to(points.dtype), assign
