"""Contrastive explanations, "why class t and not class p?" (CDeepEx; Feghahati et al., ICLR 2019
submission), solved with the library's batched augmented Lagrangian.

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

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.bands import Bands
from ..core.diversity import CodeObjective
from ..core.problem import FeasibleSet, Measurement
from ..core.sampling import sample

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


# -- step 1: z0 ---------------------------------------------------------------------------------
def fit_codes(generator: Callable, images: Tensor, *, encoder: Any = None, steps: int = 400,
              lr: float = 0.05, seed: int = 0, code_shape: Optional[Sequence[int]] = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Their Procedure 2: ``z0 = argmin ||G(z) - I||^2`` per image, batched.

    Starts from ``encoder.encode(I)[0]`` (a VAE's mean code), ``encoder(I)`` (or its first
    element), or, without an encoder, a seeded ``N(0, I)`` draw of ``code_shape`` (default: the
    generator's ``code_shape``). Adam steps on ``z`` only (``torch.autograd.grad``: the
    generator's parameters never receive gradients).

    Returns ``(z0 (B, q), delta = I - G(z0), per-image mean squared error (B,))``.
    """
    images = images.detach()
    with torch.no_grad():
        if encoder is not None:
            out = encoder.encode(images) if hasattr(encoder, "encode") else encoder(images)
            z = out[0] if isinstance(out, (tuple, list)) else out
            z = z.detach().reshape(images.shape[0], -1).to(images.dtype)
        else:
            shape = tuple(code_shape or getattr(generator, "code_shape", ()))
            if not shape:
                raise ValueError("no encoder and the generator has no code_shape: pass code_shape=")
            g = torch.Generator().manual_seed(int(seed))
            z = torch.randn((images.shape[0], *shape), generator=g).to(images)
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(int(steps)):
        with torch.enable_grad():
            err = ((generator(z).reshape(images.shape) - images) ** 2).flatten(1).sum(1)
            grad, = torch.autograd.grad(err.sum(), z)
        z.grad = grad
        opt.step()
    z0 = z.detach()
    with torch.no_grad():
        g0 = generator(z0).reshape(images.shape)
    delta = images - g0
    return z0, delta, delta.pow(2).flatten(1).mean(1)


