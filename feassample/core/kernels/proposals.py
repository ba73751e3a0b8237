"""Proposals shared by the population and walk kernels: folding into the box, reflection into a
band, probit coordinates, random draws from the run's generator, and the covering walk's pairs
proposal (block directions orthogonal to a partner's constraint gradients), and the measure both
kernels choose their moves by (``per_evaluation``). Pure functions of their arguments: every
random draw comes from the generator passed in."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

#: relative eigenvalue of a block's Gram matrix below which the block is rank-deficient
RANK_TOL = 1e-6


def fold(y: Tensor, lo: float, hi: float) -> Tensor:
    """Reflect ``y`` into ``[lo, hi]`` at the walls (any number of reflections)."""
    w = hi - lo
    u = torch.remainder(y - lo, 2 * w)
    return (lo + torch.where(u > w, 2 * w - u, u)).clamp(lo, hi)


def reflect_into(c: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Reflect values ``(B, m)`` into ``[lo, hi]`` per column (one-sided ends reflect once)."""
    flo, fhi = torch.isfinite(lo), torch.isfinite(hi)
    lo_f = torch.where(flo, lo, torch.zeros_like(lo))
    w = torch.where(flo & fhi, hi - lo, torch.ones_like(lo))
    r = torch.remainder(c - lo_f, 2 * w)
    both = lo_f + torch.where(r > w, 2 * w - r, r)
    only_lo = lo_f + (c - lo_f).abs()
    only_hi = torch.where(fhi, hi, torch.zeros_like(hi))
    only_hi = only_hi - (only_hi - c).abs()
    out = torch.where(flo & fhi, both, torch.where(flo, only_lo, torch.where(fhi, only_hi, c)))
    return torch.minimum(torch.maximum(out, lo), hi)


def orthobasis(G: Tensor) -> Tensor:
    """Orthonormal bases ``(B, D, m)`` of the row spaces of ``G (B, m, D)``."""
    q, _ = torch.linalg.qr(G.transpose(1, 2))
    return q


def rand(gen: Tensor, shape, like: Tensor, normal: bool = False) -> Tensor:
    out = torch.randn(shape, generator=gen, dtype=like.dtype) if normal else \
        torch.rand(shape, generator=gen, dtype=like.dtype)
    return out.to(like.device)


def probit(c: Tensor, lo: float, hi: float) -> Tensor:
    eps = torch.finfo(c.dtype).eps  # 1 - eps must stay below 1 in c's dtype (erfinv(1) = inf)
    u = ((c - lo) / (hi - lo)).clamp(eps, 1 - eps)
    return math.sqrt(2.0) * torch.erfinv(2 * u - 1)


def unprobit(u: Tensor, lo: float, hi: float) -> Tensor:
    return (lo + (hi - lo) * 0.5 * (1 + torch.erf(u / math.sqrt(2.0)))).clamp(lo, hi)


def pcn(x: Tensor, xi: Tensor, beta: float) -> Tensor:
    """The preconditioned Crank-Nicolson proposal ``sqrt(1 - beta^2) x + beta xi`` (Cotter,
    Roberts, Stuart & White, Stat. Sci. 28, 2013): reversible with respect to ``N(0, I)``."""
    return math.sqrt(1 - beta * beta) * x + beta * xi


def block_directions(G: Tensor, blocks: Tensor, z: Tensor) -> Tensor:
    """Unit directions ``(B, nb, b)`` in each block orthogonal to the block's gradient rows.

    ``G``: ``(B, m, D)``; ``blocks``: ``(B, nb, b)`` coordinate indices; ``z``: ``(B, nb, b)``
    random normals projected onto the null space of ``G_block (m x b)`` (exactly ``(g_j, -g_i)``
    up to sign for ``m = 1, b = 2`` with a non-zero gradient).

    Degenerate blocks: a constraint whose gradient is zero on the block (a local unit outside its
    receptive field, a max-pool that routes the gradient elsewhere) or two constraints whose
    gradient rows are parallel on the block (``h = [s, 2s]``, one slab twice) make the Gram
    matrix ``G_block G_block^T`` singular. Those blocks are found by its eigenvalues (rank below
    ``m``, relative tolerance ``RANK_TOL``) and projected with its pseudo-inverse instead:
    ``d = z - G^T (G G^T)^+ G z``, still the orthogonal projection of ``z`` onto the null space of
    the block's rows (which is then larger than ``b - m``). The other blocks keep the plain solve,
    so the directions, and the samples, of non-degenerate problems are unchanged bit for bit.

    Why the move stays exact: the pairs move needs the direction ``d`` to be chosen independently
    of the moving walker's state (a partner's gradients, the random blocks and ``z``); given
    ``d``, a Gibbs draw or a reflected window on the chord of the line ``x + t d`` in the box is
    symmetric, and accepting iff the proposal is in the band leaves the uniform law invariant.
    The pseudo-inverse is a fixed function of the same inputs, so this still holds; a zero
    direction (``z`` inside the row space, probability zero) makes the walker stay, which is
    trivially reversible."""
    B, nb, b = blocks.shape
    m = G.shape[1]
    Gb = torch.gather(G, 2, blocks.reshape(B, 1, nb * b).expand(B, m, nb * b)).reshape(B, m, nb, b)
    Gb = Gb.permute(0, 2, 1, 3)  # (B, nb, m, b)
    scale = Gb.abs().amax(dim=(2, 3), keepdim=True).clamp(min=1e-30)
    Gs = Gb / scale
    if m == 1 and b == 2:
        gi, gj = Gs[..., 0, 0], Gs[..., 0, 1]
        d = torch.stack([gj, -gi], -1)
        sign = torch.sign((d * z).sum(-1, keepdim=True))
        d = d * torch.where(sign == 0, torch.ones_like(sign), sign)
        flat = d.norm(dim=-1, keepdim=True) <= 1e-12
        d = torch.where(flat, z, d)
    else:
        eye = torch.eye(m, dtype=G.dtype, device=G.device)
        gram = Gs @ Gs.transpose(-1, -2)
        evals, evecs = torch.linalg.eigh(gram)  # ascending, (B, nb, m)
        cut = RANK_TOL * evals[..., -1:].clamp(min=0.0)
        degenerate = (evals[..., :1] <= cut).squeeze(-1)  # (B, nb): rank below m (or all zero)
        rhs = Gs @ z.unsqueeze(-1)
        safe = torch.where(degenerate[..., None, None], eye, gram + 1e-12 * eye)
        coef = torch.linalg.solve(safe, rhs)
        if bool(degenerate.any()):
            inv = torch.where(evals > cut, 1.0 / evals.clamp(min=1e-300), torch.zeros_like(evals))
            pinv_coef = evecs @ (inv.unsqueeze(-1) * (evecs.transpose(-1, -2) @ rhs))
            coef = torch.where(degenerate[..., None, None], pinv_coef, coef)
        d = z - (Gs.transpose(-1, -2) @ coef).squeeze(-1)
    return d / d.norm(dim=-1, keepdim=True).clamp(min=1e-30)


