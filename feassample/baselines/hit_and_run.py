"""Hit-and-run for a linear slab ``{x in [0,1]^d : a <= w.x <= b}`` (``fs.LogisticHalfspace``).

``k`` chains run in parallel. Each step draws a direction ``u`` (a uniformly random unit vector,
``direction="random"``, or a random coordinate axis, ``"coordinate"``), intersects the line
``x + lam u`` exactly with the box and the slab (both are convex: the chord is one interval of
``lam``), and moves to a uniform point of the chord. The uniform law on the slab is invariant.
The chains run in float64 and every state is tested with the exact membership test (a proposal
that rounding would push outside is refused: the chain stays), so every kept state is a member.

Starting points: ``x(s) = clamp(u0 + s w, 0, 1)`` with ``u0`` uniform in the box; ``w.x(s)`` is
monotone in ``s``, and a bisection puts each chain on the middle of the slab. Cost accounting: one
model evaluation per chain and step (the unit's value ``w.x`` along the line), one per chain and
bisection iteration, and one per kept state (``w.x`` recomputed from scratch, exactly, before a state
is kept, so rounding cannot accumulate).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..core.problem import FeasibleSet
from ..core.sample import SamplerConfig
from . import common
from .common import Budget, Collector

BISECTION_STEPS = 64


def linear_slab(problem: FeasibleSet) -> tuple[Tensor, float, float]:
    """``(w (d,) float64, a, b)`` of a linear slab on ``[0,1]^d``, or a clear ``TypeError``."""
    w = getattr(problem, "w64", None)
    a, b = getattr(problem, "a", None), getattr(problem, "b", None)
    ok = (isinstance(w, Tensor) and w.dim() == 1 and isinstance(a, (int, float))
          and isinstance(b, (int, float)) and problem.box is not None
          and tuple(float(v) for v in problem.box) == (0.0, 1.0)
          and tuple(problem.code_shape) == (w.numel(),))
    if not ok:
        raise TypeError(
            f"hit_and_run samples linear slabs {{x in [0,1]^d : a <= w.x <= b}} only "
            f"(fs.LogisticHalfspace, which has w64, a, b and the box [0,1]^d); got "
            f"{type(problem).__name__} ({problem.describe()}). For other problems use "
            "method='walk', 'rejection', 'langevin' or 'activation_max'.")
    return w.to(torch.float64), float(a), float(b)


def _start(w: Tensor, a: float, b: float, k: int, gen: torch.Generator) -> Tensor:
    """``k`` points of the slab: ``clamp(u0 + s w, 0, 1)`` with ``w.x = `` the slab's middle."""
    t_min, t_max = float(w.clamp(max=0).sum()), float(w.clamp(min=0).sum())
    lo, hi = max(a, t_min), min(b, t_max)
    target = (lo + hi) / 2
    u0 = torch.rand((k, w.numel()), generator=gen, dtype=torch.float64).to(w.device)
    reach = 1.0 / float(w.abs()[w != 0].min())  # at |s| = reach every coordinate is saturated
    s_lo = torch.full((k,), -reach, dtype=torch.float64, device=w.device)
    s_hi = torch.full((k,), reach, dtype=torch.float64, device=w.device)
    for _ in range(BISECTION_STEPS):
        s = (s_lo + s_hi) / 2
        t = (u0 + s[:, None] * w).clamp(0, 1) @ w
        below = t < target
        s_lo = torch.where(below, s, s_lo)
        s_hi = torch.where(below, s_hi, s)
    return (u0 + ((s_lo + s_hi) / 2)[:, None] * w).clamp(0, 1)