# -- the result ---------------------------------------------------------------------------------
@dataclass
class ContrastiveExplanation:
    """One answer to "why ``true_class`` and not ``probe_class``?".

    Attributes:
        input: ``I``; reconstruction: ``G(z0)``; generated: ``G(ze)``.
        code0, code: ``z0`` and ``ze`` ``(q,)``.
        residual: ``delta = I - G(z0)``.
        image: ``clamp(G(ze) + delta)``, what ``D`` sees at the result.
        explanation: ``G(z0) - G(ze)``: negative = to be added (red), positive = to be removed
            (blue) to move from the true to the probe class.
        class_probs: ``softmax(D(image))`` ``(C,)`` from the independent check.
        path: ``(T, C)`` class likelihoods (softmax of ``D``) at each iteration of the solver
            (of the run that produced the answer, when restarts were needed).
        code_path: ``(T, q)`` the codes at those iterations (``G(code_path[k])`` is the paper's
            Fig. 5a row).
        satisfied: the independent check: ``|l_t - l_p| <= tol`` and
            ``min(l_t, l_p) - max_other l_j >= margin`` (always both, also for ``"xgems"``, whose
            solver ignores the second: that is the ablation's point).
        message: why not (or a one-line summary when satisfied).
        gap: ``l_t - l_p``; margin_min: ``min(l_t, l_p) - max_other l_j``; top_other: that ``j``.
        distance: ``||ze - z0||``; fit_mse: mean squared error of ``G(z0)`` against ``I``.
        iteration: the solver iteration the returned code comes from.
    """

    true_class: int
    probe_class: int
    constraints: str
    margin: float
    tol: float
    input: Tensor
    reconstruction: Tensor
    generated: Tensor
    residual: Tensor
    image: Tensor
    explanation: Tensor
    code0: Tensor
    code: Tensor
    class_probs: Tensor
    path: Tensor
    code_path: Tensor
    satisfied: bool
    equality_ok: bool
    margin_ok: bool
    message: str
    gap: float
    margin_min: float
    top_other: int
    distance: float
    fit_mse: float
    iteration: int
    stats: dict = field(default_factory=dict)

    @property
    def added(self) -> Tensor:
        """``max(G(ze) - G(z0), 0)``: what must be added (red)."""
        return (-self.explanation).clamp(min=0)

    @property
    def removed(self) -> Tensor:
        """``max(G(z0) - G(ze), 0)``: what must be removed (blue)."""
        return self.explanation.clamp(min=0)

    def summary(self) -> dict:
        """JSON-able numbers (no images)."""
        return {"true_class": self.true_class, "probe_class": self.probe_class,
                "constraints": self.constraints, "margin": self.margin, "tol": self.tol,
                "satisfied": self.satisfied, "equality_ok": self.equality_ok,
                "margin_ok": self.margin_ok, "message": self.message, "gap": self.gap,
                "margin_min": self.margin_min, "top_other": self.top_other,
                "distance": self.distance, "fit_mse": self.fit_mse, "iteration": self.iteration,
                "class_probs": [round(float(v), 6) for v in self.class_probs],
                "code0": [float(v) for v in self.code0], "code": [float(v) for v in self.code],
                "stats": self.stats}

    def save(self, folder: Union[str, Path], name: str = "contrastive") -> Path:
        """Write ``<name>.png`` (input, G(z0), G(ze), explanation) and ``<name>.json`` (the numbers
        and the class-likelihood path) into ``folder``; returns the PNG's path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = self.summary()
        data["path"] = [[round(float(v), 6) for v in row] for row in self.path]
        (folder / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        plt = _pyplot()
        fig, axes = plt.subplots(1, 4, figsize=(8.4, 2.6))
        draw_panel(self, axes)
        fig.suptitle(f"why {self.true_class}, not {self.probe_class}? ({self.constraints}; "
                     f"{'satisfied' if self.satisfied else 'NOT satisfied'})", fontsize=9)
        fig.tight_layout()
        out = folder / f"{name}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


# -- pictures -----------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def explanation_rgb(explanation: Tensor, background: Optional[Tensor] = None,
                    scale: Optional[float] = None) -> Tensor:
    """An ``(H, W, 3)`` picture of ``G(z0) - G(ze)`` over a light grey copy of ``background``:
    red where the value is negative (to be added), blue where positive (to be removed), with
    opacity proportional to ``|value| / scale`` (default: its largest magnitude)."""
    e = explanation.detach().double().reshape(explanation.shape[-2:])
    base = torch.ones(*e.shape, 3, dtype=torch.float64)
    if background is not None:
        bg = background.detach().double().reshape(e.shape).clamp(0, 1)
        base = base * (1 - 0.35 * bg)[..., None]
    s = float(scale) if scale else float(e.abs().max())
    s = s if s > 0 else 1.0
    red = torch.tensor([0.85, 0.05, 0.05], dtype=torch.float64)
    blue = torch.tensor([0.05, 0.2, 0.9], dtype=torch.float64)
    a_red = (-e / s).clamp(0, 1)[..., None]
    a_blue = (e / s).clamp(0, 1)[..., None]
    out = base * (1 - a_red) + a_red * red
    out = out * (1 - a_blue) + a_blue * blue
    return out.clamp(0, 1)


def draw_panel(e: ContrastiveExplanation, axes) -> None:
    """Four axes: input, ``G(z0)``, ``G(ze)``, the red/blue explanation over the input."""
    p = e.class_probs
    imgs = [(e.input, f"input (true {e.true_class})"),
            (e.reconstruction, "G(z0)"),
            (e.generated, f"G(ze): p{e.true_class}={float(p[e.true_class]):.2f} "
                          f"p{e.probe_class}={float(p[e.probe_class]):.2f}")]
    for ax, (img, title) in zip(axes[:3], imgs):
        ax.imshow(img.detach().reshape(img.shape[-2:]).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
    axes[3].imshow(explanation_rgb(e.explanation.cpu(), e.input.cpu()).numpy(), interpolation="nearest")
    axes[3].set_title(f"red: add, blue: remove\n({e.true_class} -> {e.probe_class})", fontsize=7)
    for ax in axes:
        ax.set_axis_off()


# -- the solver ---------------------------------------------------------------------------------
class _PathRecorder:
    """A ``sample`` callback: the class likelihoods of every row at every iteration, and each
    row's best (smallest ``||z - z0||``) iterate that is inside the bands."""

    def __init__(self, problem: ContrastSet, init: Tensor) -> None:
        self.problem = problem
        self.prev = init.detach().clone()
        self.path: list[Tensor] = []
        self.code_path: list[Tensor] = []
        b = self.prev.shape[0]
        self.best_codes = self.prev.clone()
        self.best_obj = torch.full((b,), math.inf, dtype=torch.float64)
        self.best_iter = torch.full((b,), -1, dtype=torch.long)
        self.state = None

    def consider(self, codes: Tensor, values: Tensor, iteration: int) -> None:
        pr = self.problem
        ok = pr.bands.feasible(values).cpu()
        z0 = pr.z0[pr.rows_of(codes)].to(codes.dtype)
        obj = ((codes[:, :pr.q] - z0) ** 2).sum(1).double().cpu()
        better = ok & (obj < self.best_obj)
        if bool(better.any()):
            self.best_obj[better] = obj[better]
            self.best_codes[better.to(codes.device)] = codes[better.to(codes.device)].to(self.best_codes.dtype)
            self.best_iter[better] = iteration

    def __call__(self, phase: str, state) -> None:
        self.state = state
        c = self.problem.num_classes
        values = state.values.detach()
        self.path.append(values[:, -c:].exp().cpu())
        self.code_path.append(self.prev[:, :self.problem.q].cpu())
        # state.values were measured at the codes before this step (self.prev)
        self.consider(self.prev, values, len(self.path) - 1)
        self.prev = state.codes.detach().clone()


