r"""Exact ground truth for a slab of the unit cube.

The set is ``S = {x in [0,1]^d : a <= w.x <= b}`` with ``w`` of any signs (zeros allowed),
``a < b`` and ``a = -inf`` / ``b = +inf`` allowed.  Write ``t = w.x``.  Coordinates with
``w_i = 0`` drop out of ``t`` (they are uniform and independent of everything else on ``S``),
and by the reflection ``w_i U_i = w_i + |w_i| (1 - U_i)`` a negative weight is a positive one
plus a shift, so under the uniform law on the cube ``t = shift + sum_i c_i V_i`` with
``c_i = |w_i| > 0`` and ``V_i`` iid uniform.  Only ``[a', b'] = [a, b] ∩ [t_min, t_max]`` matters.

Cube law of ``t``
-----------------
* Inclusion-exclusion (few nonzero weights, ``m <= 12`` by default):
  ``F(y) = sum_{J ⊆ [m]} (-1)^{|J|} (y - c_J)_+^m / (m! prod c_i)`` with ``y = s - shift`` and
  ``c_J = sum_{i in J} c_i``; the density is the same sum with power ``m - 1`` and ``(m-1)!``.
  The law is symmetric (``F(y) = 1 - F(C - y)``, ``C = sum c_i``), so every value is computed
  from its small side.  A float64 evaluation carries a first-order rounding bound; any point
  whose bound is too large is recomputed *exactly* in rational arithmetic (floats are dyadic
  rationals, so all subset sums and powers are exact integers after one common scaling).
* Characteristic function (CF) inversion (any ``m``): the CF of ``t`` is a product of closed
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

Exact sampler (tilted slice-rejection)
--------------------------------------
Let ``j`` be the coordinate with the largest ``|w_j|`` and ``tau = sum_{i != j} w_i x_i``.

1. Draw ``x_{-j}`` from the tilted product law
   ``q(x_{-j}) = prod_{i != j} lambda_i e^{lambda_i x_i} / (e^{lambda_i} - 1)``,
   ``lambda_i = theta_s w_i`` (inverse CDF of a truncated exponential; ``lambda = 0`` is
   uniform).  Note ``q(x_{-j}) = e^{theta_s tau} / Z``.
2. The set ``{u in [0,1] : a <= tau + w_j u <= b}`` is an interval ``I(tau)`` of length
   ``L(tau)``; draw ``x_j ~ Uniform(I(tau))``.  The joint proposal density on ``S`` is
   ``q(x_{-j}) / L(tau)``.
3. Accept with probability ``L(tau) e^{-theta_s tau} / B`` where
   ``B = sup_tau L(tau) e^{-theta_s tau}`` over ``tau in [tau_min, tau_max]``.

*Exactness.*  The accepted density is proportional to
``q(x_{-j}) / L * L e^{-theta_s tau} / B = 1 / (Z B)`` on ``S`` -- constant -- so accepted
points are iid uniform on ``S``, provided ``B`` really bounds ``L e^{-theta_s tau}``.
``L(tau) |w_j| = max(0, min(b - tau, w_j^+) - max(a - tau, -w_j^-))`` is a trapezoid in ``tau``
(breakpoints ``a - w_j^+, b - w_j^+, a + w_j^-, b + w_j^-``), so on each linear piece
``(alpha + beta tau) e^{-theta tau}`` is maximised at a piece end or at its stationary point
``tau* = 1/theta - alpha/beta``; ``B`` is the maximum over these finitely many candidates
(clipped to ``[tau_min, tau_max]``), cross-checked on a fine grid, times ``e^{1e-12}``.
The acceptance rate is ``vol / (M_{-j}(theta_s) B(theta_s))``; ``log M_{-j} + log B`` is convex
in ``theta_s`` (a cumulant generating function plus a supremum of affine functions), and
``theta_s`` minimises it.  It always dominates the plain tilted rejection sampler
(``B <= M_j(theta) e^{-theta t_ref}``), and it is far better for thin slabs: the acceptance
no longer scales with the width of the band.  Points whose float64 ``t`` falls outside
``[a, b]`` by rounding are discarded (measure ``O(2^-52)``); the same applies after a cast to a
lower precision ``dtype``.
"""
import math
from fractions import Fraction