def _box_chord(x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``{lam : 0 <= x + lam u <= 1}`` as ``(lam_lo, lam_hi)`` per row (``u`` has no zero entry)."""
    r1, r2 = -x / u, (1 - x) / u
    return torch.minimum(r1, r2).amax(dim=1), torch.maximum(r1, r2).amin(dim=1)


def _slab_chord(t: Tensor, wu: Tensor, a: float, b: float) -> tuple[Tensor, Tensor]:
    """``{lam : a <= t + lam wu <= b}`` as ``(lam_lo, lam_hi)`` (everything where ``wu == 0``)."""
    wsafe = torch.where(wu == 0, torch.ones_like(wu), wu)
    s1, s2 = (a - t) / wsafe, (b - t) / wsafe
    low = torch.where(wu == 0, -math.inf, torch.minimum(s1, s2))
    high = torch.where(wu == 0, math.inf, torch.maximum(s1, s2))
    return torch.nan_to_num(low, nan=-math.inf), torch.nan_to_num(high, nan=math.inf)


def hit_and_run(problem: FeasibleSet, cfg: SamplerConfig, device, dtype, callbacks, t0, *,
                direction: str = "random", thin: Optional[int] = None, burn: Optional[int] = None,
                max_evals: Optional[int] = None, initial_codes=None):
    """Hit-and-run chains on a linear slab.

    Options:
        direction: ``"random"`` (uniform unit vectors) or ``"coordinate"`` (random axes).
        thin: steps between kept states of each chain (default ``d``).
        burn: steps before the first kept state (default ``5 * thin``).
        max_evals: budget of per-sample model evaluations (default: what ``n`` samples need,
            ``k * (64 + burn + ceil(n / k) * (thin + 1))``).

    Returns float64 codes (the chains' states), whatever ``cfg.dtype``: exact membership holds.
    """
    w, a, b = linear_slab(problem)
    common.reject_initial_codes("hit_and_run", initial_codes)
    if direction not in ("random", "coordinate"):
        raise ValueError(f"direction must be 'random' or 'coordinate', got {direction!r}")
    d = w.numel()
    thin = d if thin is None else thin
    burn = 5 * thin if burn is None else burn
    if isinstance(thin, bool) or not isinstance(thin, int) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    if isinstance(burn, bool) or not isinstance(burn, int) or burn < 0:
        raise ValueError(f"burn must be an integer >= 0, got {burn!r}")
    k = cfg.k
    rounds = math.ceil(cfg.n / k)
    if max_evals is None:
        max_evals = k * (BISECTION_STEPS + burn + rounds * (thin + 1))
    budget = Budget(max_evals, cfg)
    gen = common.generator(cfg)
    w = w.to(device)
    collector = Collector(cfg.n)
    f64 = torch.float64
    start_cost = k * BISECTION_STEPS
    if start_cost > budget.left:
        raise ValueError(f"hit_and_run: starting {k} chains costs {start_cost} model evaluations, "
                         f"more than max_evals={budget.max}")
    x = _start(w, a, b, k, gen)
    budget.spend(start_cost)
    t = x @ w
    inside = ((t >= a) & (t <= b) & ((x >= 0) & (x <= 1)).all(dim=1))
    if not bool(inside.all()):  # cannot happen for a slab of positive width; be loud if it does
        raise RuntimeError(f"hit_and_run could not place {int((~inside).sum())} starting point(s) in the slab")
    rows = torch.arange(k, device=device)
    step = refused = 0
    while not collector.full and budget.left >= k:
        if direction == "random":
            # float32 normals (4x cheaper to draw); the direction is then exact in float64
            u = torch.randn((k, d), generator=gen, dtype=torch.float32).to(device=device, dtype=f64)
            u = torch.where(u == 0, torch.full_like(u, 1e-300), u)
            u = u / u.norm(dim=1, keepdim=True)
            box_lo, box_hi = _box_chord(x, u)
            wu = u @ w
        else:
            j = torch.randint(d, (k,), generator=gen).to(device)
            xj = x[rows, j]
            box_lo, box_hi = -xj, 1 - xj
            wu = w[j]
        slab_lo, slab_hi = _slab_chord(t, wu, a, b)
        low, high = torch.maximum(box_lo, slab_lo), torch.minimum(box_hi, slab_hi)
        lam = low + torch.rand(k, generator=gen, dtype=f64).to(device) * (high - low)
        lam = torch.where(torch.isfinite(lam), lam, torch.zeros_like(lam))
        # The unit along the line, t + lam w.u: one evaluation per chain and step.
        t_new = t + lam * wu
        budget.spend(k)
        ok = (t_new >= a) & (t_new <= b)
        refused += int((~ok).sum())
        lam = torch.where(ok, lam, torch.zeros_like(lam))
        if direction == "random":
            x = (x + lam[:, None] * u).clamp(0, 1)
        else:
            x[rows, j] = (xj + lam).clamp(0, 1)
        t = torch.where(ok, t_new, t)
        step += 1
        if step > burn and (step - burn) % thin == 0 and budget.left >= k:
            # Resynchronize t exactly (k evaluations) and keep the exact members.
            t = x @ w
            budget.spend(k)
            member = (t >= a) & (t <= b)
            refused += int((~member).sum())
            collector.add(x[member])
            common.notify(callbacks, "hit_and_run", collector, budget)
    stats = {"steps": step, "chains": k, "thin": thin, "burn": burn, "direction": direction,
             "refused_steps": refused, "start_evals": start_cost}
    return common.conclude(problem, cfg, t0, "hit_and_run", collector, budget, stats, device, f64)
