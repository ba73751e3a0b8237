r"""``SlabLaw``: the exact law of ``t = w.x``, the volume and the uniform sampler of a slab.

The input checks, the orientation and the law's ``theta`` (the tilted mean is the point of
``[a', b']`` closest to the cube mean: see ``cf_inversion``) live here; each engine lives in
its own module (``inclusion_exclusion``, ``cf_inversion``, ``sampler``) and is built on first
use.
"""
import math

import numpy as np
import torch

from .cf_inversion import _CubeCF, _TiltedCF
from .cumulants import _EPS, _solve_theta
from .inclusion_exclusion import _IE_AUTO_MAX, _InclusionExclusion
from .sampler import draw, sampler_plan


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
        self._sampler = sampler_plan(self.w, self.a, self.b, self.theta)
        self.theta_sample = self._sampler["theta"]
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
        x, self.last_acceptance = draw(sp, self.w, self.a, self.b, n, generator, dtype, device,
                                       self.membership, self._acceptance_guess())
        return x

    def _acceptance_guess(self) -> float:
        """Acceptance used to size the first batch (the exact value; 0.05 if unavailable)."""
        try:
            return self.expected_acceptance()
        except (RuntimeError, ValueError, OverflowError):
            return 0.05
