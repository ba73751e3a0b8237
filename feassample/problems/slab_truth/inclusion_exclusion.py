r"""Cube law of ``t = w.x`` by inclusion-exclusion, with an exact rational fallback.

Inclusion-exclusion (few nonzero weights, ``m <= 12`` by default):
``F(y) = sum_{J ⊆ [m]} (-1)^{|J|} (y - c_J)_+^m / (m! prod c_i)`` with ``y = s - shift`` and
``c_J = sum_{i in J} c_i``; the density is the same sum with power ``m - 1`` and ``(m-1)!``.
The law is symmetric (``F(y) = 1 - F(C - y)``, ``C = sum c_i``), so every value is computed
from its small side.  A float64 evaluation carries a first-order rounding bound; any point
whose bound is too large is recomputed *exactly* in rational arithmetic (floats are dyadic
rationals, so all subset sums and powers are exact integers after one common scaling).
"""
import math
from fractions import Fraction

import numpy as np

from .cumulants import _CHUNK, _EPS

_IE_AUTO_MAX = 12          # "auto" uses inclusion-exclusion up to this many nonzero weights
_IE_MAX = 16               # inclusion-exclusion refused above this


# --------------------------------------------------------------------------------------------
# Inclusion-exclusion (exact rational fallback)
# --------------------------------------------------------------------------------------------
class _InclusionExclusion:
    """Cube law of ``t = shift + sum c_i V_i`` for ``m <= 16`` nonzero weights."""

    def __init__(self, w: np.ndarray):
        m = int(w.size)
        if m > _IE_MAX:
            raise ValueError(f"inclusion-exclusion needs at most {_IE_MAX} nonzero weights, got {m}")
        fr = [Fraction(float(v)) for v in w]
        c = [abs(v) for v in fr]
        self.m = m
        self.shift = sum((v for v in fr if v < 0), Fraction(0))
        D = max(v.denominator for v in c)
        C = [int(v * D) for v in c]
        cs, sg = [0], [1]
        for ci in C:
            cs = cs + [x + ci for x in cs]
            sg = sg + [-g for g in sg]
        order = sorted(range(len(cs)), key=cs.__getitem__)
        self.cs = [cs[i] for i in order]
        self.sg = [sg[i] for i in order]
        self.D = D
        self.prodC = math.prod(C)
        self.C = Fraction(sum(C), D)
        self.cs_f = np.array([x / D for x in self.cs], dtype=np.float64)
        self.sg_f = np.array(self.sg, dtype=np.float64)
        self.shift_f = float(self.shift)
        self.C_f = float(self.C)
        self.sumlogc = math.fsum(math.log(abs(float(v))) for v in w)

    # exact ---------------------------------------------------------------------------------
    def _poly_exact(self, y: Fraction, k: int) -> Fraction:
        """``sum_J (-1)^|J| (y - c_J)_+^k / (k! prod c)`` exactly."""
        yd = y.denominator
        L = max(self.D, yd)
        Y = y.numerator * (L // yd)
        f1 = L // self.D
        tot = 0
        for cj, g in zip(self.cs, self.sg):
            diff = Y - f1 * cj
            if diff <= 0:
                break
            tot += g * diff ** k
        return Fraction(tot * self.D ** self.m, L ** k * math.factorial(k) * self.prodC)

    def F_exact(self, s: float) -> Fraction:
        """Cube CDF at ``s`` (a float), exactly."""
        y = Fraction(float(s)) - self.shift
        if y <= 0:
            return Fraction(0)
        if y >= self.C:
            return Fraction(1)
        if 2 * y > self.C:
            return 1 - self._poly_exact(self.C - y, self.m)
        return self._poly_exact(y, self.m)

    def f_exact(self, s: float) -> Fraction:
        """Cube density at ``s``, exactly (0 outside the open support)."""
        y = Fraction(float(s)) - self.shift
        if y <= 0 or y >= self.C:
            return Fraction(0)
        return self._poly_exact(min(y, self.C - y), self.m - 1)

    # float with a rounding bound -----------------------------------------------------------
    def _poly_float(self, y: np.ndarray, k: int):
        """Float64 value and first-order error bound of the polynomial sum at ``y`` (n,)."""
        n = y.size
        val = np.zeros(n)
        err = np.zeros(n)
        norm = math.lgamma(k + 1) + self.sumlogc
        ns = self.cs_f.size
        step = max(1, _CHUNK // ns)
        big = 4 * _EPS * (np.abs(y) + self.C_f + abs(self.shift_f))
        coef = (k + self.m + 4) * _EPS
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for s in range(0, n, step):
                yy = y[s:s + step, None]
                dl = big[s:s + step, None]
                diff = yy - self.cs_f[None, :]
                pos = diff > 0
                ld = np.log(np.where(pos, diff, 1.0))
                term = np.where(pos, np.exp(k * ld - norm), 0.0)
                val[s:s + step] = (self.sg_f[None, :] * term).sum(axis=1)
                act = diff > -dl
                dp = np.where(act, np.maximum(diff, 0.0) + dl, 1.0)
                if k > 0:
                    e1 = np.exp((k - 1) * np.log(dp) + np.log(k * dl) - norm)
                else:
                    e1 = np.where(np.abs(diff) < dl, math.exp(-norm), 0.0)
                e2 = coef * np.exp(k * np.log(dp) - norm)
                err[s:s + step] = np.where(act, e1 + e2, 0.0).sum(axis=1)
        err = np.where(np.isfinite(val) & np.isfinite(err), err, np.inf)
        return val, err

    def side(self, s: np.ndarray):
        """Small-side representation at ``s``: ``(upper, val, err)`` with ``val = F`` on the
        lower half and ``val = 1 - F`` on the upper half of the support."""
        y = np.clip(s - self.shift_f, 0.0, self.C_f)
        upper = y > self.C_f / 2
        yy = np.where(upper, self.C_f - y, y)
        val, err = self._poly_float(yy, self.m)
        return upper, val, err

    def cdf(self, s: np.ndarray, tol: float = 1e-12) -> np.ndarray:
        """Cube CDF (absolute error ``<= tol``, exact fallback)."""
        upper, val, err = self.side(s)
        out = np.where(upper, 1.0 - val, val)
        for i in np.flatnonzero(~(err <= tol)):
            out[i] = float(self.F_exact(s[i]))
        return out
