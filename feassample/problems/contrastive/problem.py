"""The feasible set of a contrastive explanation, "why class t and not class p?" (CDeepEx;
Feghahati et al., ICLR 2019 submission): ``ContrastSet``. The explainer that fits, solves and
certifies it is ``feassample.problems.contrastive.explain`` (``fs.explain_contrast``); its
pictures are in ``feassample.viz.contrastive``; the Hydra app's entry is
``feassample.cli.contrastive``.

Given an image ``I``, a classifier ``D`` and a generator ``G``:

1. **Fit** (their Procedure 2 / eq. 1): ``z0 = argmin_z ||G(z) - I||^2`` by Adam steps on ``z``,
   started from an encoder's mean code when one is given (``encoder=load_vae()``), else from a
   seeded ``N(0, I)`` draw. The residual is kept as ``delta = I - G(z0)`` so that
   ``G(z0) + delta == I`` exactly. (The paper writes ``delta = G(z0) - I`` and then *adds* it,
   ``D(G(z) + delta)``, which at ``z = z0`` would give ``2 G(z0) - I``; we use the sign that
   reproduces the input.) ``D`` always sees ``clamp(G(z) + delta, 0, 1)`` (``clamp=None`` to
   switch the clamp off); at ``z = z0`` that is ``I``.
2. **Solve** their eq. 2: ``min_z ||z - z0||^2`` subject to, with ``l = log_softmax(D(.))``,

   * ``l_t - l_p = 0`` (an equality band ``[0, 0]`` with tolerance ``tol``; equal to
     ``logit_t - logit_p``), and, for ``constraints="cdeepex"``,
   * ``l_t - l_j >= margin`` and ``l_p - l_j >= margin`` for every other class ``j``: the paper's
     two one-sided constraints per other class (``2 (C - 2)`` smooth constraints, each with its
     own multiplier). One constraint per class against ``min(l_t, l_p)`` would be equivalent on
     the feasible set but non-smooth where ``l_t = l_p``, which is exactly where the solution
     lies. ``constraints="xgems"`` keeps only the equality (the paper's xGEMs ablation).

   The problem is a ``FeasibleSet`` (``ContrastSet``) minimized by ``sample(method="joint",
   joint_until="converged", objective=CodeObjective(||z - z0||^2))``, one row per image, so
   many images are explained in one batched run. The ``C`` class log-likelihoods ride along as
   monitoring columns with infinite bands (no constraint, no multiplier), so a callback records
   the class-likelihood path of every row at every iteration.
3. **Explain**: ``explanation = G(z0) - G(ze)``. Negative pixels (``G(ze) > G(z0)``) are what
   must be **added** to move from the true to the probe class: drawn **red**; positive pixels are
   what must be **removed**: drawn **blue** (the paper's Fig. 3 convention).

The result is certified by an independent forward pass of ``D`` (float64 copy of the model when
it can be copied) on the returned image: ``|l_t - l_p| <= tol`` and
``min(l_t, l_p) - max_{j != t, p} l_j >= margin``. The optimizer aims at ``tol / 2`` and
``margin + tol / 2`` so that the float64 check has room for rounding.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.bands import Bands
from ...core.diversity import CodeObjective
from ...core.problem import FeasibleSet, Measurement

CONSTRAINTS = ("cdeepex", "xgems")


# -- the feasible set ---------------------------------------------------------------------------
class ContrastSet(FeasibleSet):
    """The constraint set of CDeepEx's eq. 2 for a batch of images, on codes ``(B, q + 1)``.

    A code is ``[z (q values), row]``: the last coordinate is the row's index into the per-image
    tensors (``z0``, ``delta``, true and probe classes). Nothing depends on it differentiably, so
    its gradient is exactly zero and neither Adam nor gradient descent ever moves it: every
    pass of the engine (the steps on the unfinished rows, the certification of a subset) finds
    each row's own image whatever subset of rows it sees. The decoded input carries the row index
    the same way, as its last column.

    Constraint values ``(B, m)``: ``l_t - l_p`` (band ``[0, 0]``), then for ``"cdeepex"`` the
    ``C - 2`` values ``l_t - l_j`` and the ``C - 2`` values ``l_p - l_j`` (band
    ``[margin + tol/2, inf)``), then the ``C`` log-likelihoods ``l_0..l_{C-1}`` (band
    ``(-inf, inf)``: monitoring only).

    Args:
        classifier: ``D``, images -> ``(B, C)`` logits.
        generator: ``G``, codes ``(B, q)`` -> images.
        z0: ``(B, q)`` fitted codes; delta: ``(B, *image_shape)`` residuals ``I - G(z0)``.
        true_classes, probe_classes: ``(B,)`` class indices.
        margin, tol: see the module docstring. constraints: ``"cdeepex"`` or ``"xgems"``.
        clamp: ``(lo, hi)`` pixel range for ``G(z) + delta``, or ``None``.
    """

    embedding_space = "codes"

    def __init__(self, classifier: nn.Module, generator: Callable, z0: Tensor, delta: Tensor,
                 true_classes: Tensor, probe_classes: Tensor, *, margin: float = 0.1,
                 tol: float = 0.01, constraints: str = "cdeepex",
                 clamp: Optional[tuple[float, float]] = (0.0, 1.0), num_classes: int = 10) -> None:
        if constraints not in CONSTRAINTS:
            raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be > 0 (the equality l_t = l_p needs a tolerance), got {tol!r}")
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        self.classifier, self.generator = classifier, generator
        self.z0, self.delta = z0.detach(), delta.detach()
        self.true_classes = true_classes.to(device=z0.device, dtype=torch.long)
        self.probe_classes = probe_classes.to(device=z0.device, dtype=torch.long)
        c = int(num_classes)
        self.num_classes, self.constraints, self.margin, self.tol = c, constraints, float(margin), float(tol)
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))
        b, q = z0.shape
        self.q, self.image_shape = q, tuple(delta.shape[1:])
        # the C - 2 "other" classes of each row, in increasing order
        cls = torch.arange(c, device=z0.device).expand(b, c)
        keep = (cls != self.true_classes[:, None]) & (cls != self.probe_classes[:, None])
        self.others = cls[keep].view(b, c - 2)
        lo = [0.0]
        hi = [0.0]
        names = ["l_t-l_p"]
        if constraints == "cdeepex":
            lo += [self.margin + self.tol / 2] * (2 * (c - 2))
            hi += [math.inf] * (2 * (c - 2))
            names += [f"l_t-l_other{k}" for k in range(c - 2)] + [f"l_p-l_other{k}" for k in range(c - 2)]
        self.n_constraints = len(lo)
        lo += [-math.inf] * c
        hi += [math.inf] * c
        names += [f"log_p{k}" for k in range(c)]
        self.bands = Bands(tuple(lo), tuple(hi), tol=self.tol / 2, names=tuple(names))
        self.code_shape = (q + 1,)
        self.input_shape = (int(math.prod(self.image_shape)) + 1,)
        self.box = None
        self.dtype = z0.dtype

    # helpers ---------------------------------------------------------------------------------
    def rows_of(self, codes: Tensor) -> Tensor:
        return codes[:, self.q].detach().round().long()

    def initial_codes(self) -> Tensor:
        rows = torch.arange(self.z0.shape[0], dtype=self.z0.dtype, device=self.z0.device)
        return torch.cat([self.z0, rows[:, None]], 1)

    def image(self, z: Tensor, rows: Tensor) -> Tensor:
        """What ``D`` sees: ``clamp(G(z) + delta[rows])``, ``(B, *image_shape)``."""
        x = self.generator(z).reshape(z.shape[0], *self.image_shape) + self.delta[rows].to(z.dtype)
        return x if self.clamp is None else x.clamp(*self.clamp)

    def objective(self) -> CodeObjective:
        """``||z - z0[row]||^2`` per row, for ``sample(objective=...)``."""
        q, z0 = self.q, self.z0

        def distance(codes: Tensor) -> Tensor:
            rows = codes[:, q].detach().round().long()
            return ((codes[:, :q] - z0[rows].to(codes.dtype)) ** 2).sum(1)

        return CodeObjective(distance)

    # the contract ----------------------------------------------------------------------------
    def decode(self, codes: Tensor) -> Tensor:
        rows = self.rows_of(codes)
        x = self.image(codes[:, :self.q], rows)
        return torch.cat([x.flatten(1), rows[:, None].to(x.dtype)], 1)

    def measure(self, x: Tensor) -> Measurement:
        rows = x[:, -1].detach().round().long()
        images = x[:, :-1].reshape(x.shape[0], *self.image_shape)
        dtype = _param_dtype(self.classifier, images.dtype)
        logits = self.classifier(images.to(dtype)).to(x.dtype)
        logp = F.log_softmax(logits, dim=1)
        t, p = self.true_classes[rows], self.probe_classes[rows]
        lt = logits.gather(1, t[:, None])
        lp = logits.gather(1, p[:, None])
        cols = [lt - lp]
        if self.constraints == "cdeepex":
            lo = logits.gather(1, self.others[rows])
            cols += [lt - lo, lp - lo]
        cols.append(logp)
        return Measurement(torch.cat(cols, 1), None)

    def describe(self) -> str:
        return (f"ContrastSet({self.constraints}, {self.z0.shape[0]} image(s), margin={self.margin:g}, "
                f"tol={self.tol:g})")


def _param_dtype(module: Any, default: torch.dtype) -> torch.dtype:
    try:
        return next(module.parameters()).dtype
    except (AttributeError, StopIteration):
        return default


def _param_device(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


__all__ = ["ContrastSet", "CONSTRAINTS"]
