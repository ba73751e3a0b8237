"""Diversity objectives on the embeddings of a batch and a frozen pool (to be maximized).

The paper's objective (eqs. 5, 6) is the sum of squared pairwise distances. It needs no
``O(n^2)`` work: with ``S = sum_i e_i`` and ``Q = sum_i ||e_i||^2``,

    sum_{i,j in B} ||e_i - e_j||^2         = 2 |B| Q_B - 2 ||S_B||^2
    sum_{i in B} sum_{y in P} ||e_i - e_y||^2 = |P| Q_B - 2 S_B . S_P + |B| Q_P

so a frozen pool enters only through its sufficient statistics ``(|P|, S_P, Q_P)``: a step
costs ``O(B)`` work, and keeping the pool's running sums ``O(P)`` over a whole run.

Objectives that need the pool's points themselves (repulsive energies) say so with
``needs_points = True``; the samplers then pass them in ``Pool.points``. Objectives are chosen by
name (``objective="repulsive"``, ``objective=repulsive`` on the command line) from a registry that
``register_objective`` extends, or passed as instances.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .state import State


@dataclass
class PoolStats(State):
    """Sufficient statistics of a frozen pool of embeddings.

    Attributes:
        count: number of pooled embeddings ``|P|`` (a 0-d tensor).
        total: their sum ``S_P``, ``(p,)``.
        sq_norms: the sum of their squared norms ``Q_P`` (a 0-d tensor).
    """

    count: Tensor
    total: Tensor
    sq_norms: Tensor

    @classmethod
    def empty(cls, dim: int, like: Tensor) -> "PoolStats":
        """Statistics of an empty pool of ``dim``-dimensional embeddings."""
        zero = torch.zeros((), dtype=like.dtype, device=like.device)
        return cls(zero.clone(), torch.zeros(dim, dtype=like.dtype, device=like.device), zero.clone())

    @classmethod
    def of(cls, embeddings: Tensor) -> "PoolStats":
        """Statistics of a ``(P, p)`` block of embeddings."""
        e = embeddings.detach()
        return cls(torch.tensor(float(e.shape[0]), dtype=e.dtype, device=e.device), e.sum(0),
                   (e * e).sum())

    def add(self, embeddings: Tensor) -> "PoolStats":
        """These statistics with a ``(B, p)`` block of embeddings added."""
        other = PoolStats.of(embeddings)
        return PoolStats(self.count + other.count, self.total + other.total,
                         self.sq_norms + other.sq_norms)


@dataclass
class Pool:
    """The frozen pool a batch is compared with: its sufficient statistics and, when the
    objective asks for them (``needs_points``), its points ``(P, p)``."""

    stats: PoolStats
    points: Optional[Tensor] = None

    @classmethod
    def of(cls, embeddings: Tensor, keep_points: bool = False) -> "Pool":
        return cls(PoolStats.of(embeddings), embeddings.detach() if keep_points else None)

    @property
    def count(self) -> Tensor:
        return self.stats.count

    @property
    def total(self) -> Tensor:
        return self.stats.total

    @property
    def sq_norms(self) -> Tensor:
        return self.stats.sq_norms

    def merge(self, other: "Pool") -> "Pool":
        """Both pools together."""
        stats = PoolStats(self.count + other.count, self.total + other.total, self.sq_norms + other.sq_norms)
        if self.points is None or other.points is None:
            points = self.points if other.points is None else other.points
        else:
            points = torch.cat([self.points, other.points])
        return Pool(stats, points)


class Diversity:
    """Base class: ``value(batch, pool) -> scalar`` to be maximized.

    Attributes:
        space: where distances are taken: ``"embedding"`` (the problem's ``e(x)``, the paper's
            ``E(G(c))``), ``"codes"`` (eq. 13) or ``"none"``.
        weight: multiplier of the term in the loss.
        needs_points: the objective reads ``pool.points`` (the pooled embeddings themselves),
            not only the pool's sums; samplers then keep and pass them.
    """

    space: str = "embedding"
    weight: float = 1.0
    needs_points: bool = False

    def value(self, batch: Tensor, pool: Optional[Pool]) -> Tensor:
        """The objective for a ``(B, p)`` batch against a frozen pool (``None``: no pool)."""
        raise NotImplementedError


class NoDiversity(Diversity):
    """No diversity term: the paper's ablation eq. (14), a pure feasibility problem."""

    space = "none"
    weight = 0.0

    def value(self, batch: Tensor, pool: Optional[Pool]) -> Tensor:
        return batch.new_zeros(())


