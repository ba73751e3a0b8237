"""Pieces shared by the samplers: the per-step loss, the batched optimizer, the driver loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..bands import Bands
from ..diversity import Diversity, Pool
from ..evaluate import gradient_rows
from ..lagrangian import SideMasks, penalty_terms, residuals, side_masks
from ..options import check_options, option
from ..problem import FeasibleSet
from ..state import State


@dataclass(frozen=True)
class StepConfig:
    """How codes move: ``optimizer`` is ``"adam"`` (per-coordinate scale-free steps, default) or
    ``"gd"`` (the paper's plain gradient step ``C - beta dL/dC``); ``lr`` is the step length."""

    optimizer: str = option("adam", choices=("adam", "gd"))
    lr: float = option(0.05, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = option(1e-8, gt=0)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class Moments(State):
    """Adam's running moments, one entry per code coordinate, and per-row step counts ``(B,)``."""

    first: Tensor
    second: Tensor
    count: Tensor

    @classmethod
    def zeros(cls, codes: Tensor) -> "Moments":
        return cls(torch.zeros_like(codes), torch.zeros_like(codes),
                   torch.zeros(codes.shape[0], dtype=codes.dtype, device=codes.device))

    def rows(self, index: Tensor) -> "Moments":
        return Moments(self.first[index], self.second[index], self.count[index])

    def put(self, index: Tensor, part: "Moments") -> None:
        self.first[index], self.second[index], self.count[index] = part.first, part.second, part.count


def descend(codes: Tensor, grad: Tensor, moments: Moments, cfg: StepConfig) -> tuple[Tensor, Moments]:
    """One descent step for a batch of codes ``(B, ...)``; rows are independent."""
    if cfg.optimizer == "gd":
        return codes - cfg.lr * grad, moments
    b1, b2 = cfg.betas
    count = moments.count + 1
    first = b1 * moments.first + (1 - b1) * grad
    second = b2 * moments.second + (1 - b2) * grad * grad
    shape = (-1,) + (1,) * (codes.dim() - 1)
    m_hat = first / (1 - b1 ** count).view(shape)
    v_hat = second / (1 - b2 ** count).view(shape)
    return codes - cfg.lr * m_hat / (v_hat.sqrt() + cfg.eps), Moments(first, second, count)


@dataclass
class Evaluation:
    """One forward/backward pass over a batch: values, embeddings, residuals and the gradient."""

    values: Tensor          # (B, m), detached
    embedding: Tensor       # (B, p), detached, in the objective's space
    grad: Tensor            # (B, *code_shape): d loss / d codes
    residual: Tensor        # (B, m, 2) against the target band, detached
    value_grads: Optional[Tensor] = None  # (B, m, D): d values_j / d codes (flattened), if asked


class Loss:
    """The per-step loss ``-weight * diversity + sum_i psi_i`` and its gradient in codes.

    Args:
        problem: the feasible set.
        objective: the diversity term.
        target: the band the penalty aims at (the real band shrunk by the seed margin).
    """

    def __init__(self, problem: FeasibleSet, objective: Diversity, target: Bands) -> None:
        self.problem, self.objective, self.target = problem, objective, target
        self._cache: dict = {}

    def _target_tensors(self, like: Tensor) -> tuple[Tensor, Tensor, SideMasks]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            lo, hi = self.target.tensors(like)
            self._cache[key] = (lo, hi, side_masks(self.target, like))
        return self._cache[key]

    def embed(self, codes: Tensor, x: Tensor, embedding: Optional[Tensor]) -> Tensor:
        """Features in the objective's space ``(B, p)``."""
        if self.objective.space == "codes":
            return codes.reshape(codes.shape[0], -1)
        if self.objective.space == "none":
            return codes.new_zeros(codes.shape[0], 0)
        if embedding is None:
            if getattr(self.problem, "embedding_space", "inputs") == "codes":
                return codes.reshape(codes.shape[0], -1)
            return x.reshape(x.shape[0], -1)
        return embedding.reshape(embedding.shape[0], -1)

    def evaluate(self, codes: Tensor, multipliers: Tensor, penalty: Tensor,
                 pool: Optional[Pool], select: Optional[Tensor] = None,
                 value_grads: bool = False) -> Evaluation:
        """Forward and backward for codes ``(B, ...)``.

        ``select`` (a ``(B,)`` bool) limits the loss to some rows (the others still count in
        the forward pass, e.g. seeds that have just frozen and join the pool). ``value_grads``
        also returns the constraint values' gradients ``(B, m, D)``: ``m`` more vector-Jacobian
        products through the same forward pass (rows are independent, so the gradient of a
        column's batch sum is each row's gradient).
        """
        codes = codes.detach().requires_grad_(True)
        with torch.enable_grad():
            x = self.problem.decode(codes)
            meas = self.problem.measure(x)
            values = meas.values
            emb = self.embed(codes, x, meas.embedding)
            lo, hi, masks = self._target_tensors(values)
            c = residuals(values, lo, hi, masks)
            psi = penalty_terms(c, multipliers, penalty, masks)
            if select is None:
                select = torch.ones(codes.shape[0], dtype=torch.bool, device=codes.device)
            psi = torch.where(select & torch.isfinite(psi), psi, torch.zeros_like(psi))
            loss = psi.sum()
            if self.objective.weight > 0 and bool(select.any()):
                loss = loss - self.objective.weight * self.objective.value(emb[select], pool)
            vg = None
            if value_grads:
                vg = torch.nan_to_num(gradient_rows(values, codes, keep_graph=True).detach(),
                                      nan=0.0, posinf=0.0, neginf=0.0)
            grad, = torch.autograd.grad(loss, codes, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(codes)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        return Evaluation(values.detach(), emb.detach(), grad, c.detach(), vg)


__all__ = ["StepConfig", "Moments", "descend", "Evaluation", "Loss"]