def _as_batch(images: Tensor, image_shape: Optional[Sequence[int]]) -> Tensor:
    if not isinstance(images, Tensor):
        images = torch.as_tensor(images)
    if image_shape is not None:
        return images.reshape(-1, *image_shape)
    return images


def _solve(problem: ContrastSet, init: Tensor, settings: dict, callbacks: Sequence
           ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
    """One batched augmented-Lagrangian run: ``(codes (B, q + 1), iteration (B,), path (B, T, C),
    code path (B, T, q), stats)``; each row's code is its best iterate inside the bands (smallest
    ``||z - z0||``), or the last iterate when none was inside."""
    recorder = _PathRecorder(problem, init)
    b = init.shape[0]
    result = sample(problem, n=b, k=b, method="joint", joint_until="converged",
                    objective=problem.objective(), seed_margin=0.0, penalty_rule="progress",
                    initial_codes=init, callbacks=[recorder, *callbacks], **settings)
    state = recorder.state
    final = state.codes.detach()
    # sample() re-measured the final codes after the last step: consider them too
    recorder.consider(final, state.values.detach(), len(recorder.path))
    found = torch.isfinite(recorder.best_obj).to(final.device)
    codes = torch.where(found[:, None], recorder.best_codes.to(final), final)
    iters = torch.where(found.cpu(), recorder.best_iter,
                        torch.full_like(recorder.best_iter, len(recorder.path)))
    c = problem.num_classes
    path = torch.stack(recorder.path, 1) if recorder.path else torch.zeros(b, 0, c)
    cpath = (torch.stack(recorder.code_path, 1) if recorder.code_path
             else torch.zeros(b, 0, problem.q))
    stats = {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool))}
    return codes, iters, path, cpath, stats