class SumSquaredDistances(Diversity):
    """The paper's ``sum_{i,j} ||e_i - e_j||^2`` over the batch plus the batch-pool cross term.

    Args:
        weight: multiplier in the loss.
        space: ``"embedding"`` (eq. 5/6) or ``"codes"`` (eq. 13).
        normalize: divide by the number of pair terms ``B^2 + B P`` (so the pull of the term
            does not grow with the pool); ``False`` is the paper's plain sum.
    """

    def __init__(self, weight: float = 1.0, space: str = "embedding", normalize: bool = True) -> None:
        if space not in ("embedding", "codes"):
            raise ValueError(f"space must be 'embedding' or 'codes', got {space!r}")
        if not weight >= 0:
            raise ValueError(f"diversity weight must be >= 0, got {weight!r}")
        self.weight, self.space, self.normalize = float(weight), space, bool(normalize)

    def value(self, batch: Tensor, pool: Optional[Pool]) -> Tensor:
        b = batch.shape[0]
        s_b = batch.sum(0)
        q_b = (batch * batch).sum()
        within = 2 * b * q_b - 2 * (s_b * s_b).sum()
        terms = float(b * b)
        if pool is not None and float(pool.count) > 0:
            within = within + pool.count * q_b - 2 * (s_b * pool.total).sum() + b * pool.sq_norms
            terms += b * float(pool.count)
        return within / terms if self.normalize else within


class CodeObjective(Diversity):
    """A user objective on codes to MINIMIZE, ``fn(codes (B, q)) -> (B,)``, summed over the batch.

    Turns the engine into a batched constrained optimizer: ``min_c fn(c) s.t. lo <= h(c) <= hi``
    (used by contrastive explanations, and to test the augmented Lagrangian on known optima).
    """

    space = "codes"

    def __init__(self, fn, weight: float = 1.0) -> None:
        if not callable(fn):
            raise TypeError(f"objective fn must be callable codes -> (B,), got {fn!r}")
        self.fn, self.weight = fn, float(weight)

    def value(self, batch: Tensor, pool: Optional[Pool]) -> Tensor:
        return -self.fn(batch).sum()