import numpy as np
import torch
from scipy import optimize

__all__ = ["SlabLaw"]

_EPS = float(np.finfo(np.float64).eps)
_TWO_PI = 2.0 * math.pi
_IE_AUTO_MAX = 12          # "auto" uses inclusion-exclusion up to this many nonzero weights
_IE_MAX = 16               # inclusion-exclusion refused above this
_MAX_NODES = 1 << 22       # most CF nodes we are willing to use
_CHUNK = 1 << 21           # elements per vectorised block
_CHERNOFF_RATE = 50.0      # window: tilted mass outside < e^-50


# --------------------------------------------------------------------------------------------
# One coordinate: U with density proportional to exp(lam u) on [0, 1]
# --------------------------------------------------------------------------------------------
def _log_g(lam: np.ndarray) -> np.ndarray:
    """``log int_0^1 e^{lam u} du`` (the log-MGF of one uniform), elementwise, stable."""
    lam = np.asarray(lam, dtype=np.float64)
    x = np.abs(lam)
    out = np.empty_like(x)
    small = x < 1e-4
    ls = lam[small]
    out[small] = ls / 2 + ls * ls / 24 - ls ** 4 / 2880
    big = ~small
    xb = x[big]
    val = xb + np.log(-np.expm1(-xb) / xb)          # log g(|lam|)
    out[big] = np.where(lam[big] > 0, val, val - xb)  # g(lam) = e^lam g(-lam)
    return out


def _mean_u(lam: np.ndarray) -> np.ndarray:
    """``E[U]`` under the tilted density (``1/2`` at ``lam = 0``)."""
    lam = np.asarray(lam, dtype=np.float64)
    x = np.abs(lam)
    out = np.empty_like(x)
    small = x < 0.1
    ls = lam[small]
    l2 = ls * ls
    out[small] = 0.5 + ls * (1 / 12 + l2 * (-1 / 720 + l2 * (1 / 30240 + l2 * (-1 / 1209600
                                                                            + l2 / 47900160))))
    big = ~small
    xb = x[big]
    mp = 1.0 / (-np.expm1(-xb)) - 1.0 / xb
    out[big] = np.where(lam[big] > 0, mp, 1.0 - mp)
    return out


def _var_u(lam: np.ndarray) -> np.ndarray:
    """``Var[U]`` under the tilted density (``1/12`` at ``lam = 0``)."""
    lam = np.asarray(lam, dtype=np.float64)
    x = np.abs(lam)
    out = np.empty_like(x)
    small = x < 0.1
    l2 = x[small] ** 2
    out[small] = 1 / 12 + l2 * (-1 / 240 + l2 * (1 / 6048 + l2 * (-1 / 172800 + l2 / 5322240)))
    xb = x[~small]
    em = np.expm1(-xb)
    out[~small] = 1.0 / (xb * xb) - np.exp(-xb) / (em * em)
    return out


def _h_complex(z: np.ndarray) -> np.ndarray:
    """``log(sinh(z/2) / (z/2))`` for complex ``z`` (even; a branch of the log is enough)."""
    z = np.asarray(z, dtype=np.complex128)
    z = np.where(z.real < 0, -z, z)
    out = np.empty_like(z)
    small = np.abs(z) < 0.2
    zs = z[small]
    z2 = zs * zs
    out[small] = z2 * (1 / 24 + z2 * (-1 / 2880 + z2 * (1 / 181440 + z2 * (-1 / 9676800
                                                                        + z2 / 479001600))))
    zb = z[~small]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[~small] = zb / 2 + np.log(-np.expm1(-zb)) - np.log(zb)
    return out


