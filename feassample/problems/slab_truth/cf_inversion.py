r"""Characteristic-function inversion: the cube law of ``t = w.x`` and its law on the slab.

Characteristic function (CF) inversion (any ``m``): the CF of ``t`` is a product of closed
forms.  The discretised Gil-Pelaez formula with the half-shifted (midpoint) nodes
``zeta_k = (k + 1/2) h`` equals ``1/2 - E[sq(h (t - s) / 2)] / 2`` for the ``4 pi / h``-periodic
square wave ``sq``, i.e. it is *exact* as soon as ``|t - s| < 2 pi / h`` (support or Chernoff
radius); the only error left is the truncation of the node sum, bounded rigorously by the
envelope ``|phi_i(zeta)| <= min(1, c_i / (zeta |w_i|))`` of each factor.

Law of ``t`` on ``S`` (exponential tilting)
-------------------------------------------
The law of ``t`` under the uniform distribution on ``S`` is the cube law truncated to
``[a', b']``.  For a slab deep in a tail, or a thin one, ``F(b) - F(a)`` under- or overflows or
cancels, so we *tilt*: under ``P_theta`` each coordinate independently has density
``proportional to exp(theta w_i u)`` on ``[0, 1]``; ``t`` then has density
``f_theta(s) = exp(theta s - K(theta)) f(s)`` with ``K`` the (closed form) cumulant generating
function of ``t``.  Hence on ``[a', b']``

    f(s) = exp(K(theta) - theta s0) * exp(-theta (s - s0)) f_theta(s),

and in ``cdf``/``pdf`` the constant cancels.  ``theta`` is chosen so that the tilted mean
``K'(theta)`` is the point of ``[a', b']`` closest to the cube mean (``theta = 0`` when the band
contains the mean).  This is the I-projection and it is also the ``theta`` that maximises the
acceptance of the plain tilted rejection sampler, ``vol * exp(theta t_ref - K(theta))``.  (The
midpoint of ``[a, b]`` is a poor choice for one-sided or wide bands: the mass of ``t`` on ``S``
sits at the end nearest the mean.)  We work in the orientation where ``theta >= 0`` (flip
``w -> -w`` otherwise), take ``s0 = a'`` so the weights ``exp(-theta (s - a'))`` are ``<= 1``
on the band, and compute

    I(p, q) = int_p^q exp(-theta (u - s0)) f_theta(u) du
            = (1 / pi) int_0^inf Re[ phi_theta(zeta) exp(-theta (p - s0) - i zeta p)
                                     (q - p) E((theta + i zeta)(q - p)) ] d zeta,

``E(z) = (1 - e^{-z}) / z``: the Fourier transform of the weighted indicator is in closed form,
so thin slabs (``q - p`` tiny) lose nothing to cancellation.  The band is cut to a window of
Chernoff radius (``P_theta``-mass outside ``< e^{-50}``), the midpoint rule's aliasing
(Poisson summation: replicas of the kernel shifted by ``2 pi / h``) then only sees that
negligible mass, and the node sum is truncated with the same envelope bound as above.
``log_volume = K(theta) - theta s0 + log I(lo, hi)`` stays finite far in the tail.
"""
import math

import numpy as np

from .cumulants import _CHUNK, _chernoff_radius, _d2K, _dK, _K, _log_env_c, _nodes_z, _psi

_TWO_PI = 2.0 * math.pi
_MAX_NODES = 1 << 22       # most CF nodes we are willing to use