class RepulsiveEnergy(Diversity):
    """A Gaussian-kernel repulsion against the batch and the pool's points (to be maximized):
    ``-sum_i [sum_{j != i in B} k(e_i, e_j) + sum_{y in P} k(e_i, y)] / (B (B - 1 + P))`` with
    ``k(a, b) = exp(-||a - b||^2 / (2 h^2))``.

    Unlike the sum of squared distances, whose pull grows with distance (it rewards pushing a
    sample far away from the pool's mean, to the set's boundary), a kernel pushes only against
    near neighbours, so it fills gaps instead of piling samples on the boundary.

    Args:
        weight: multiplier in the loss.
        space: ``"embedding"`` or ``"codes"``.
        bandwidth: the kernel's ``h``; ``None``: the median distance between the batch and the
            pool (the median heuristic, recomputed per step, without gradient).
        max_points: use at most this many of the pool's most recent points (bounds the cost,
            ``O(B * max_points * p)`` per step).
    """

    needs_points = True

    def __init__(self, weight: float = 1.0, space: str = "embedding", bandwidth: Optional[float] = None,
                 max_points: int = 4096) -> None:
        if space not in ("embedding", "codes"):
            raise ValueError(f"space must be 'embedding' or 'codes', got {space!r}")
        if not weight >= 0:
            raise ValueError(f"diversity weight must be >= 0, got {weight!r}")
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0 or None, got {bandwidth!r}")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points must be an integer >= 1, got {max_points!r}")
        self.weight, self.space, self.bandwidth, self.max_points = float(weight), space, bandwidth, max_points

    def value(self, batch: Tensor, pool: Optional[Pool]) -> Tensor:
        b = batch.shape[0]
        others = batch
        if pool is not None and pool.points is not None and pool.points.shape[0]:
            others = torch.cat([batch, pool.points[-self.max_points:].to(batch.dtype)])
        if others.shape[0] < 2:
            return batch.sum() * 0.0
        d2 = torch.cdist(batch, others).pow(2)
        self_pairs = torch.zeros_like(d2, dtype=torch.bool)
        self_pairs[:, :b] = torch.eye(b, dtype=torch.bool, device=batch.device)
        if self.bandwidth is None:
            with torch.no_grad():
                h2 = d2[~self_pairs].median().clamp(min=1e-12) / 2
        else:
            h2 = torch.tensor(self.bandwidth ** 2, dtype=batch.dtype, device=batch.device)
        kernel = torch.exp(-d2 / (2 * h2)).masked_fill(self_pairs, 0.0)
        return -kernel.sum() / (b * (others.shape[0] - 1))


# -- the registry of objectives ----------------------------------------------------------------
def _sum_squared(weight: float = 1.0, normalize: bool = True, **options) -> Diversity:
    if options:
        raise ValueError(f"objective 'sum_squared' takes no options, got {sorted(options)}")
    return SumSquaredDistances(weight, "embedding", normalize)


def _codes(weight: float = 1.0, normalize: bool = True, **options) -> Diversity:
    if options:
        raise ValueError(f"objective 'codes' takes no options, got {sorted(options)}")
    return SumSquaredDistances(weight, "codes", normalize)


def _none(weight: float = 0.0, normalize: bool = True, **options) -> Diversity:
    if options:
        raise ValueError(f"objective 'none' takes no options, got {sorted(options)}")
    return NoDiversity()


def _repulsive(weight: float = 1.0, normalize: bool = True, **options) -> Diversity:
    return RepulsiveEnergy(weight, **options)


#: name -> factory ``(weight, normalize, **options) -> Diversity``
OBJECTIVES: dict = {"sum_squared": _sum_squared, "codes": _codes, "none": _none, "repulsive": _repulsive}


def register_objective(name: str, factory, *, replace: bool = False) -> None:
    """Make ``objective=name`` build ``factory(weight=..., normalize=..., **options)`` (a
    ``Diversity`` subclass works as its own factory when its ``__init__`` takes those)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"objective name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"objective factory must be callable, got {factory!r}")
    if name in OBJECTIVES and OBJECTIVES[name] is not factory and not replace:
        raise ValueError(f"an objective named {name!r} is already registered; pass replace=True")
    OBJECTIVES[name] = factory


def make_objective(name, weight: float = 1.0, normalize: bool = True, options: Optional[dict] = None) -> Diversity:
    """The objective registered as ``name`` (or ``name`` itself when it is a ``Diversity``)."""
    if isinstance(name, Diversity):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)} or a Diversity, got {name!r}")
    built = OBJECTIVES[name](weight=weight, normalize=normalize, **dict(options or {}))
    if not isinstance(built, Diversity):
        raise TypeError(f"objective {name!r} built a {type(built).__name__}, not a Diversity")
    return built


def pairwise_sum_naive(batch: Tensor, pool: Optional[Tensor] = None) -> Tensor:
    """The same double sum by brute force, ``O(B^2 + B P)`` memory: the reference for tests."""
    total = torch.cdist(batch, batch).pow(2).sum()
    if pool is not None and pool.shape[0]:
        total = total + torch.cdist(batch, pool).pow(2).sum()
    return total