def _log_env_c(lam: np.ndarray) -> np.ndarray:
    """``log c`` with ``|phi(zeta)| <= c / (zeta |w|)``, ``c = |lam| coth(|lam|/2)`` (2 at 0)."""
    x = np.abs(np.asarray(lam, dtype=np.float64))
    out = np.full_like(x, math.log(2.0))
    big = x > 1e-8
    xb = x[big]
    out[big] = np.log(xb) + np.log1p(np.exp(-xb)) - np.log(-np.expm1(-xb))
    return out


# --------------------------------------------------------------------------------------------
# Cumulants of t = w.x under the (tilted) cube law
# --------------------------------------------------------------------------------------------
def _K(theta: float, w: np.ndarray) -> float:
    """Cumulant generating function ``log E exp(theta t)`` of ``t = w.U``."""
    return math.fsum(_log_g(theta * w)) if w.size else 0.0


def _dK(theta: float, w: np.ndarray) -> float:
    """Tilted mean of ``t``."""
    return math.fsum(w * _mean_u(theta * w)) if w.size else 0.0


def _d2K(theta: float, w: np.ndarray) -> float:
    """Tilted variance of ``t``."""
    return math.fsum(w * w * _var_u(theta * w)) if w.size else 0.0


def _solve_theta(w: np.ndarray, target: float) -> float:
    """The ``theta >= 0`` with ``K'(theta) = target`` (``target`` above the cube mean)."""
    if target <= _dK(0.0, w):
        return 0.0
    hi = 1.0 / math.sqrt(float(np.sum(w * w)) / 12.0)
    for _ in range(2000):
        if _dK(hi, w) >= target:
            break
        hi *= 2.0
    return optimize.brentq(lambda th: _dK(th, w) - target, 0.0, hi, xtol=1e-300,
                           rtol=4 * _EPS, maxiter=1000)


def _chernoff_radius(w: np.ndarray, theta: float, direction: float, tmin: float,
                     tmax: float, rate: float = _CHERNOFF_RATE) -> float:
    """Distance ``r`` from the tilted mean with ``P_theta(±(t - mu) >= r) <= e^-rate``."""
    K0 = _K(theta, w)
    mu = _dK(theta, w)
    edge = (tmax - mu) if direction > 0 else (mu - tmin)

    def excess(eta: float) -> float:
        return eta * _dK(theta + eta, w) - (_K(theta + eta, w) - K0) - rate

    scale = 1.0 / math.sqrt(float(np.sum(w * w)) / 12.0)
    eta = direction * scale
    for _ in range(200):
        if excess(eta) >= 0:
            break
        eta *= 2.0
    else:
        return edge
    if not math.isfinite(excess(eta)):
        return edge
    root = optimize.brentq(excess, 0.0, eta, xtol=1e-300, rtol=1e-10, maxiter=500)
    return min(abs(_dK(theta + root, w) - mu), edge)