def pairs_proposal(x: Tensor, G: Tensor, box: tuple, scale: Tensor, rounds: int,
                   block: Optional[int], gen) -> Tensor:
    """The pairs move's proposal ``y (B, D)`` from ``x (B, D)`` (shared by ``cover`` and ``smc``).

    ``rounds`` times: random disjoint blocks of ``block`` (default ``m + 1``) coordinates (one draw
    shared by the moving rows), in each block the unit direction orthogonal to that block's rows
    of the *partner* gradients ``G (B, m, D)`` (``block_directions``), and a point of the box
    chord of the line along it: a uniform (Gibbs) point where ``scale >= 1``, else a uniform step
    of half-width ``scale x`` the chord's length reflected into the chord. Every ingredient is
    independent of the moving row's own state and each draw is a symmetric kernel on its line, so
    "accept iff ``y`` is in the set" leaves the uniform law on the set (in the box) invariant."""
    blo, bhi = box
    B, D = x.shape
    m = G.shape[1]
    b = block or (m + 1)
    if b < m + 1:
        raise ValueError(f"block={b} leaves no direction orthogonal to {m} constraint gradients: "
                         f"use block >= {m + 1}")
    nb = D // b
    y = x.clone()
    for _ in range(rounds):
        # random disjoint blocks (one draw shared by the moving walkers: it is independent of
        # their states, which is all the symmetry of the proposal needs)
        perm = torch.randperm(D, generator=gen)[: nb * b].to(x.device).expand(B, nb * b)
        blocks = perm.reshape(B, nb, b)
        d = block_directions(G, blocks, rand(gen, (B, nb, b), x, normal=True))
        xb = torch.gather(y, 1, perm).reshape(B, nb, b)
        safe = d.abs() > 1e-12
        dd = torch.where(safe, d, torch.ones_like(d))
        t1, t2 = (blo - xb) / dd, (bhi - xb) / dd
        tmin = torch.where(safe, torch.minimum(t1, t2), torch.full_like(d, -math.inf)).amax(-1)
        tmax = torch.where(safe, torch.maximum(t1, t2), torch.full_like(d, math.inf)).amin(-1)
        tmin, tmax = tmin.clamp(max=0.0), tmax.clamp(min=0.0)
        u = rand(gen, (B, nb), x)
        length = tmax - tmin
        gibbs = tmin + u * length
        # window move: a uniform step of half-width s * length, reflected into the chord
        step = (2 * u - 1) * (scale[:, None] * length)
        span = length.clamp(min=1e-30)
        r = torch.remainder(step - tmin, 2 * span)
        win = tmin + torch.where(r > span, 2 * span - r, r)
        t = torch.where((scale[:, None] >= 1.0), gibbs, win)
        # a zero direction (a measure-zero event) gives an unbounded chord: the walker stays
        t = torch.where((length > 0) & torch.isfinite(length), t, torch.zeros_like(t))
        new = (xb + t.unsqueeze(-1) * d).clamp(blo, bhi)
        y.scatter_(1, perm, new.reshape(B, nb * b))
    return y


def per_evaluation(jump2: dict, evals: dict) -> dict:
    """Each move kind's summed squared jump (``jump2``) per model evaluation it cost (``evals``):
    the expected squared jumped distance per unit cost (Pasarica & Gelman, Statistica Sinica 20,
    2010), by which the covering walk chooses its schedule after the burn-in and the SMC kernel
    its band's cycle."""
    return {kind: float(j) / max(int(evals.get(kind, 0)), 1) for kind, j in jump2.items()}


__all__ = ["RANK_TOL", "per_evaluation", "fold", "reflect_into", "orthobasis", "rand", "probit", "unprobit", "pcn",
           "block_directions", "pairs_proposal"]