# --------------------------------------------------------------------------------------------
# Tilted CF inversion of the law on the band (canonical orientation, theta >= 0)
# --------------------------------------------------------------------------------------------
class _TiltedCF:
    """``I(p, q) = int_p^q e^{-theta (u - s0)} f_theta(u) du`` and the weighted density."""

    def __init__(self, w: np.ndarray, a: float, b: float, theta: float):
        self.w = w
        self.theta = theta
        self.lam = theta * w
        self.tmin = math.fsum(np.minimum(w, 0.0))
        self.tmax = math.fsum(np.maximum(w, 0.0))
        self.t0 = math.fsum(w) / 2
        self.K = _K(theta, w)
        mu = _dK(theta, w)
        sig = math.sqrt(_d2K(theta, w))
        r_hi = _chernoff_radius(w, theta, +1.0, self.tmin, self.tmax)
        r_lo = _chernoff_radius(w, theta, -1.0, self.tmin, self.tmax)
        self.s0 = a if theta > 0 else 0.0
        self.lo = max(a, mu - r_lo)
        self.hi = min(b, mu + r_hi)
        if not self.lo < self.hi:
            raise RuntimeError("empty inversion window (band outside the tilted bulk)")
        period = min(self.hi - self.lo + max(r_lo, r_hi),
                     max(self.hi - self.tmin, self.tmax - self.lo)) * (1 + 1e-9)
        self.h = _TWO_PI / period
        rho = min(1.0, (self.hi - self.lo) / sig, 1.0 / (theta * sig) if theta > 0 else 1.0)
        tol = 1e-16 * rho

        def ok(logE, k, z):
            if k < 2:
                return False
            return logE + math.log(max(z * sig / (k - 1), 1.0 / k)) <= math.log(tol)

        Z = _nodes_z(_log_env_c(self.lam), w, ok, 1.0 / sig)
        nk = int(math.ceil(Z / self.h))
        if nk > _MAX_NODES:
            raise RuntimeError(f"CF inversion would need {nk} nodes (weights too uneven); "
                               "use method='inclusion_exclusion' for few weights")
        self.zeta = (np.arange(nk) + 0.5) * self.h
        self.psi = _psi(self.zeta, self.lam, w)
        self.total = float(self.integral(np.array([self.lo]), np.array([self.hi]))[0])
        if not self.total > 0:
            raise RuntimeError("tilted CF inversion failed (non-positive mass)")

    def integral(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """``I(p, q)`` for arrays ``lo <= p <= q <= hi`` of shape (n,)."""
        out = np.empty(p.size)
        th = self.theta
        z = (th + 1j * self.zeta)[:, None]
        step = max(1, _CHUNK // self.zeta.size)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for s in range(0, p.size, step):
                pp = p[s:s + step][None, :]
                dd = (q[s:s + step] - p[s:s + step])[None, :]
                zd = z * dd
                tiny = np.abs(zd) < 1e-8
                E = np.where(tiny, 1.0 - zd / 2, -np.expm1(-zd) / np.where(tiny, 1.0, zd))
                expo = (self.psi[:, None] - th * (pp - self.s0)
                        - 1j * self.zeta[:, None] * (pp - self.t0))
                term = np.exp(expo) * E * dd
                out[s:s + step] = term.real.sum(axis=0) * (self.h / math.pi)
        return out

    def wdensity(self, s: np.ndarray) -> np.ndarray:
        """``e^{-theta (s - s0)} f_theta(s)`` for ``s`` (n,) inside the window."""
        out = np.empty(s.size)
        step = max(1, _CHUNK // self.zeta.size)
        for i in range(0, s.size, step):
            ss = s[i:i + step][None, :]
            expo = self.psi[:, None] - 1j * self.zeta[:, None] * (ss - self.t0)
            f = np.exp(expo).real.sum(axis=0) * (self.h / math.pi)
            out[i:i + step] = f * np.exp(-self.theta * (s[i:i + step] - self.s0))
        return out


class _CubeCF:
    """Gil-Pelaez inversion (midpoint nodes) of the cube CDF of ``t``."""

    def __init__(self, w: np.ndarray, tol: float = 1e-12):
        self.tmin = math.fsum(np.minimum(w, 0.0))
        self.tmax = math.fsum(np.maximum(w, 0.0))
        self.t0 = math.fsum(w) / 2
        r_hi = _chernoff_radius(w, 0.0, +1.0, self.tmin, self.tmax)
        r_lo = _chernoff_radius(w, 0.0, -1.0, self.tmin, self.tmax)
        self.lo, self.hi = self.t0 - r_lo, self.t0 + r_hi
        period = min(self.tmax - self.tmin, r_lo + r_hi) * (1 + 1e-9)
        h = _TWO_PI / period
        sig = math.sqrt(float(np.sum(w * w)) / 12.0)

        def ok(logE, k, z):
            return k >= 1 and logE - math.log(k) + math.log(2.0 / math.pi) <= math.log(tol)

        Z = _nodes_z(np.full(w.size, math.log(2.0)), w, ok, 1.0 / sig)
        nk = int(math.ceil(Z / h))
        if nk > _MAX_NODES:
            raise ValueError(f"CF inversion would need {nk} nodes for {w.size} nonzero weights; "
                             "use method='inclusion_exclusion'")
        self.zeta = (np.arange(nk) + 0.5) * h
        self.kh = np.arange(nk) + 0.5
        self.psi = _psi(self.zeta, np.zeros_like(w), w)

    def cdf(self, s: np.ndarray) -> np.ndarray:
        out = np.where(s < self.lo, 0.0, 1.0)
        inside = np.flatnonzero((s >= self.lo) & (s <= self.hi))
        step = max(1, _CHUNK // self.zeta.size)
        for i in range(0, inside.size, step):
            idx = inside[i:i + step]
            expo = self.psi[:, None] - 1j * self.zeta[:, None] * (s[idx][None, :] - self.t0)
            im = (np.exp(expo).imag / self.kh[:, None]).sum(axis=0)
            out[idx] = 0.5 - im / math.pi
        return np.clip(out, 0.0, 1.0)
