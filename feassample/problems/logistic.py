"""The analytic logistic slab: ``{x in [0,1]^d : z1 <= sigmoid(w.x + c) <= z2}`` (paper §3.1).

Its exact answer is known (``feassample.problems.slab_truth``), so every claim of the sampler can be
checked against it: exact membership, the law of ``t = w.x`` on the set, its volume, and an exact
iid uniform sampler.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..core.bands import Bands
from ..core.problem import FeasibleSet, Measurement, _dtype


def logit(p: float) -> float:
    """``log(p / (1 - p))`` with ``logit(0) = -inf`` and ``logit(1) = +inf``."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p) - math.log1p(-p)


def random_weights(d: int, seed: int = 0, scale: float = 4.0) -> Tensor:
    """Weights ``w ~ N(0, scale^2 / d)`` drawn with a fixed seed (float64, ``(d,)``)."""
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(d, generator=g, dtype=torch.float64) * (scale / math.sqrt(d))


def _real(name: str, z) -> float:
    """A band end in [0, 1]: a Python, numpy or 0-d tensor real number."""
    if torch.is_tensor(z) and z.dim() == 0 and not z.is_complex():
        z = z.item()
    elif hasattr(z, "dtype") and getattr(z, "shape", None) == () and getattr(z.dtype, "kind", "") in "iuf":
        z = z.item()  # numpy scalars
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not 0.0 <= z <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1] (a sigmoid's range), got {z!r}")
    return float(z)


class LogisticHalfspace(FeasibleSet):
    """The set of ``x in [0,1]^d`` with ``z1 <= sigmoid(w.x + c) <= z2``.

    Args:
        w: weights, ``(d,)``; finite, not all zero.
        c: bias; ``None`` centres the unit on the cube (``c = -sum(w)/2``, so ``f(0.5) = 0.5``).
        z1, z2: the activation band, ``0 <= z1 < z2 <= 1`` (``z2 = 1`` gives the paper's half-space).
        scale: ``"logit"`` (default) measures ``h(x) = w.x + c`` against ``[logit z1, logit z2]``,
            the same set with gradients that do not vanish in the sigmoid's tails; ``"prob"``
            measures ``sigmoid(w.x + c)`` against ``[z1, z2]`` as in the paper.
        dtype: default dtype of codes.

    Attributes:
        a, b: the slab in ``t = w.x`` units: ``a <= t <= b``.
    """

    box = (0.0, 1.0)

    def __init__(self, w, c: Optional[float] = 0.0, z1: float = 0.5, z2: float = 1.0, *,
                 scale: str = "logit", dtype: torch.dtype = torch.float32) -> None:
        if (torch.is_tensor(w) and w.is_complex()) or (hasattr(w, "dtype") and getattr(w.dtype, "kind", "") == "c") \
                or (isinstance(w, (list, tuple)) and any(isinstance(v, complex) for v in w)):
            raise ValueError("w must be real: complex weights have no order for a band z1 <= f <= z2")
        w = torch.as_tensor(w, dtype=torch.float64).detach().cpu()
        if w.dim() != 1 or w.numel() < 1:
            raise ValueError(f"w must be a 1-D vector of length d >= 1, got shape {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()):
            bad = (~torch.isfinite(w)).nonzero().squeeze(1)[:5].tolist()
            raise ValueError(f"w must be finite; entries {bad} are NaN or infinite")
        if bool((w == 0).all()):
            raise ValueError("w is all zeros: the unit is constant and the set is all or nothing")
        if scale not in ("logit", "prob"):
            raise ValueError(f"scale must be 'logit' or 'prob', got {scale!r}")
        c = -float(w.sum()) / 2 if c is None else float(c)
        if not math.isfinite(c):
            raise ValueError(f"c must be finite, got {c}")
        z1, z2 = _real("z1", z1), _real("z2", z2)
        if not z1 < z2:
            raise ValueError(f"need z1 < z2 for a set of positive volume, got z1={z1}, z2={z2}")
        self.w64, self.c, self.z1, self.z2, self.scale = w, c, float(z1), float(z2), scale
        self.a, self.b = logit(z1) - c, logit(z2) - c
        t_min, t_max = float(w.clamp(max=0).sum()), float(w.clamp(min=0).sum())
        if self.a >= t_max or self.b <= t_min:
            raise ValueError(
                f"the band z1={z1}, z2={z2} is empty on [0,1]^{w.numel()}: w.x + c ranges over "
                f"[{t_min + c:.4g}, {t_max + c:.4g}], i.e. sigmoid over "
                f"[{1 / (1 + math.exp(-(t_min + c))):.4g}, {1 / (1 + math.exp(-(t_max + c))):.4g}]")
        if scale == "logit":
            self.bands = Bands((logit(z1),), (logit(z2),), names=("logit f(x)",))
        else:
            self.bands = Bands((float(z1),), (float(z2),), names=("f(x)",))
        self.d = int(w.numel())
        self.code_shape = self.input_shape = (self.d,)
        self.dtype = _dtype("dtype", dtype)
        self._w_cache: dict = {}
        self._law = None

    # -- the contract -------------------------------------------------------------------------
    def _w(self, like: Tensor) -> Tensor:
        key = (like.dtype, like.device)
        if key not in self._w_cache:
            self._w_cache[key] = self.w64.to(dtype=like.dtype, device=like.device)
        return self._w_cache[key]

    def measure(self, x: Tensor) -> Measurement:
        pre = x @ self._w(x) + self.c
        values = pre if self.scale == "logit" else torch.sigmoid(pre)
        return Measurement(values.unsqueeze(1), x)

    def t(self, x: Tensor) -> Tensor:
        """``w.x`` in float64, ``(B, d) -> (B,)``."""
        return x.to(torch.float64) @ self.w64.to(x.device)

    def membership(self, x: Tensor) -> Tensor:
        """Exact membership ``(B,)``: ``x`` in the cube and ``a <= w.x <= b`` (float64)."""
        x64 = x.to(torch.float64)
        t = x64 @ self.w64.to(x.device)
        in_box = ((x64 >= 0) & (x64 <= 1)).all(dim=1)
        return in_box & (t >= self.a) & (t <= self.b)

    def check(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Exact certificate: values in float64 and exact membership, independent of the optimizer."""
        with torch.no_grad():
            pre = self.t(codes) + self.c
            values = pre if self.scale == "logit" else torch.sigmoid(pre)
            return values.unsqueeze(1), self.membership(codes)

    # -- exact ground truth -------------------------------------------------------------------
    @property
    def law(self):
        """The exact ``SlabLaw`` of the set (built on first use)."""
        if self._law is None:
            from .slab_truth import SlabLaw
            self._law = SlabLaw(self.w64, self.a, self.b)
        return self._law

    def t_cdf(self, s):
        """CDF of ``t = w.x`` when ``x`` is uniform on the set."""
        return self.law.cdf(s)

    def volume(self) -> float:
        """Volume fraction of the set in the cube."""
        return self.law.volume()

    def exact_sample(self, n: int, generator: Optional[torch.Generator] = None,
                     dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` exact iid uniform samples of the set, ``(n, d)``."""
        return self.law.sample(n, generator=generator, dtype=dtype)

    def describe(self) -> str:
        return (f"LogisticHalfspace(d={self.d}, {self.z1:g} <= sigmoid(w.x + {self.c:.3g}) <= {self.z2:g}, "
                f"scale={self.scale})")

    def config(self) -> dict:
        cfg = super().config()
        cfg.update(d=self.d, c=self.c, z1=self.z1, z2=self.z2, scale=self.scale, a=self.a, b=self.b)
        return cfg

    @classmethod
    def random(cls, d: int, z1: float, z2: float, w_seed: int = 0, c: Optional[float] = None,
               w: Optional[Sequence[float]] = None, **kwargs) -> "LogisticHalfspace":
        """A slab with ``w ~ N(0, 16/d)`` (seeded), or the given ``w`` (which must have length
        ``d``), centred on the cube unless ``c`` is given."""
        if w is None:
            return cls(random_weights(d, w_seed), c, z1, z2, **kwargs)
        w = list(w)
        if len(w) != d:
            raise ValueError(f"w has length {len(w)} but d={d}: give d weights (or w=null for random ones)")
        return cls(w, c, z1, z2, **kwargs)
