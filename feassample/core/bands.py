"""Two-sided bands ``lo <= h <= hi`` on constraint values.

A band holds one interval per constraint. Equality is ``lo == hi`` (it then needs a
positive tolerance ``tol``, since no floating-point iterate meets it exactly); a one-sided
constraint has ``-inf`` or ``+inf`` on the other side. Both sides are always enforced: the
inverse-set paper's eq. (7) writes only ``z2 - f <= eps`` (i.e. ``f >= z1``), its definition
(§3.1) is two-sided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


def _as_floats(name: str, value) -> list[float]:
    if isinstance(value, Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    elif isinstance(value, (int, float)) or getattr(value, "shape", None) == ():
        value = [value]  # a number, or a numpy scalar (np.float32(0.5))
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {value!r}") from err
    return out


@dataclass(frozen=True)
class Bands:
    """Intervals ``lo[j] <= h_j(x) <= hi[j]`` for ``m`` constraints.

    Attributes:
        lo: lower ends, ``(m,)`` floats, may be ``-inf``.
        hi: upper ends, ``(m,)`` floats, may be ``+inf``.
        tol: absolute feasibility tolerance (``>= 0``); required ``> 0`` for equalities.
        names: one label per constraint, used in messages and reports.
    """

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    tol: float = 0.0
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lo = tuple(_as_floats("lo", self.lo))
        hi = tuple(_as_floats("hi", self.hi))
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        if len(lo) != len(hi) or not lo:
            raise ValueError(f"bands need as many lower as upper ends (>= 1), got {len(lo)} and {len(hi)}")
        names = tuple(self.names) or tuple(f"h{j}" for j in range(len(lo)))
        if len(names) != len(lo):
            raise ValueError(f"bands got {len(names)} names for {len(lo)} constraints")
        object.__setattr__(self, "names", names)
        if not (math.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}")
        for name, l, h in zip(names, lo, hi):
            if math.isnan(l) or math.isnan(h):
                raise ValueError(f"band of {name!r} has a NaN end: [{l}, {h}]")
            if l > h:
                raise ValueError(f"band of {name!r} is empty: lower end {l} > upper end {h} (need lo <= hi)")
            if l == math.inf or h == -math.inf:
                raise ValueError(f"band of {name!r} is [{l}, {h}]: lower end +inf or upper end -inf admits nothing")
            if l == h and self.tol == 0.0:
                raise ValueError(
                    f"band of {name!r} is an equality ({l} == {h}); give a tolerance tol > 0, "
                    "e.g. Bands(lo, hi, tol=1e-3)")

    @classmethod
    def of(cls, lo: float | Sequence[float], hi: float | Sequence[float], tol: float = 0.0,
           names: Sequence[str] = ()) -> "Bands":
        """Bands from scalars or sequences (scalars broadcast to the other's length)."""
        lo_l, hi_l = _as_floats("lo", lo), _as_floats("hi", hi)
        if len(lo_l) == 1 and len(hi_l) > 1:
            lo_l = lo_l * len(hi_l)
        if len(hi_l) == 1 and len(lo_l) > 1:
            hi_l = hi_l * len(lo_l)
        return cls(tuple(lo_l), tuple(hi_l), float(tol), tuple(names))

    @property
    def m(self) -> int:
        """Number of constraints."""
        return len(self.lo)

    def tensors(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(lo, hi)`` as ``(m,)`` tensors on ``like``'s device and dtype."""
        return (torch.tensor(self.lo, dtype=like.dtype, device=like.device),
                torch.tensor(self.hi, dtype=like.dtype, device=like.device))

    def violation(self, values: Tensor) -> Tensor:
        """Distance of each value outside its band, ``(B, m) -> (B, m)``, zero inside."""
        lo, hi = self.tensors(values)
        return torch.clamp(lo - values, min=0) + torch.clamp(values - hi, min=0)

    def feasible(self, values: Tensor) -> Tensor:
        """Rows inside every band up to ``tol`` (NaN rows are infeasible), ``(B, m) -> (B,)``."""
        viol = self.violation(values)
        ok = (viol <= self.tol) & ~torch.isnan(values)
        return ok.all(dim=-1)

    def shrink(self, fraction: float) -> "Bands":
        """The band narrowed toward its middle: each finite band loses ``fraction`` of its width.

        ``fraction = 0.5`` is the paper's ``eps0 = eps / 2`` (§3.4): seeds aim at the middle half
        of the band, so the walk starts inside rather than on the boundary. One-sided and equality
        bands are returned unchanged.
        """
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"seed margin fraction must be in [0, 1), got {fraction}")
        lo, hi = [], []
        for l, h in zip(self.lo, self.hi):
            width = h - l
            if math.isfinite(width) and width > 0:
                l, h = l + fraction * width / 2, h - fraction * width / 2
            lo.append(l)
            hi.append(h)
        return Bands(tuple(lo), tuple(hi), self.tol, self.names)

    def concat(self, other: "Bands") -> "Bands":
        """The bands of two problems stacked (an intersection); the larger tolerance is kept."""
        return Bands(self.lo + other.lo, self.hi + other.hi, max(self.tol, other.tol),
                     self.names + other.names)

    def describe(self) -> str:
        """One line per constraint: ``name in [lo, hi]``."""
        return "; ".join(f"{n} in [{l:g}, {h:g}]" for n, l, h in zip(self.names, self.lo, self.hi))