def _certify(classifier: nn.Module, problem: ContrastSet, codes: Tensor, margin: float,
             tol: float) -> tuple[Tensor, Tensor, list]:
    """The independent check of codes: ``(what D sees, log-likelihoods (float64), verdicts)``,
    each verdict ``(satisfied, equality_ok, margin_ok, gap, margin_min, top_other, message)``."""
    rows = problem.rows_of(codes)
    ze = codes[:, :problem.q]
    with torch.no_grad():
        seen = problem.image(ze, rows)
        checker, cdt = _float64_copy(classifier)
        logp = F.log_softmax(checker(seen.to(cdt)).double(), dim=1)
    verdicts = []
    c = logp.shape[1]
    for i in range(codes.shape[0]):
        ti, pi = int(problem.true_classes[rows[i]]), int(problem.probe_classes[rows[i]])
        lp_i = logp[i]
        gap = float(lp_i[ti] - lp_i[pi])
        mask = torch.ones(c, dtype=torch.bool, device=lp_i.device)
        mask[[ti, pi]] = False
        j = int(lp_i.masked_fill(~mask, -math.inf).argmax())
        mmin = float(torch.minimum(lp_i[ti], lp_i[pi]) - lp_i[j])
        eq_ok, mg_ok = abs(gap) <= tol, mmin >= margin
        if eq_ok and mg_ok:
            msg = (f"satisfied: log p{ti} - log p{pi} = {gap:+.2e} (|.| <= {tol:g}), every other "
                   f"class >= {mmin:.3f} below both (margin {margin:g}; closest: {j})")
        else:
            why = []
            if not eq_ok:
                why.append(f"log p{ti} - log p{pi} = {gap:+.4f} (|.| > tol {tol:g}): the solver did "
                           "not reach the boundary between the two classes")
            if not mg_ok:
                why.append(f"class {j} is only {mmin:+.4f} below min(log p{ti}, log p{pi}) "
                           f"(margin {margin:g})" + (": a third class wins" if mmin < 0 else ""))
            msg = "not satisfied: " + "; ".join(why)
        verdicts.append((bool(eq_ok and mg_ok), bool(eq_ok), bool(mg_ok), gap, mmin, j, msg))
    return seen, logp, verdicts


