"""The covering walk's moves (see ``kernels.cover``): level, pairs, normal and manifold, each one
proposal and one model evaluation per moving walker (plus the manifold move's Newton steps), with
their per-move counts and the burn-in's step adaptation. Longer than most modules: the four moves
share their bookkeeping (counts, adaptation, evaluation) and read best side by side."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...evaluate import in_band, in_domain, values_and_grads
from ..proposals import fold, orthobasis, pairs_proposal, rand, reflect_into
from .config import CoverState


def _count(state: CoverState, kind: str, proposed: int, accepted: int, evals: int = 0,
           jump2: float = 0.0, hjump2: float = 0.0) -> None:
    """Per move kind: proposals, acceptances, model evaluations, squared jump distances (in codes
    and in constraint values over their spans)."""
    for book, v in ((state.proposed, proposed), (state.accepted_moves, accepted),
                    (state.move_evals, evals)):
        book[kind] = book.get(kind, 0) + int(v)
    for book, v in ((state.jump2, jump2), (state.hjump2, hjump2)):
        book[kind] = book.get(kind, 0.0) + float(v)


def _hjump(state: CoverState, new: Tensor, old: Tensor) -> Tensor:
    return ((new - old) / state.spans.to(new.dtype)).pow(2).sum()


def _adapt(scale: Tensor, idx: Tensor, acc: Tensor, target: float, state: CoverState,
           cap: Optional[float] = None) -> None:
    """Robbins-Monro on the log step size during the burn-in only (frozen afterwards).

    The scale is shared by all walkers and driven by their pooled acceptance: per-walker
    adaptation from 0/1 outcomes left some walkers with 5x too small steps (slow mixing of h)."""
    if state.rounds >= state.burn or idx.numel() == 0:
        return
    gain = 1.0 / math.sqrt(1.0 + state.rounds / max(len(state.schedule), 1))
    rate = acc.to(scale.dtype).mean()
    new = scale * torch.exp(gain * (rate - target))
    if cap is not None:
        new = new.clamp(max=cap)
    scale.copy_(new)


def evaluate_into(problem, state: CoverState, y: Tensor) -> tuple[Tensor, Tensor]:
    values, grads = values_and_grads(problem, y)
    state.model_evals += y.shape[0]
    state.vjp_evals += y.shape[0] * problem.bands.m
    return values, grads


def level_move(state: CoverState, problem, idx: Tensor, gen, band, cfg) -> None:
    lo, hi, _ = band
    evals0 = state.model_evals
    x = state.codes[idx]
    y = x + state.level_scale[idx, None] * rand(gen, x.shape, x, normal=True)
    if problem.box is not None:
        y = fold(y, *problem.box)
    ok = in_domain(problem, y)
    acc = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
    rows = ok.nonzero().squeeze(1)
    if rows.numel():
        v, g = evaluate_into(problem, state, y[rows])
        good = in_band(v, lo, hi)
        take = rows[good]
        acc[take] = True
        hj = _hjump(state, v[good], state.values[idx[take]])
        state.codes[idx[take]], state.values[idx[take]], state.grads[idx[take]] = y[take], v[good], g[good]
    else:
        hj = 0.0
    _count(state, "level", idx.numel(), acc.sum(), state.model_evals - evals0,
           (y[acc] - x[acc]).pow(2).sum(), hj)
    _adapt(state.level_scale, idx, acc, cfg.level_accept, state,
           cap=(problem.box[1] - problem.box[0]) if problem.box is not None else None)


def pairs_move(state: CoverState, problem, idx: Tensor, partner: Tensor, gen, band, cfg) -> None:
    lo_b, hi_b, _ = band
    x = state.codes[idx]
    B = x.shape[0]
    y = pairs_proposal(x, state.grads[partner], problem.box, state.pairs_scale[idx], cfg.pair_rounds,
                       cfg.block, gen)
    v, g = evaluate_into(problem, state, y)
    good = in_band(v, lo_b, hi_b)
    take = good.nonzero().squeeze(1)
    hj = _hjump(state, v[take], state.values[idx[take]])
    state.codes[idx[take]], state.values[idx[take]], state.grads[idx[take]] = y[take], v[take], g[take]
    _count(state, "pairs", B, good.sum(), B, (y[take] - x[take]).pow(2).sum(), hj)
    _adapt(state.pairs_scale, idx, good, cfg.pairs_accept, state, cap=1.0)


def normal_move(state: CoverState, problem, idx: Tensor, partner: Tensor, gen, band, cfg) -> None:
    """Across the band along a partner's normal ``n``: ``t`` uniform on the chord ``C_x`` of the
    line ``x + t n`` cut by the box and by the band under the walker's own linear model of ``h``
    (capped at ``|t| <= T``); Metropolis-Hastings with ``|C_x| / |C_y|`` and ``x in C_y``. For an
    affine constraint ``C_x = C_y``: an exact Gibbs draw of ``h`` across the band along ``n``."""
    lo, hi, _ = band
    evals0 = state.model_evals
    x, hx, Gx = state.codes[idx], state.values[idx], state.grads[idx]
    B, D = x.shape
    m = hx.shape[1]
    Gp = state.grads[partner]
    # a random unit direction in the span of the partner's gradient rows
    n = (rand(gen, (B, 1, m), x, normal=True) @ Gp).squeeze(1) if m > 1 else Gp[:, 0]
    n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-30)
    spans = state.spans.to(x.dtype)
    slope_p = (Gp @ n.unsqueeze(-1)).squeeze(-1).abs()  # (B, m) partner's slopes along n
    cap = (spans / slope_p.clamp(min=1e-30)).amin(1)     # T: independent of the walker's state

    def chord(pos: Tensor, h: Tensor, G: Tensor, n: Tensor, cap: Tensor) -> tuple[Tensor, Tensor]:
        slope = (G @ n.unsqueeze(-1)).squeeze(-1)  # (B, m)
        safe = slope.abs() > 1e-30
        sl = torch.where(safe, slope, torch.ones_like(slope))
        a1, a2 = (lo - h) / sl, (hi - h) / sl
        c_lo = torch.where(safe, torch.minimum(a1, a2), torch.full_like(h, -math.inf)).amax(1)
        c_hi = torch.where(safe, torch.maximum(a1, a2), torch.full_like(h, math.inf)).amin(1)
        c_lo, c_hi = torch.maximum(c_lo, -cap), torch.minimum(c_hi, cap)
        if problem.box is not None:
            nz = n.abs() > 1e-30
            nn_ = torch.where(nz, n, torch.ones_like(n))
            b1, b2 = (problem.box[0] - pos) / nn_, (problem.box[1] - pos) / nn_
            c_lo = torch.maximum(c_lo, torch.where(nz, torch.minimum(b1, b2), torch.full_like(n, -math.inf)).amax(1))
            c_hi = torch.minimum(c_hi, torch.where(nz, torch.maximum(b1, b2), torch.full_like(n, math.inf)).amin(1))
        return c_lo, c_hi

    c_lo, c_hi = chord(x, hx, Gx, n, cap)
    c_lo, c_hi = c_lo.clamp(max=0.0), c_hi.clamp(min=0.0)
    u = rand(gen, (B,), x)
    t = c_lo + u * (c_hi - c_lo)
    y = x + t[:, None] * n
    if problem.box is not None:
        y = y.clamp(*problem.box)
    u2 = rand(gen, (B,), x)
    ok = in_domain(problem, y) & (c_hi > c_lo)
    acc = torch.zeros(B, dtype=torch.bool, device=x.device)
    rows = ok.nonzero().squeeze(1)
    hj = 0.0
    if rows.numel():
        v, g = evaluate_into(problem, state, y[rows])
        r_lo, r_hi = chord(y[rows], v, g, n[rows], cap[rows])
        back = -t[rows]
        inside = (back >= r_lo) & (back <= r_hi) & (r_hi > r_lo)
        ratio = (c_hi - c_lo)[rows] / (r_hi - r_lo).clamp(min=1e-300)
        good = in_band(v, lo, hi) & inside & (u2[rows] < ratio)
        take = rows[good]
        acc[take] = True
        hj = _hjump(state, v[good], state.values[idx[take]])
        state.codes[idx[take]], state.values[idx[take]], state.grads[idx[take]] = y[take], v[good], g[good]
    _count(state, "normal", B, acc.sum(), state.model_evals - evals0, (y[acc] - x[acc]).pow(2).sum(), hj)


def _newton(problem, state: CoverState, base: Tensor, Q: Tensor, target: Tensor, tol: Tensor,
            cfg) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Solve ``h(base + Q a) = target`` for ``a`` (``Q``: ``(B, D, m)``) by Newton from ``a = 0``.

    Returns ``(y, values, grads, converged)``; every iterate costs one model evaluation."""
    B, D = base.shape
    m = Q.shape[2]
    a = base.new_zeros(B, m)
    y = base.clone()
    values = base.new_full((B, m), float("nan"))
    grads = base.new_zeros(B, m, D)
    conv = torch.zeros(B, dtype=torch.bool, device=base.device)
    live = in_domain(problem, y)
    for it in range(cfg.newton_iters + 1):
        rows = (live & ~conv).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        v, g = evaluate_into(problem, state, y[rows])
        values[rows], grads[rows] = v, g
        res = v - target[rows]
        done_now = (res.abs() <= tol[rows]).all(1) & torch.isfinite(v).all(1)
        conv[rows[done_now]] = True
        if it == cfg.newton_iters:
            break
        go = rows[~done_now]
        if go.numel() == 0:
            break
        J = grads[go] @ Q[go]  # (b, m, m) = G_y Q_x
        try:
            da = torch.linalg.solve(J, res[~done_now].unsqueeze(-1)).squeeze(-1)
        except RuntimeError:
            da = torch.linalg.lstsq(J, res[~done_now].unsqueeze(-1)).solution.squeeze(-1)
        a[go] = a[go] - torch.nan_to_num(da, nan=0.0)
        y[go] = base[go] + (Q[go] @ a[go].unsqueeze(-1)).squeeze(-1)
        live[go] = in_domain(problem, y[go]) & torch.isfinite(da).all(1)
    return y, values, grads, conv & live