def _psi(zeta: np.ndarray, lam: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Log-CF of ``t - sum(w)/2`` under the tilt ``lam = theta w``, at real ``zeta`` (K,)."""
    out = np.empty(zeta.shape, dtype=np.complex128)
    h0 = math.fsum(np.real(_h_complex(lam.astype(np.complex128))))
    step = max(1, _CHUNK // max(1, w.size))
    for s in range(0, zeta.size, step):
        z = lam[None, :] + 1j * zeta[s:s + step, None] * w[None, :]
        out[s:s + step] = _h_complex(z).sum(axis=1) - h0
    return out


def _nodes_z(log_c: np.ndarray, w: np.ndarray, ok, z0: float) -> float:
    """Smallest (to ~1%) truncation point ``Z`` with ``ok(logE(Z), k(Z), Z)`` true.

    ``logE`` is the log of the envelope ``prod_i min(1, c_i / (Z |w_i|))`` and ``k`` the number
    of active factors; for ``zeta >= Z``, ``|phi(zeta)| <= E(Z) (Z / zeta)^k``.
    """
    la = np.abs(w)
    lw = np.log(la)

    def test(z):
        t = log_c - math.log(z) - lw
        act = t < 0
        return ok(float(np.sum(t[act])), int(np.count_nonzero(act)), z)

    z = z0
    for _ in range(2000):
        if test(z):
            break
        z *= 2.0
    lo, hi = z / 2.0, z
    if test(lo):
        return lo
    for _ in range(60):
        if hi / lo < 1.01:
            break
        mid = math.sqrt(lo * hi)
        if test(mid):
            hi = mid
        else:
            lo = mid
    return hi


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


# --------------------------------------------------------------------------------------------
# Helpers for the sampler
# --------------------------------------------------------------------------------------------
def _log_ell_minus(tau: np.ndarray, theta: float, a: float, b: float, wj: float) -> np.ndarray:
    """``log L(tau) - theta tau`` (``-inf`` where ``L = 0``); ``L`` as in the sampler."""
    lo_j, hi_j = min(0.0, wj), max(0.0, wj)
    with np.errstate(divide="ignore", invalid="ignore"):
        num = np.minimum(b - tau, hi_j) - np.maximum(a - tau, lo_j)
        ell = np.minimum(num / abs(wj), 1.0)
        return np.where(ell > 0, np.log(np.where(ell > 0, ell, 1.0)) - theta * tau, -np.inf)


def _log_bound(theta: float, a: float, b: float, wj: float, t_lo: float, t_hi: float) -> float:
    """``log sup_{tau in [t_lo, t_hi]} L(tau) e^{-theta tau}`` (analytic, grid cross-check)."""
    lo_j, hi_j = min(0.0, wj), max(0.0, wj)
    cands = [t_lo, t_hi, b - hi_j, a - lo_j, a - hi_j, b - lo_j]
    if theta != 0.0:
        cands += [a - hi_j + 1.0 / theta, b - lo_j + 1.0 / theta]
    c = np.array([x for x in cands if math.isfinite(x)], dtype=np.float64)
    c = np.clip(c, t_lo, t_hi)
    grid = np.linspace(t_lo, t_hi, 4097)
    vals = _log_ell_minus(np.concatenate([c, grid]), theta, a, b, wj)
    return float(np.max(vals))


def _tilted_uniform(v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Exact draws from the density ``lam e^{lam u} / (e^lam - 1)`` on [0,1], one column per
    entry of ``lam`` (d,), from uniforms ``v`` (n, d) (overwritten).

    ``y = -log1p(-v (1 - e^{-|lam|})) / |lam|`` is the inverse CDF of the density proportional to
    ``e^{-|lam| y}``; ``x = y`` for ``lam <= 0`` and ``x = 1 - y`` for ``lam > 0``.  For
    ``|lam| < 1e-150`` the column is uniform (to within ``1e-150``).
    """
    mu = lam.abs()
    tiny = mu < 1e-150
    c = torch.where(tiny, torch.full_like(mu, 1e-150), -torch.expm1(-mu))
    r = torch.where(tiny, torch.full_like(mu, 1e150), 1.0 / torch.where(tiny, torch.ones_like(mu), mu))
    y = v.mul_(-c).log1p_().mul_(-r)
    pos = lam > 0
    sgn = torch.where(pos, -torch.ones_like(mu), torch.ones_like(mu))
    off = pos.to(mu.dtype)
    return y.mul_(sgn).add_(off).clamp_(0.0, 1.0)


def _as_float_array(s) -> np.ndarray:
    if isinstance(s, torch.Tensor):
        s = s.detach().to("cpu", torch.float64).numpy()
    return np.asarray(s, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Public class
# --------------------------------------------------------------------------------------------
class SlabLaw:
    """Exact law, volume and uniform sampler of ``S = {x in [0,1]^d : a <= w.x <= b}``.

    Args:
        w: weights ``(d,)`` (torch tensor, numpy array or list); any signs, zeros allowed.
        a, b: band ends, ``a < b``; ``a = -inf`` and ``b = +inf`` allowed.

    Attributes:
        w: ``(d,)`` float64 numpy array; ``a``, ``b``: floats; ``d``: dimension.
        theta: tilting parameter of the law (tilted mean of ``t`` = the point of the band
            closest to the cube mean ``sum(w)/2``; 0 if the band contains it).
        theta_sample: tilting parameter of the sampler (maximises its acceptance).
        last_acceptance: accepted / proposed in the last ``sample`` call (``None`` before).

    Raises:
        ValueError: if the set is empty or has zero volume, or on invalid input.
    """

    def __init__(self, w, a: float, b: float):
        if isinstance(w, torch.Tensor):
            w = w.detach().to("cpu", torch.float64).numpy()
        w = np.array(w, dtype=np.float64).reshape(-1)
        if w.size < 1:
            raise ValueError("w must have at least one entry")
        if not np.all(np.isfinite(w)):
            raise ValueError("w must be finite")
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            raise ValueError("a and b must not be NaN")
        if a == b:
            raise ValueError(f"the slab has zero volume: a == b == {a}")
        if a > b:
            raise ValueError(f"the slab is empty: a = {a} > b = {b}")
        self.w = w
        self.a, self.b = a, b
        self.d = int(w.size)
        nz = w != 0
        self._wn = w[nz]
        self.m = int(self._wn.size)
        self.t_min = math.fsum(np.minimum(w, 0.0))
        self.t_max = math.fsum(np.maximum(w, 0.0))
        if self.m == 0:
            if not (a <= 0.0 <= b):
                raise ValueError(f"the slab is empty: w = 0 and 0 is not in [{a}, {b}]")
        else:
            if a > self.t_max:
                raise ValueError(f"the slab is empty: a = {a} > max of w.x over the cube "
                                 f"= {self.t_max}")
            if b < self.t_min:
                raise ValueError(f"the slab is empty: b = {b} < min of w.x over the cube "
                                 f"= {self.t_min}")
        self.a_eff = max(a, self.t_min)
        self.b_eff = min(b, self.t_max)
        if self.m and not self.a_eff < self.b_eff:
            raise ValueError(f"the slab has zero volume: [a, b] ∩ [min, max of w.x] = "
                             f"[{self.a_eff}, {self.b_eff}]")
        self._flip = False
        self.theta = 0.0
        if self.m:
            mu0 = math.fsum(self._wn) / 2
            if mu0 < self.a_eff:
                self.theta = _solve_theta(self._wn, self.a_eff)
            elif mu0 > self.b_eff:
                self._flip = True
                self.theta = -_solve_theta(-self._wn, -self.b_eff)
        self.last_acceptance: float | None = None
        self.theta_sample: float | None = None
        self._ie = None
        self._ie_law = None
        self._cf_law = None
        self._cube_cf = None
        self._sampler = None

    def __repr__(self) -> str:
        return f"SlabLaw(d={self.d}, a={self.a}, b={self.b}, theta={self.theta:.6g})"

    # ---------------------------------------------------------------- internal engines
    def _method(self, method: str) -> str:
        if method not in ("auto", "inclusion_exclusion", "cf"):
            raise ValueError(f"unknown method {method!r}")
        if method == "auto":
            return "inclusion_exclusion" if self.m <= _IE_AUTO_MAX else "cf"
        return method

    def _get_ie(self) -> _InclusionExclusion:
        if self._ie is None:
            self._ie = _InclusionExclusion(self._wn)
        return self._ie

    def _get_ie_law(self):
        if self._ie_law is None:
            ie = self._get_ie()
            Fa, Fb = ie.F_exact(self.a_eff), ie.F_exact(self.b_eff)
            vol = Fb - Fa
            if vol <= 0:
                raise ValueError("the slab has zero volume")
            self._ie_law = (Fa, vol, float(Fa), float(1 - Fa), float(vol))
        return self._ie_law

    def _get_cf_law(self) -> _TiltedCF:
        if self._cf_law is None:
            if self._flip:
                wc, ac, bc = -self._wn, -self.b_eff, -self.a_eff
            else:
                wc, ac, bc = self._wn, self.a_eff, self.b_eff
            self._cf_law = _TiltedCF(wc, ac, bc, abs(self.theta))
        return self._cf_law

    # ---------------------------------------------------------------- cube law
    def cube_cdf(self, s, method: str = "auto") -> np.ndarray:
        """CDF of ``t = w.x`` for ``x`` uniform on the cube, at ``s`` (any shape).

        ``method``: ``"inclusion_exclusion"`` (exact to ~1e-13, at most 16 nonzero weights),
        ``"cf"`` (characteristic-function inversion, ~1e-12) or ``"auto"``.
        """
        s = _as_float_array(s)
        flat = s.reshape(-1)
        if self.m == 0:
            return np.where(s >= 0, 1.0, 0.0)
        method = self._method(method)
        if method == "inclusion_exclusion":
            out = self._get_ie().cdf(flat)
        else:
            if self._cube_cf is None:
                self._cube_cf = _CubeCF(self._wn)
            out = self._cube_cf.cdf(flat)
        out = np.where(flat <= self.t_min, 0.0, np.where(flat >= self.t_max, 1.0, out))
        return out.reshape(s.shape)

    # ---------------------------------------------------------------- law on S
    def cdf(self, s, method: str = "auto") -> np.ndarray:
        """CDF of ``t = w.x`` for ``x`` uniform on ``S`` at ``s`` (any shape): 0 below ``a``,
        1 above ``b``."""
        s = _as_float_array(s)
        flat = s.reshape(-1)
        if self.m == 0:
            return np.where(s >= 0, 1.0, 0.0)
        method = self._method(method)
        inside = (flat > self.a_eff) & (flat < self.b_eff)
        out = np.where(flat >= self.b_eff, 1.0, 0.0)
        idx = np.flatnonzero(inside)
        if idx.size:
            si = flat[idx]
            if method == "inclusion_exclusion":
                out[idx] = self._cdf_ie(si)
            else:
                out[idx] = self._cdf_cf(si)
        return np.clip(out, 0.0, 1.0).reshape(s.shape)

    def _cdf_ie(self, s: np.ndarray) -> np.ndarray:
        ie = self._get_ie()
        Fa, vol, Fa_f, Fba_f, vol_f = self._get_ie_law()
        upper, val, err = ie.side(s)
        num = np.where(upper, Fba_f - val, val - Fa_f)
        err = err + 2 * _EPS * (np.abs(val) + np.where(upper, Fba_f, Fa_f))
        out = num / vol_f if vol_f > 1e-280 else np.zeros_like(num)
        bad = ~(err <= 1e-12 * vol_f) if vol_f > 1e-280 else np.ones(s.size, dtype=bool)
        for i in np.flatnonzero(bad):
            out[i] = float((ie.F_exact(s[i]) - Fa) / vol)
        return out

    def _cdf_cf(self, s: np.ndarray) -> np.ndarray:
        law = self._get_cf_law()
        sc = -s if self._flip else s
        scl = np.clip(sc, law.lo, law.hi)
        if self._flip:     # P(t <= s) = P(t_c >= -s)
            val = law.integral(scl, np.full_like(scl, law.hi))
        else:
            val = law.integral(np.full_like(scl, law.lo), scl)
        return np.maximum(val, 0.0) / law.total

    def pdf(self, s, method: str = "auto") -> np.ndarray:
        """Density of ``t = w.x`` for ``x`` uniform on ``S`` at ``s`` (any shape); 0 outside
        ``[a, b]``."""
        s = _as_float_array(s)
        flat = s.reshape(-1)
        if self.m == 0:
            return np.where(s == 0, np.inf, 0.0)
        method = self._method(method)
        out = np.zeros(flat.size)
        idx = np.flatnonzero((flat >= self.a_eff) & (flat <= self.b_eff))
        if idx.size:
            si = flat[idx]
            if method == "inclusion_exclusion":
                out[idx] = self._pdf_ie(si)
            else:
                law = self._get_cf_law()
                sc = -si if self._flip else si
                ok = (sc >= law.lo) & (sc <= law.hi)
                vals = np.zeros(si.size)
                if np.any(ok):
                    vals[ok] = law.wdensity(sc[ok]) / law.total
                out[idx] = np.maximum(vals, 0.0)
        return out.reshape(s.shape)

    def _pdf_ie(self, s: np.ndarray) -> np.ndarray:
        ie = self._get_ie()
        _, vol, _, _, vol_f = self._get_ie_law()
        y = np.clip(s - ie.shift_f, 0.0, ie.C_f)
        yy = np.minimum(y, ie.C_f - y)
        val, err = ie._poly_float(yy, ie.m - 1)
        out = val / vol_f if vol_f > 1e-280 else np.zeros_like(val)
        bad = ~(err <= 1e-11 * np.abs(val)) | (vol_f <= 1e-280)
        for i in np.flatnonzero(bad):
            out[i] = float(ie.f_exact(s[i]) / vol)
        return np.maximum(out, 0.0)

    def log_volume(self, method: str = "auto") -> float:
        """Log of the volume fraction of ``S`` in the cube (finite far in the tails)."""
        if self.m == 0:
            return 0.0
        method = self._method(method)
        if method == "inclusion_exclusion":
            vol = self._get_ie_law()[1]
            return math.log(vol.numerator) - math.log(vol.denominator)
        law = self._get_cf_law()
        return law.K - law.theta * law.s0 + math.log(law.total)

    def volume(self, method: str = "auto") -> float:
        """Volume fraction of ``S`` in the cube."""
        return math.exp(self.log_volume(method))

    # ---------------------------------------------------------------- membership
    def membership(self, x) -> torch.Tensor:
        """Exact membership of the rows of ``x`` (``(..., d)``), computed in float64.

        Returns a bool tensor of shape ``(...)`` on ``x``'s device.
        """
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        x64 = x.detach().to(torch.float64)
        if x64.shape[-1] != self.d:
            raise ValueError(f"expected last dimension {self.d}, got {tuple(x64.shape)}")
        w = torch.as_tensor(self.w, dtype=torch.float64, device=x64.device)
        box = ((x64 >= 0) & (x64 <= 1)).all(dim=-1)
        t = torch.matmul(x64, w)
        return box & (t >= self.a) & (t <= self.b)

    # ---------------------------------------------------------------- sampler
    def _setup_sampler(self):
        if self._sampler is not None:
            return self._sampler
        if self.m == 0:
            self._sampler = {"trivial": True}
            self.theta_sample = 0.0
            return self._sampler
        j = int(np.argmax(np.abs(self.w)))
        wj = float(self.w[j])
        rest = self.w.copy()
        rest[j] = 0.0
        rest_nz = rest[rest != 0]
        t_lo = math.fsum(np.minimum(rest, 0.0))
        t_hi = math.fsum(np.maximum(rest, 0.0))
        a, b = self.a, self.b

        def J(th: float) -> float:
            return _K(th, rest_nz) + _log_bound(th, a, b, wj, t_lo, t_hi)

        th0 = self.theta
        j0 = J(th0)
        scale = 1.0 / math.sqrt(float(np.sum(self.w ** 2)) / 12.0)
        bounds = []
        for direction in (-1.0, 1.0):
            step = 0.25 * max(abs(th0), scale)
            for _ in range(80):
                val = J(th0 + direction * step)
                if not math.isfinite(val) or val >= j0:
                    break
                step *= 2.0
            bounds.append(th0 + direction * step)
        res = optimize.minimize_scalar(J, bounds=(bounds[0], bounds[1]), method="bounded",
                                       options={"xatol": 1e-10 * max(abs(th0), scale)})
        th = float(res.x) if (res.success and J(float(res.x)) < j0 - 1e-12) else th0
        self.theta_sample = th
        log_b = _log_bound(th, a, b, wj, t_lo, t_hi) + 1e-12
        self._sampler = {"trivial": False, "j": j, "wj": wj, "theta": th, "log_b": log_b,
                         "log_m_rest": _K(th, rest_nz), "lam": th * rest}
        return self._sampler

    def expected_acceptance(self) -> float:
        """Exact acceptance probability of ``sample``: ``vol / (M_{-j}(theta_s) B)``."""
        sp = self._setup_sampler()
        if sp["trivial"]:
            return 1.0
        return math.exp(self.log_volume() - sp["log_m_rest"] - sp["log_b"])

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64, device="cpu") -> torch.Tensor:
        """Exact iid uniform samples on ``S``: tensor ``(n, d)`` of ``dtype`` on ``device``.

        All randomness comes from ``generator`` (on ``device``).  Sets ``last_acceptance``.
        """
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        device = torch.device(device)
        sp = self._setup_sampler()
        d = self.d
        if n == 0:
            self.last_acceptance = None
            return torch.empty(0, d, dtype=dtype, device=device)
        if sp["trivial"]:
            self.last_acceptance = 1.0
            return torch.rand(n, d, generator=generator, dtype=torch.float64,
                              device=device).to(dtype)
        f64 = torch.float64
        w = torch.as_tensor(self.w, dtype=f64, device=device)
        lam = torch.as_tensor(sp["lam"], dtype=f64, device=device)
        j, wj, th, log_b = sp["j"], sp["wj"], sp["theta"], sp["log_b"]
        w_rest = w.clone()
        w_rest[j] = 0.0
        a, b = self.a, self.b
        max_rows = max(64, (1 << 22) // (d + 1))
        out, got, proposed, accepted = [], 0, 0, 0
        acc_est = min(1.0, max(self._acceptance_guess(), 1e-6))
        while got < n:
            need = n - got
            nb = int(min(max_rows, max(256, math.ceil(1.2 * need / acc_est) + 16)))
            v = torch.rand(nb, d + 1, generator=generator, dtype=f64, device=device)
            u_j = v[:, j].clone()
            u_acc = v[:, d].clone()
            x = _tilted_uniform(v[:, :d], lam)
            x[:, j] = 0.0
            tau = torch.matmul(x, w_rest)
            if wj > 0:
                u_lo, u_hi = (a - tau) / wj, (b - tau) / wj
            else:
                u_lo, u_hi = (b - tau) / wj, (a - tau) / wj
            u_lo = u_lo.clamp(0.0, 1.0)
            u_hi = u_hi.clamp(0.0, 1.0)
            length = u_hi - u_lo
            x[:, j] = (u_lo + u_j * length).clamp(0.0, 1.0)
            with torch.no_grad():
                safe = torch.where(length > 0, length, torch.ones_like(length))
                logp = torch.log(safe) - th * tau - log_b
            keep = (length > 0) & (torch.log(u_acc) < logp)
            xk = x[keep].to(dtype)
            xk = xk[self.membership(xk)]
            proposed += nb
            accepted += int(xk.shape[0])
            if xk.shape[0]:
                out.append(xk)
                got += int(xk.shape[0])
            acc_est = max(accepted, 1) / proposed
            if proposed >= 10_000_000 and accepted < 10:
                raise RuntimeError(f"sampler acceptance is too small ({accepted}/{proposed})")
        self.last_acceptance = accepted / proposed
        return torch.cat(out, dim=0)[:n]

    def _acceptance_guess(self) -> float:
        """Acceptance used to size the first batch (the exact value; 0.05 if unavailable)."""
        try:
            return self.expected_acceptance()
        except (RuntimeError, ValueError, OverflowError):
            return 0.05