def explain_contrasts(classifier: nn.Module, generator: Callable, images: Tensor,
                      true_classes: Optional[Sequence[int] | Tensor] = None,
                      probe_classes: Optional[Sequence[int] | Tensor] = None, *,
                      margin: float = 0.1, constraints: str = "cdeepex", tol: float = 0.01,
                      encoder: Any = None, fit_steps: int = 400, fit_lr: float = 0.05,
                      lr: float = 0.05, inner_steps: int = 100, max_outer: int = 10,
                      lr_decay: float = 0.7, penalty0: float = 10.0, growth: float = 10.0,
                      restarts: int = 2, restart_noise: float = 0.5,
                      clamp: Optional[tuple[float, float]] = (0.0, 1.0), dtype: str = "float32",
                      seed: int = 0, image_shape: Optional[Sequence[int]] = None,
                      callbacks: Sequence = ()) -> list[ContrastiveExplanation]:
    """Contrastive explanations for a batch of images, solved together (one row per image).

    Args:
        classifier: ``D``, ``(B, *image_shape)`` -> ``(B, C)`` logits (any ``nn.Module``; only its
            outputs are used; its parameters receive no gradients).
        generator: ``G``, codes ``(B, q)`` -> images (e.g. ``feassample.models.load_generator()``).
        images: ``(B, *image_shape)`` inputs (``image_shape`` reshapes flat ones).
        true_classes: ``(B,)``; default: ``D``'s most likely class on each input.
        probe_classes: ``(B,)``; default: ``D``'s second most likely class.
        margin: how far (in log-likelihood, nats) every other class must stay below both.
        constraints: ``"cdeepex"`` (eq. 2) or ``"xgems"`` (the equality only: the ablation).
        tol: tolerance of ``|l_t - l_p|`` in the final check (the solver aims at ``tol / 2``).
        encoder: a VAE (``.encode``) or a callable giving the starting codes of the fit.
        fit_steps, fit_lr: the fit of ``z0`` (Adam).
        lr, inner_steps, max_outer, lr_decay, penalty0, growth: the augmented Lagrangian
            (``penalty_rule="progress"``, Adam steps; ``lr_decay`` per outer iteration).
        restarts: further runs for the rows that fail their own constraints in the check (a
            local method can stall where the violation is locally minimal), each started from
            ``z0 + restart_noise * N(0, I)`` (seeded); the objective is still ``||z - z0||^2``.
            A restart's answer replaces the first one only when it passes. For ``"xgems"`` only
            the equality counts (its solver knows no margin: a third class winning is the
            ablation's result, not a failure to retry).
        clamp: pixel range of what ``D`` sees, or ``None``.
        dtype: ``"float32"`` or ``"float64"`` for the codes.
        seed: seed of the random starting codes of the fit (only without an encoder) and of the
            restarts' jitter.
        callbacks: extra ``sample`` callbacks ``(phase, state)``.

    Returns:
        One ``ContrastiveExplanation`` per image, certified by an independent forward pass.
    """
    if constraints not in CONSTRAINTS:
        raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if int(restarts) < 0:
        raise ValueError(f"restarts must be >= 0, got {restarts}")
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    device = _param_device(classifier)
    images = _as_batch(images, image_shape).to(device=device, dtype=dt)
    b = images.shape[0]
    if b < 1:
        raise ValueError("images is empty")
    with torch.no_grad():
        logits0 = classifier(images.to(_param_dtype(classifier, dt))).double()
    c = logits0.shape[1]
    if c < 3:
        raise ValueError(f"a contrastive explanation needs at least 3 classes, got {c}")
    order = logits0.argsort(1, descending=True)
    t = order[:, 0] if true_classes is None else torch.as_tensor(true_classes).reshape(-1).long()
    p = order[:, 1] if probe_classes is None else torch.as_tensor(probe_classes).reshape(-1).long()
    if t.numel() == 1 and b > 1:
        t = t.expand(b)
    if p.numel() == 1 and b > 1:
        p = p.expand(b)
    if t.shape != (b,) or p.shape != (b,):
        raise ValueError(f"need one true and one probe class per image ({b}), got {t.numel()} and {p.numel()}")
    for name, v in (("true", t), ("probe", p)):
        if bool(((v < 0) | (v >= c)).any()):
            raise ValueError(f"{name} classes must be in 0..{c - 1}, got {v.tolist()}")
    if bool((t == p).any()):
        raise ValueError(f"true and probe classes must differ, got true={t.tolist()} probe={p.tolist()}")
    t, p = t.to(device), p.to(device)

    z0, delta, fit_mse = fit_codes(generator, images, encoder=encoder, steps=fit_steps, lr=fit_lr,
                                   seed=seed)
    z0, delta = z0.to(dt), delta.to(dt)
    problem = ContrastSet(classifier, generator, z0, delta, t, p, margin=margin, tol=tol,
                          constraints=constraints, clamp=clamp, num_classes=c)
    settings = dict(seed=seed, penalty0=penalty0, growth=growth, inner_steps=inner_steps,
                    max_outer=max_outer, lr=lr, lr_decay=lr_decay, dtype=dtype)
    codes, iters, path, cpath, stats = _solve(problem, problem.initial_codes(), settings, callbacks)
    paths, cpaths = list(path), list(cpath)
    seen, logp, verdicts = _certify(classifier, problem, codes, margin, tol)
    runs = torch.ones(b, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed) + 1)

    def own_ok(v) -> bool:  # the solver's own constraints: xGEMs is not restarted for the margin
        return v[1] and (v[2] or constraints == "xgems")

    for r in range(int(restarts)):
        failed = [i for i in range(b) if not own_ok(verdicts[i])]
        if not failed:
            break
        idx = torch.tensor(failed, device=z0.device)
        init = problem.initial_codes()[idx]
        noise = torch.randn(init.shape[0], problem.q, generator=g).to(init)
        init[:, :problem.q] += restart_noise * noise
        codes_r, iters_r, path_r, cpath_r, _ = _solve(problem, init, settings, callbacks)
        seen_r, logp_r, verdicts_r = _certify(classifier, problem, codes_r, margin, tol)
        for k, i in enumerate(failed):
            runs[i] += 1
            if own_ok(verdicts_r[k]):
                codes[i], iters[i], paths[i], cpaths[i] = codes_r[k], iters_r[k], path_r[k], cpath_r[k]
                seen[i], logp[i], verdicts[i] = seen_r[k], logp_r[k], verdicts_r[k]
    stats["restarts_used"] = int((runs - 1).sum())

    ze = codes[:, :problem.q]
    with torch.no_grad():
        g0 = generator(z0).reshape(images.shape)
        ge = generator(ze).reshape(images.shape)
    out = []
    for i in range(b):
        ok, eq_ok, mg_ok, gap, mmin, j, msg = verdicts[i]
        if not ok and int(runs[i]) > 1:
            msg += f" (after {int(runs[i])} runs: the first and {int(runs[i]) - 1} restart(s))"
        out.append(ContrastiveExplanation(
            true_class=int(t[i]), probe_class=int(p[i]), constraints=constraints,
            margin=float(margin), tol=float(tol), input=images[i].detach().cpu(),
            reconstruction=g0[i].cpu(), generated=ge[i].cpu(), residual=delta[i].cpu(),
            image=seen[i].cpu(), explanation=(g0[i] - ge[i]).cpu(), code0=z0[i].cpu(),
            code=ze[i].detach().cpu(), class_probs=logp[i].exp().float().cpu(),
            path=paths[i].float(), code_path=cpaths[i], satisfied=ok, equality_ok=eq_ok, margin_ok=mg_ok, message=msg,
            gap=gap, margin_min=mmin, top_other=j, distance=float((ze[i] - z0[i]).norm()),
            fit_mse=float(fit_mse[i]), iteration=int(iters[i]),
            stats={**stats, "runs": int(runs[i])}))
    return out


