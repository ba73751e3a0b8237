r"""One tilted uniform coordinate and the cumulants of ``t = w.x`` under the (tilted) cube law.

Under ``P_theta`` each coordinate independently has density proportional to
``exp(theta w_i u)`` on ``[0, 1]``; ``K(theta) = log E exp(theta t)`` is a sum of closed forms,
``K'`` is the tilted mean and ``K''`` the tilted variance.  Also here: the ``theta`` with a given
tilted mean, the Chernoff radius of the inversion window, the log characteristic function of
``t`` and the truncation point of a node sum from the envelope
``|phi_i(zeta)| <= min(1, c_i / (zeta |w_i|))`` of each factor (see ``cf_inversion``).
"""
import math

import numpy as np
from scipy import optimize

_EPS = float(np.finfo(np.float64).eps)
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

