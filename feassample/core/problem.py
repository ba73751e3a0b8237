"""The ``FeasibleSet`` contract: what the samplers need to know about a problem.

A feasible set is ``X = { decode(c) : c in box, lo <= h(decode(c)) <= hi }``. The samplers work
on codes ``c``; ``decode`` maps codes to inputs (a generator network, or the identity), and one
call of ``measure`` returns both the constraint values ``h(x)`` and the embedding ``e(x)`` used
by the diversity objective, so a model runs once per step.
"""
from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .bands import Bands


@dataclass
class Measurement:
    """What one forward pass yields for a batch.

    Attributes:
        values: constraint values ``(B, m)``.
        embedding: features for the diversity objective ``(B, p)``, or ``None`` when the
            problem has none (the objective then falls back to codes).
    """

    values: Tensor
    embedding: Optional[Tensor] = None


class FeasibleSet:
    """Base class of every problem. Subclasses set the attributes and override ``measure``.

    Attributes:
        bands: the constraint bands (``Bands``).
        code_shape: shape of one code, e.g. ``(d,)``.
        input_shape: shape of one decoded input.
        box: ``(lo, hi)`` bounds on codes, enforced by projection, or ``None``.
        dtype: default floating dtype of codes.
        embedding_space: what the diversity term uses when ``measure`` returns no embedding:
            the decoded ``"inputs"`` or the ``"codes"``.
    """

    bands: Bands
    code_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    box: Optional[tuple[float, float]] = None
    dtype: torch.dtype = torch.float32
    embedding_space: str = "inputs"  # what stands in for a missing embedding: "inputs" or "codes"

    # -- the contract -------------------------------------------------------------------------
    def decode(self, codes: Tensor) -> Tensor:
        """Inputs ``(B, *input_shape)`` for codes ``(B, *code_shape)``; identity by default."""
        return codes

    def measure(self, x: Tensor) -> Measurement:
        """Constraint values ``(B, m)`` and embedding ``(B, p)`` of inputs, in one pass."""
        raise NotImplementedError

    def init_codes(self, n: int, generator: torch.Generator, dtype: Optional[torch.dtype] = None,
                   device: torch.device | str = "cpu") -> Tensor:
        """Random codes ``(n, *code_shape)`` from the prior (``log_prior``): uniform in the box,
        else standard normal."""
        dtype = dtype or self.dtype
        shape = (n, *self.code_shape)
        if self.box is not None:
            lo, hi = self.box
            u = torch.rand(shape, generator=generator, dtype=dtype, device="cpu")
            return (lo + (hi - lo) * u).to(device)
        return torch.randn(shape, generator=generator, dtype=dtype, device="cpu").to(device)

    def prior_codes(self, n: int, generator: torch.Generator, dtype: Optional[torch.dtype] = None,
                    device: torch.device | str = "cpu") -> Tensor:
        """Draws ``(n, *code_shape)`` of the prior that ``log_prior`` states (``method="smc"``
        samples it restricted to the set). By default ``init_codes``; a problem whose
        ``init_codes`` is only a starting law for the seeded methods (``from_functions(init=...)``)
        draws the default prior here instead."""
        return self.init_codes(n, generator, dtype, device)

    def log_prior(self, codes: Tensor) -> Tensor:
        """Log-density ``(B,)`` of the prior on codes ``(B, *code_shape)``, the law ``init_codes``
        stands for: a representative sample of the set is a sample of this prior restricted to it.

        * With a ``box``: uniform on the box, ``-D log(hi - lo)`` inside (0 on the unit cube) and
          ``-inf`` outside (``D`` = code size).
        * Otherwise: the standard normal ``N(0, I)``, ``-|c|^2 / 2 - D log(2 pi) / 2``, and
          ``-inf`` outside the code domain (codes that ``project`` moves, e.g. beyond a code
          ball); the density is not renormalized by the domain's probability.

        A problem whose ``init_codes`` draws from another law overrides this to match.
        ``method="smc"`` samples this prior restricted to the set and estimates the set's
        probability under it (``stats["log_prob"]``)."""
        flat = codes.flatten(1)
        D = flat.shape[1]
        if self.box is not None:
            lo, hi = self.box
            inside = ((flat >= lo) & (flat <= hi)).all(dim=1)
            return torch.where(inside, flat.new_full((flat.shape[0],), -D * math.log(hi - lo) + 0.0),
                               flat.new_full((flat.shape[0],), -math.inf))
        inside = (self.project(codes).flatten(1) == flat).all(dim=1) & torch.isfinite(flat).all(dim=1)
        density = -0.5 * flat.pow(2).sum(dim=1) - 0.5 * D * math.log(2 * math.pi)
        return torch.where(inside, density, torch.full_like(density, -math.inf))

    def project(self, codes: Tensor) -> Tensor:
        """Codes clipped into the box (the Euclidean projection), unchanged without a box."""
        if self.box is None:
            return codes
        return codes.clamp(self.box[0], self.box[1])

    def check(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Independent certificate ``(values (B, m), feasible (B,))`` of codes.

        A fresh forward pass without gradients, in float64 where the problem allows it, plus
        the box test. Problems with an exact membership test override this.
        """
        with torch.no_grad():
            values = self.measure(self.decode(codes)).values
            feasible = self.bands.feasible(values)
            if self.box is not None:
                flat = codes.flatten(1)
                feasible &= ((flat >= self.box[0]) & (flat <= self.box[1])).all(dim=1)
        return values, feasible

    # -- conveniences -------------------------------------------------------------------------
    def describe(self) -> str:
        """A one-line human description used in logs and reports."""
        return f"{type(self).__name__}({self.bands.describe()})"

    def config(self) -> dict:
        """JSON-able description stored next to saved samples."""
        return {"problem": type(self).__name__, "bands": {"lo": list(self.bands.lo),
                "hi": list(self.bands.hi), "tol": self.bands.tol, "names": list(self.bands.names)},
                "code_shape": list(self.code_shape), "input_shape": list(self.input_shape),
                "box": list(self.box) if self.box else None}


def _shape(name: str, shape) -> tuple[int, ...]:
    """A shape from a tuple/list of positive ints, or one int ``d`` meaning ``(d,)``."""
    bad = ValueError(f"{name} must be a shape: an int d or a tuple of ints like (d,), got {shape!r}")
    if isinstance(shape, Tensor) and shape.dim() == 0:
        shape = shape.item()
    items = (shape,) if hasattr(shape, "__index__") else shape
    try:
        items = tuple(items)
    except TypeError:
        raise bad from None
    if any(isinstance(s, bool) or not hasattr(s, "__index__") for s in items):
        raise bad
    dims = tuple(operator.index(s) for s in items)
    if not dims or any(s < 1 for s in dims):
        raise ValueError(f"{name} must be a non-empty shape of positive sizes, got {shape!r}")
    return dims


def _dtype(name: str, dtype) -> torch.dtype:
    """A floating ``torch.dtype`` of codes (``torch.float32`` or ``torch.float64``)."""
    if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
        hint = f" (did you mean torch.{dtype}?)" if dtype in ("float32", "float64") else ""
        raise ValueError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}{hint}")
    return dtype


def _interval(name: str, pair) -> tuple[float, float]:
    """``(lo, hi)``: two finite real numbers with ``lo < hi``."""
    bad = ValueError(f"{name} must be (lo, hi): two finite numbers with lo < hi, got {pair!r}")
    if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
        raise bad
    items = [v.item() if isinstance(v, Tensor) and v.numel() == 1 else v for v in pair]
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in items):
        raise bad
    lo, hi = (float(v) for v in items)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise bad
    return lo, hi


class FunctionSet(FeasibleSet):
    """A feasible set built from plain Python functions (see ``from_functions``)."""

    def __init__(self, constraints: Callable[[Tensor], Tensor], lo, hi, code_shape: Sequence[int],
                 *, decode: Optional[Callable[[Tensor], Tensor]] = None,
                 embed: Optional[Callable[[Tensor], Tensor]] = None,
                 box: Optional[tuple[float, float]] = None, tol: float = 0.0,
                 names: Sequence[str] = (), input_shape: Optional[Sequence[int]] = None,
                 dtype: torch.dtype = torch.float32, init: Optional[Callable] = None) -> None:
        if not callable(constraints):
            raise TypeError(f"constraints must be callable x -> (B, m) values, got {constraints!r}")
        self.bands = Bands.of(lo, hi, tol=tol, names=names)
        self.code_shape = _shape("code_shape", code_shape)
        self.input_shape = _shape("input_shape", input_shape) if input_shape is not None else self.code_shape
        self.box = None if box is None else _interval("box", box)
        self.dtype = _dtype("dtype", dtype)
        for name, fn in (("decode", decode), ("embed", embed), ("init", init)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {fn!r}")
        self._constraints, self._decode, self._embed, self._init = constraints, decode, embed, init

    def decode(self, codes: Tensor) -> Tensor:
        return codes if self._decode is None else self._decode(codes)

    def measure(self, x: Tensor) -> Measurement:
        values = self._constraints(x)
        if not isinstance(values, Tensor):
            raise TypeError(f"constraints must return a tensor (B, m) = ({x.shape[0]}, {self.bands.m}), "
                            f"got a {type(values).__name__}"
                            f"{' (torch.stack the list)' if isinstance(values, (list, tuple)) else ''}")
        returned = tuple(values.shape)
        if values.dim() == 1:
            values = values.unsqueeze(1)
        if values.shape != (x.shape[0], self.bands.m):
            raise ValueError(f"constraints returned shape {returned}, expected "
                             f"({x.shape[0]}, {self.bands.m}) for {self.bands.m} band(s)")
        embedding = None if self._embed is None else self._embed(x).reshape(x.shape[0], -1)
        return Measurement(values, embedding)

    def init_codes(self, n, generator, dtype=None, device="cpu"):
        if self._init is None:
            return super().init_codes(n, generator, dtype, device)
        return self._init(n, generator).to(dtype=dtype or self.dtype, device=device)

    def prior_codes(self, n, generator, dtype=None, device="cpu"):
        # ``init`` is where the seeded methods start, not the prior that ``log_prior`` states
        return FeasibleSet.init_codes(self, n, generator, dtype, device)


def from_functions(constraints: Callable[[Tensor], Tensor], lo, hi, code_shape: Sequence[int],
                   **kwargs) -> FunctionSet:
    """A ``FeasibleSet`` from a batched constraint function ``x (B, ...) -> (B, m)`` and bands.

    Keyword arguments: ``decode`` (codes -> inputs), ``embed`` (inputs -> (B, p) features for the
    diversity term; default: the inputs themselves), ``box`` (bounds on codes), ``tol``,
    ``names``, ``input_shape``, ``dtype``, ``init`` ((n, generator) -> codes).

    Example: the unit annulus cut by a half-plane::

        ring = fs.from_functions(lambda x: torch.stack([x.norm(dim=1), x[:, 0] + x[:, 1]], 1),
                                 lo=[1.0, 0.0], hi=[2.0, math.inf], code_shape=(2,), box=(-3, 3))
    """
    return FunctionSet(constraints, lo, hi, code_shape, **kwargs)


class SharedForward:
    """Mixin for feasible sets whose measurement is read from one forward pass that others can
    share: the members of an ``Intersection`` on the same model run it once per step.

    A problem that mixes this in (``class MySet(SharedForward, FeasibleSet)``: the mixin first,
    so that its ``measure`` is the one used) implements:

    * ``forward_key()``: a hashable; members with equal keys run the same forward pass (the same
      model, on the same inputs), so one pass serves them all.
    * ``forward_needs()``: the names of what this member reads from the pass (e.g. layer names).
    * ``run_forward(x, needs)``: runs the pass ONCE on inputs ``x (B, *input_shape)`` and returns
      a mapping with an entry for every name in ``needs`` (the union over the group, so any
      member of the group must accept any other member's names).
    * ``measure_from(seen, x)``: this member's ``Measurement`` from that mapping (and ``x``).

    ``measure(x)`` then comes for free as ``measure_from(run_forward(x, forward_needs()), x)``;
    ``measure_shared`` measures a list of problems with one pass per group.
    """

    def forward_key(self) -> Hashable:
        """Members with equal keys share one forward pass."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_key()")

    def forward_needs(self) -> tuple:
        """The names this member reads from the forward pass (e.g. layer names)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_needs()")

    def run_forward(self, x: Tensor, needs: Sequence[Hashable]) -> Mapping[Hashable, Tensor]:
        """One forward pass on inputs ``x``, returning an entry for every name in ``needs``."""
        raise NotImplementedError(f"{type(self).__name__} must implement run_forward(x, needs)")

    def measure_from(self, seen: Mapping[Hashable, Tensor], x: Tensor) -> Measurement:
        """This member's measurement from the outputs of a (shared) forward pass."""
        raise NotImplementedError(f"{type(self).__name__} must implement measure_from(seen, x)")

    def measure(self, x: Tensor) -> Measurement:
        """Constraint values and embedding from this member's own forward pass."""
        return self.measure_from(self.run_forward(x, self.forward_needs()), x)


def measure_shared(problems: Sequence[FeasibleSet], x: Tensor) -> list[Measurement]:
    """One ``Measurement`` per problem for the same inputs ``x``, in order.

    ``SharedForward`` problems with equal ``forward_key()`` share one ``run_forward`` call (on
    the union of their ``forward_needs()``); every other problem, and a group of one, runs its
    own ``measure``.
    """
    groups: dict = {}
    for i, p in enumerate(problems):
        key = ("shared", p.forward_key()) if isinstance(p, SharedForward) else ("own", i)
        groups.setdefault(key, []).append(i)
    out: list[Optional[Measurement]] = [None] * len(problems)
    for key, members in groups.items():
        if len(members) == 1:
            out[members[0]] = problems[members[0]].measure(x)
            continue
        needs = tuple(dict.fromkeys(n for i in members for n in problems[i].forward_needs()))
        seen = problems[members[0]].run_forward(x, needs)
        for i in members:
            out[i] = problems[i].measure_from(seen, x)
    return out  # type: ignore[return-value]