def _float64_copy(model: nn.Module) -> tuple[Callable, torch.dtype]:
    """A float64 copy of ``model`` for the certificate (the model itself is untouched), or the
    model as it is when it cannot be copied."""
    try:
        twin = copy.deepcopy(model).double().eval()
        return twin, torch.float64
    except Exception:  # noqa: BLE001 - e.g. modules that refuse deepcopy; certify in their dtype
        return model, _param_dtype(model, torch.float32)


def explain_contrast(classifier: nn.Module, generator: Callable, image: Tensor,
                     true_class: Optional[int] = None, probe_class: Optional[int] = None,
                     **kwargs) -> ContrastiveExplanation:
    """One contrastive explanation, "why ``true_class`` and not ``probe_class``?" (see
    ``explain_contrasts`` for the keyword arguments: ``margin``, ``constraints``, ``tol``,
    ``encoder``, ``max_outer``, ``seed``...). ``image`` is ``(*image_shape)`` or
    ``(1, *image_shape)``; for the digits zoo ``(1, 16, 16)``."""
    shape = kwargs.pop("image_shape", None)
    x = torch.as_tensor(image)
    if shape is None:
        shape = tuple(x.shape[1:]) if (x.dim() == 4 and x.shape[0] == 1) else tuple(x.shape)
    t = None if true_class is None else [int(true_class)]
    p = None if probe_class is None else [int(probe_class)]
    return explain_contrasts(classifier, generator, x.reshape(1, *shape), t, p, image_shape=shape,
                             **kwargs)[0]