def manifold_move(state: CoverState, problem, idx: Tensor, gen, band, cfg) -> None:
    lo, hi, width = band
    evals0 = state.model_evals
    x, hx, Gx = state.codes[idx], state.values[idx], state.grads[idx]
    B, D = x.shape
    m = hx.shape[1]
    sig = state.tangent_scale[idx]
    Qx = orthobasis(Gx)
    xi = rand(gen, (B, D), x, normal=True)
    v = sig[:, None] * (xi - (Qx @ (Qx.transpose(1, 2) @ xi.unsqueeze(-1))).squeeze(-1))
    # the new level: a Gaussian step reflected into the band (a symmetric kernel on the band)
    sc = cfg.level_frac * state.spans.to(x.dtype).expand(B, m)
    target = reflect_into(hx + sc * rand(gen, (B, m), x, normal=True), lo, hi)
    u = rand(gen, (B,), x)
    tol = (cfg.newton_tol * state.spans.to(x.dtype).expand(B, m)).clamp(min=1e-6 * (1 + hx.abs()))
    ok = in_band(target, lo, hi)
    acc = torch.zeros(B, dtype=torch.bool, device=x.device)
    rows = ok.nonzero().squeeze(1)
    if rows.numel():
        y, vy, Gy, conv = _newton(problem, state, x[rows] + v[rows], Qx[rows], target[rows], tol[rows], cfg)
        good = conv & in_band(vy, lo, hi)
        # Metropolis-Hastings ratio p(v') |det(G_x Q_y)| / (p(v) |det(G_y Q_x)|)
        Qy = orthobasis(torch.where(good[:, None, None], Gy, Gx[rows]))
        diff = x[rows] - y
        vr = diff - (Qy @ (Qy.transpose(1, 2) @ diff.unsqueeze(-1))).squeeze(-1)
        s2 = sig[rows] ** 2
        logr = (v[rows].pow(2).sum(1) - vr.pow(2).sum(1)) / (2 * s2)
        dxy = torch.linalg.det(Gx[rows] @ Qy).abs()
        dyx = torch.linalg.det(Gy @ Qx[rows]).abs()
        logr = logr + torch.log(dxy.clamp(min=1e-300)) - torch.log(dyx.clamp(min=1e-300))
        pass_mh = good & (torch.log(u[rows].clamp(min=1e-300)) < logr)
        if cfg.reverse_check and bool(pass_mh.any()):
            rr = pass_mh.nonzero().squeeze(1)
            xr, _, _, conv_r = _newton(problem, state, y[rr] + vr[rr], Qy[rr], hx[rows[rr]], tol[rows[rr]], cfg)
            # another root of the reverse solve lies O(sigma) away; tolerance-level misses do not
            back = conv_r & ((xr - x[rows[rr]]).norm(dim=1) <= 0.05 * sig[rows[rr]])
            pass_mh[rr] = back
        take = pass_mh.nonzero().squeeze(1)
        acc[rows[take]] = True
        j = idx[rows[take]]
        jump = (y[take] - x[rows[take]]).pow(2).sum()
        hj = _hjump(state, vy[take], state.values[j])
        state.codes[j], state.values[j], state.grads[j] = y[take], vy[take], Gy[take]
    else:
        jump, hj = 0.0, 0.0
    _count(state, "manifold", B, acc.sum(), state.model_evals - evals0, jump, hj)
    # the tangent step adapts on the proposals whose new level was inside the band (the level
    # draw's own rejections do not depend on it)
    _adapt(state.tangent_scale, idx[ok], acc[ok], cfg.manifold_accept, state)


__all__ = ["evaluate_into", "level_move", "pairs_move", "normal_move", "manifold_move"]
