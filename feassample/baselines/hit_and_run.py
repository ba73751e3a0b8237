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
is kept, so rounding cannot accumulate). One ``step`` of the sampler is one step of the ``k`` chains
(and the keep, when it is due). The values kept with the samples are ``h`` computed from the exact
``w.x`` (no extra model evaluation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..core.problem import FeasibleSet
from ..core.options import check_options, option
from .common import Baseline, BaselineState

BISECTION_STEPS = 64
DIRECTIONS = ("random", "coordinate")


@dataclass(frozen=True)
class HitAndRunConfig:
    """Options of ``method="hit_and_run"``.

    Attributes:
        direction: ``"random"`` (uniform unit vectors) or ``"coordinate"`` (random axes).
        thin: steps between kept states of each chain (default ``d``).
        burn: steps before the first kept state (default ``5 * thin``).
        max_evals: budget of per-sample model evaluations (default: what ``n`` samples need,
            ``k * (64 + burn + ceil(n / k) * (thin + 1))``).
    """

    direction: str = option("random", choices=DIRECTIONS)
    thin: Optional[int] = option(None, ge=1)
    burn: Optional[int] = option(None, ge=0)
    max_evals: Optional[int] = option(None, ge=1)

    def __post_init__(self) -> None:
        check_options(self)


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


def slab_values(problem: FeasibleSet, t: Tensor) -> Tensor:
    """The constraint values ``(B, 1)`` of points whose ``w.x`` is ``t``: ``w.x + c`` (the logit
    scale) or ``sigmoid(w.x + c)`` (``scale="prob"``), without a model evaluation."""
    h = t + float(getattr(problem, "c", 0.0) or 0.0)
    if getattr(problem, "scale", "logit") == "prob":
        h = torch.sigmoid(h)
    return h[:, None]


@dataclass
class HitAndRunState(BaselineState):
    """The chains ``x`` ``(k, d)`` (float64), their exact-so-far ``t = w.x``, the steps taken,
    the refused moves, and ``thin``/``burn`` resolved against ``d``."""

    x: Optional[Tensor] = None
    t: Optional[Tensor] = None
    steps: int = 0
    refused: int = 0
    start_evals: int = 0
    thin: int = 1
    burn: int = 0


class HitAndRun(Baseline):
    """Hit-and-run chains on a linear slab (``method="hit_and_run"``).

    Returns float64 codes (the chains' states), whatever the run's dtype: exact membership holds.
    """

    name = "hit_and_run"
    uses_gradients = False  # checked by core.sampling.validate: no gradient needed
    Config = HitAndRunConfig
    state_class = HitAndRunState

    def bind(self, problem, run) -> None:
        super().bind(problem, run)
        w, self.a, self.b = linear_slab(problem)
        self.w = w.to(self.device)

    def init(self, problem, run, key: int, seeds=None) -> HitAndRunState:
        linear_slab(problem)  # a clear TypeError before anything else
        cfg, k = self.config, run.k
        d = int(problem.code_shape[0])
        thin = d if cfg.thin is None else cfg.thin
        burn = 5 * thin if cfg.burn is None else cfg.burn
        max_evals = cfg.max_evals
        if max_evals is None:
            max_evals = k * (BISECTION_STEPS + burn + math.ceil(run.n / k) * (thin + 1))
        state = HitAndRunState(**self.start(problem, run, key, max_evals=max_evals,
                                            codes_dtype=torch.float64), thin=thin, burn=burn)
        start_cost = k * BISECTION_STEPS
        if start_cost > self.left(state):
            raise ValueError(f"hit_and_run: starting {k} chains costs {start_cost} model evaluations, "
                             f"more than max_evals={state.max_evals}")
        with self.generator(state) as gen:
            x = _start(self.w, self.a, self.b, k, gen)
        self.spend(state, start_cost)
        t = x @ self.w
        inside = ((t >= self.a) & (t <= self.b) & ((x >= 0) & (x <= 1)).all(dim=1))
        if not bool(inside.all()):  # cannot happen for a slab of positive width; be loud if it does
            raise RuntimeError(f"hit_and_run could not place {int((~inside).sum())} starting point(s) in the slab")
        state.x, state.t, state.start_evals = x, t, start_cost
        return state

    def done(self, state: HitAndRunState) -> bool:
        return state.samples.full or self.left(state) < self.run.k

    def step(self, state: HitAndRunState) -> tuple[HitAndRunState, dict]:
        w, a, b, k = self.w, self.a, self.b, self.run.k
        device, f64 = self.device, torch.float64
        x, t = state.x, state.t
        d = w.numel()
        rows = torch.arange(k, device=device)
        with self.generator(state) as gen:
            if self.config.direction == "random":
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
        self.spend(state, k)
        ok = (t_new >= a) & (t_new <= b)
        state.refused += int((~ok).sum())
        lam = torch.where(ok, lam, torch.zeros_like(lam))
        if self.config.direction == "random":
            x = (x + lam[:, None] * u).clamp(0, 1)
        else:
            x[rows, j] = (xj + lam).clamp(0, 1)
        t = torch.where(ok, t_new, t)
        state.steps += 1
        state.rounds += 1
        info = {"step": state.steps}
        step, burn, thin = state.steps, state.burn, state.thin
        if step > burn and (step - burn) % thin == 0 and self.left(state) >= k:
            # Resynchronize t exactly (k evaluations) and keep the exact members.
            t = x @ w
            self.spend(state, k)
            member = (t >= a) & (t <= b)
            state.refused += int((~member).sum())
            info["accepted"] = self.accept(state, x[member], slab_values(self.problem, t[member]))
        state.x, state.t = x, t
        return state, info

    def method_stats(self, state: HitAndRunState) -> dict:
        return {"steps": state.steps, "chains": self.run.k, "thin": state.thin, "burn": state.burn,
                "direction": self.config.direction, "refused_steps": state.refused,
                "start_evals": state.start_evals}


__all__ = ["HitAndRunConfig", "HitAndRunState", "HitAndRun", "linear_slab", "BISECTION_STEPS"]
