"""Diversity objectives on the embeddings of a batch and a frozen pool (to be maximized).

The paper's objective (eqs. 5, 6) is the sum of squared pairwise distances. It needs no
``O(n^2)`` work: with ``S = sum_i e_i`` and ``Q = sum_i ||e_i||^2``,

    sum_{i,j in B} ||e_i - e_j||^2         = 2 |B| Q_B - 2 ||S_B||^2
    sum_{i in B} sum_{y in P} ||e_i - e_y||^2 = |P| Q_B - 2 S_B . S_P + |B| Q_P

so a frozen pool enters only through its sufficient statistics ``(|P|, S_P, Q_P)``: a step
costs ``O(B)`` work, and keeping the pool's running sums ``O(P)`` over a whole run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass
class PoolStats:
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


class Diversity:
    """Base class: ``value(batch, pool) -> scalar`` to be maximized.

    Attributes:
        space: where distances are taken: ``"embedding"`` (the problem's ``e(x)``, the paper's
            ``E(G(c))``), ``"codes"`` (eq. 13) or ``"none"``.
        weight: multiplier of the term in the loss.
    """

    space: str = "embedding"
    weight: float = 1.0

    def value(self, batch: Tensor, pool: Optional[PoolStats]) -> Tensor:
        """The objective for a ``(B, p)`` batch against a frozen pool (``None``: no pool)."""
        raise NotImplementedError


class NoDiversity(Diversity):
    """No diversity term: the paper's ablation eq. (14), a pure feasibility problem."""

    space = "none"
    weight = 0.0

    def value(self, batch: Tensor, pool: Optional[PoolStats]) -> Tensor:
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

    def value(self, batch: Tensor, pool: Optional[PoolStats]) -> Tensor:
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

    def value(self, batch: Tensor, pool: Optional[PoolStats]) -> Tensor:
        return -self.fn(batch).sum()


def pairwise_sum_naive(batch: Tensor, pool: Optional[Tensor] = None) -> Tensor:
    """The same double sum by brute force, ``O(B^2 + B P)`` memory: the reference for tests."""
    total = torch.cdist(batch, batch).pow(2).sum()
    if pool is not None and pool.shape[0]:
        total = total + torch.cdist(batch, pool).pow(2).sum()
    return total