def plot_paths(groups: dict, path: Union[str, Path, None] = None, title: str = "", ax=None):
    """The paper's Fig. 5b: mean class likelihood along the optimization for each group
    (``{"CDeepEx": [explanations], "xGEMs": [...]}``): true class, probe class, and the most
    likely other class, averaged over the group's images. Draws on ``ax`` when given, else
    writes a figure to ``path`` and returns the path."""
    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 3.6))
    styles = {0: "-", 1: "--", 2: ":"}
    colors = ["#1b6ca8", "#d1495b", "#2a9d8f", "#8d6a9f"]
    for g, (label, exps) in enumerate(groups.items()):
        t_len = min(len(e.path) for e in exps)
        tp = torch.stack([e.path[:t_len, e.true_class] for e in exps]).mean(0)
        pp = torch.stack([e.path[:t_len, e.probe_class] for e in exps]).mean(0)
        op = []
        for e in exps:
            m = torch.ones(e.path.shape[1], dtype=torch.bool)
            m[[e.true_class, e.probe_class]] = False
            op.append(e.path[:t_len][:, m].max(1).values)
        op = torch.stack(op).mean(0)
        col = colors[g % len(colors)]
        it = torch.arange(1, t_len + 1).numpy()
        ax.plot(it, tp.numpy(), styles[0], color=col, label=f"{label}: true class")
        ax.plot(it, pp.numpy(), styles[1], color=col, label=f"{label}: probe class")
        ax.plot(it, op.numpy(), styles[2], color=col, label=f"{label}: best other class")
    ax.set_xscale("log")
    ax.set_xlabel("optimization iteration (log scale)")
    ax.set_ylabel("class likelihood (mean over images)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    if fig is None:
        return ax
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the Hydra app's entry ------------------------------------------------------------------------
#: the keys of a ``problem=contrastive`` node and their defaults (``conf/problem/contrastive.yaml``)
CONFIG_DEFAULTS = {"kind": "contrastive", "split": "test", "image_index": 0, "true_class": None,
                   "probe_class": None, "margin": 0.1, "tol": 0.01, "constraints": "cdeepex",
                   "generator": "digits_vae", "max_outer": 10, "restarts": 2, "seed": 0}


def _settings(node: Any) -> dict:
    """The node's settings (a ``DictConfig`` or a dict), defaults filled in, unknown keys refused."""
    if hasattr(node, "items"):
        given = {k: v for k, v in node.items()}
    else:
        given = dict(vars(node))
    unknown = sorted(set(given) - set(CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for problem=contrastive; valid: {sorted(CONFIG_DEFAULTS)}")
    cfg = {**CONFIG_DEFAULTS, **given}
    if cfg["split"] not in ("train", "test", "all"):
        raise ValueError(f"problem.split must be 'train', 'test' or 'all', got {cfg['split']!r}")
    if cfg["constraints"] not in CONSTRAINTS:
        raise ValueError(f"problem.constraints must be one of {CONSTRAINTS}, got {cfg['constraints']!r}")
    return cfg


def _config_inputs(cfg: dict):
    from ..models import digits_data, load_vae
    from ..models.digits import DigitsGenerator

    x, y = digits_data(cfg["split"])
    index = int(cfg["image_index"])
    if not 0 <= index < len(x):
        raise ValueError(f"problem.image_index={index} is outside the {cfg['split']} split "
                         f"(0..{len(x) - 1})")
    vae = load_vae(str(cfg["generator"]))
    return x, y, index, vae, DigitsGenerator(vae.decoder).eval()


def problem_from_config(node: Any, classifier: nn.Module) -> ContrastSet:
    """The ``ContrastSet`` of a ``problem=contrastive`` node (``z0`` fitted to the chosen image):
    what ``app.build_problem`` returns for it."""
    cfg = _settings(node)
    x, _, index, vae, generator = _config_inputs(cfg)
    image = x[index:index + 1]
    with torch.no_grad():
        order = classifier(image).argsort(1, descending=True)[0]
    t = int(order[0]) if cfg["true_class"] is None else int(cfg["true_class"])
    p = int(order[1]) if cfg["probe_class"] is None else int(cfg["probe_class"])
    if t == p:
        raise ValueError(f"problem.true_class and problem.probe_class must differ, got {t}")
    z0, delta, _ = fit_codes(generator, image, encoder=vae, seed=int(cfg["seed"]))
    return ContrastSet(classifier, generator, z0, delta, torch.tensor([t]), torch.tensor([p]),
                       margin=float(cfg["margin"]), tol=float(cfg["tol"]),
                       constraints=str(cfg["constraints"]))


def run_config(node: Any, classifier: nn.Module, out_dir: Union[str, Path]) -> dict:
    """One contrastive explanation from a ``problem=contrastive`` config node (see
    ``conf/problem/contrastive.yaml``), written into ``out_dir``: ``contrastive.png`` (the panel),
    ``contrastive.json`` (the numbers and the class-likelihood path) and ``metrics.json``.
    Returns the metrics (``status`` is ``"success"`` when the independent check passed, else
    ``"unsatisfied"``, with ``message`` saying why)."""
    import time

    t0 = time.perf_counter()
    cfg = _settings(node)
    x, y, index, vae, generator = _config_inputs(cfg)
    e = explain_contrast(classifier, generator, x[index], cfg["true_class"], cfg["probe_class"],
                         margin=float(cfg["margin"]), tol=float(cfg["tol"]),
                         constraints=str(cfg["constraints"]), encoder=vae,
                         max_outer=int(cfg["max_outer"]), restarts=int(cfg["restarts"]),
                         seed=int(cfg["seed"]))
    out = Path(out_dir)
    e.save(out, "contrastive")
    metrics = {"status": "success" if e.satisfied else "unsatisfied", "satisfied": e.satisfied,
               "message": e.message, "split": cfg["split"], "image_index": index,
               "label": int(y[index]), "generator": str(cfg["generator"]),
               **{k: v for k, v in e.summary().items() if k not in ("message", "satisfied", "stats")},
               "seed_steps": e.stats.get("seed_steps"), "model_evals": e.stats.get("model_evals"),
               "n_returned": 1, "feasible_fraction": 1.0 if e.satisfied else 0.0,
               "wall_s": round(time.perf_counter() - t0, 3)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


__all__ = ["ContrastSet", "ContrastiveExplanation", "explain_contrast", "explain_contrasts",
           "fit_codes", "explanation_rgb", "draw_panel", "plot_paths", "run_config", "problem_from_config",
           "CONFIG_DEFAULTS", "CONSTRAINTS"]
