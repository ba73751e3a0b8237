"""The contrastive explainer, "why class t and not class p?" (CDeepEx): fit ``z0``, solve the
``ContrastSet`` with ``sample(method="joint")``, certify every answer by an independent forward
pass, and return one ``ContrastiveExplanation`` per image (see
``feassample.problems.contrastive.problem`` for the method and its conventions, ``docs/contrastive.md``
for the numbers). Pictures of the answers: ``feassample.viz.contrastive``.
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

from ...core.sampling import sample
from .problem import CONSTRAINTS, ContrastSet, _param_device, _param_dtype


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
        """Write ``<name>.json`` (the numbers and the class-likelihood path) into ``folder``;
        returns its path. The picture: ``feassample.viz.contrastive.save_explanation``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = self.summary()
        data["path"] = [[round(float(v), 6) for v in row] for row in self.path.tolist()]
        out = folder / f"{name}.json"
        out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return out


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
        """Keep, per row, ``codes`` where they are inside the bands and closer to ``z0``."""
        pr = self.problem
        ok = pr.bands.feasible(values).cpu()
        z0 = pr.z0[pr.rows_of(codes)].to(codes.dtype)
        obj = ((codes[:, :pr.q] - z0) ** 2).sum(1).double().cpu()
        better = ok & (obj < self.best_obj)
        self.best_obj = torch.where(better, obj, self.best_obj)
        self.best_iter = torch.where(better, torch.full_like(self.best_iter, iteration), self.best_iter)
        here = better.to(codes.device)[:, None]
        self.best_codes = torch.where(here, codes.to(self.best_codes.dtype), self.best_codes)

    def __call__(self, phase: str, state, info=None) -> None:
        # the driver calls (phase, state) today and (phase, state, info) in the new core
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


def _float64_copy(model: nn.Module) -> tuple[Callable, torch.dtype]:
    """A float64 copy of ``model`` for the certificate (the model itself is untouched), or the
    model as it is when it cannot be copied."""
    try:
        twin = copy.deepcopy(model).double().eval()
        return twin, torch.float64
    except Exception:  # noqa: BLE001 - e.g. modules that refuse deepcopy; certify in their dtype
        return model, _param_dtype(model, torch.float32)


@dataclass
class _Certificate:
    """The independent check of a batch of codes, one entry per row: ``satisfied``,
    ``equality_ok``, ``margin_ok`` ``(B,)`` bool, ``gap = l_t - l_p`` and ``margin_min =
    min(l_t, l_p) - max_other l_j`` ``(B,)`` float64, ``top_other`` ``(B,)`` long, and the
    ``messages`` saying why (not)."""

    satisfied: Tensor
    equality_ok: Tensor
    margin_ok: Tensor
    gap: Tensor
    margin_min: Tensor
    top_other: Tensor
    messages: list

    def own_ok(self, constraints: str) -> Tensor:
        """``(B,)`` the solver's own constraints hold: xGEMs knows no margin, so it is not
        restarted for it."""
        return self.equality_ok & (self.margin_ok | (constraints == "xgems"))

    def put(self, rows: Tensor, other: "_Certificate", take: Tensor) -> None:
        """Overwrite the entries ``rows`` with ``other``'s entries ``take``."""
        for name in ("satisfied", "equality_ok", "margin_ok", "gap", "margin_min", "top_other"):
            getattr(self, name)[rows] = getattr(other, name)[take]
        for i, k in zip(rows.tolist(), take.tolist()):
            self.messages[i] = other.messages[k]


def _message(t: int, p: int, gap: float, mmin: float, j: int, eq_ok: bool, mg_ok: bool,
             margin: float, tol: float) -> str:
    if eq_ok and mg_ok:
        return (f"satisfied: log p{t} - log p{p} = {gap:+.2e} (|.| <= {tol:g}), every other "
                f"class >= {mmin:.3f} below both (margin {margin:g}; closest: {j})")
    why = []
    if not eq_ok:
        why.append(f"log p{t} - log p{p} = {gap:+.4f} (|.| > tol {tol:g}): the solver did "
                   "not reach the boundary between the two classes")
    if not mg_ok:
        why.append(f"class {j} is only {mmin:+.4f} below min(log p{t}, log p{p}) "
                   f"(margin {margin:g})" + (": a third class wins" if mmin < 0 else ""))
    return "not satisfied: " + "; ".join(why)


def _certify(classifier: nn.Module, problem: ContrastSet, codes: Tensor, margin: float,
             tol: float) -> tuple[Tensor, Tensor, _Certificate]:
    """The independent check of codes ``(B, q + 1)``: ``(what D sees (B, *image_shape),
    log-likelihoods (B, C) float64, the certificate)``, from a float64 copy of ``D``."""
    rows = problem.rows_of(codes)
    ze = codes[:, :problem.q]
    with torch.no_grad():
        seen = problem.image(ze, rows)
        checker, cdt = _float64_copy(classifier)
        logp = F.log_softmax(checker(seen.to(cdt)).double(), dim=1)
    t = problem.true_classes[rows].to(logp.device)[:, None]
    p = problem.probe_classes[rows].to(logp.device)[:, None]
    lt, lp = logp.gather(1, t)[:, 0], logp.gather(1, p)[:, 0]
    others = logp.scatter(1, t, -math.inf).scatter(1, p, -math.inf)
    top, j = others.max(1)
    gap = lt - lp
    mmin = torch.minimum(lt, lp) - top
    eq_ok, mg_ok = gap.abs() <= tol, mmin >= margin
    numbers = zip(t[:, 0].tolist(), p[:, 0].tolist(), gap.tolist(), mmin.tolist(), j.tolist(),
                  eq_ok.tolist(), mg_ok.tolist())
    messages = [_message(*row, margin, tol) for row in numbers]  # text only: the numbers are batched
    cert = _Certificate(eq_ok & mg_ok, eq_ok, mg_ok, gap, mmin, j, messages)
    return seen, logp, cert


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
                      code_shape: Optional[Sequence[int]] = None,
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
        code_shape: the shape of one code, for a generator without an encoder and without a
            ``code_shape`` attribute (e.g. a plain ``nn.Sequential``): the fit starts from a
            seeded ``N(0, I)`` draw of that shape.
        callbacks: extra ``sample`` callbacks ``(phase, state, info)``.

    Returns:
        One ``ContrastiveExplanation`` per image, certified by an independent forward pass.
    """
    if constraints not in CONSTRAINTS:
        raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if int(restarts) < 0:
        raise ValueError(f"restarts must be >= 0, got {restarts}")
    if code_shape is not None:
        code_shape = tuple(int(v) for v in code_shape)
        if not code_shape or any(v < 1 for v in code_shape):
            raise ValueError(f"code_shape must be a non-empty tuple of sizes >= 1, got {code_shape}")
    if encoder is None and code_shape is None and not getattr(generator, "code_shape", None):
        raise ValueError("no encoder and the generator has no code_shape: pass code_shape= "
                         "(the shape of one code, e.g. code_shape=(8,))")
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
                                   seed=seed, code_shape=code_shape)
    z0, delta = z0.to(dt), delta.to(dt)
    problem = ContrastSet(classifier, generator, z0, delta, t, p, margin=margin, tol=tol,
                          constraints=constraints, clamp=clamp, num_classes=c)
    settings = dict(seed=seed, penalty0=penalty0, growth=growth, inner_steps=inner_steps,
                    max_outer=max_outer, lr=lr, lr_decay=lr_decay, dtype=dtype)
    codes, iters, path, cpath, stats = _solve(problem, problem.initial_codes(), settings, callbacks)
    # per-row paths: a restart's run has its own length
    paths, cpaths = list(path.unbind(0)), list(cpath.unbind(0))
    seen, logp, cert = _certify(classifier, problem, codes, margin, tol)
    runs = torch.ones(b, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed) + 1)
    for _ in range(int(restarts)):
        failed = torch.nonzero(~cert.own_ok(constraints).cpu()).flatten()
        if failed.numel() == 0:
            break
        init = problem.initial_codes()[failed.to(z0.device)]
        noise = torch.randn(init.shape[0], problem.q, generator=g).to(init)
        init[:, :problem.q] += restart_noise * noise
        codes_r, iters_r, path_r, cpath_r, _ = _solve(problem, init, settings, callbacks)
        seen_r, logp_r, cert_r = _certify(classifier, problem, codes_r, margin, tol)
        runs[failed] += 1
        take = torch.nonzero(cert_r.own_ok(constraints).cpu()).flatten()  # into the restart's rows
        rows = failed[take]                                                # into the batch
        codes[rows.to(codes.device)] = codes_r[take.to(codes.device)]
        iters[rows] = iters_r[take]
        seen[rows.to(seen.device)] = seen_r[take.to(seen.device)]
        logp[rows.to(logp.device)] = logp_r[take.to(logp.device)]
        cert.put(rows.to(cert.gap.device), cert_r, take.to(cert.gap.device))
        for i, k in zip(rows.tolist(), take.tolist()):
            paths[i], cpaths[i] = path_r[k], cpath_r[k]
    stats["restarts_used"] = int((runs - 1).sum())

    ze = codes[:, :problem.q].detach()
    with torch.no_grad():
        g0 = generator(z0).reshape(images.shape)
        ge = generator(ze).reshape(images.shape)
    explanation = (g0 - ge).cpu()
    distance = (ze - z0).norm(dim=1).tolist()
    class_probs = logp.exp().float().cpu()
    inputs, g0, ge, delta_c, seen = images.cpu(), g0.cpu(), ge.cpu(), delta.cpu(), seen.cpu()
    z0_c, ze_c = z0.cpu(), ze.cpu()
    messages = [m if ok or r == 1 else m + f" (after {r} runs: the first and {r - 1} restart(s))"
                for m, ok, r in zip(cert.messages, cert.satisfied.tolist(), runs.tolist())]
    columns = zip(t.tolist(), p.tolist(), cert.satisfied.tolist(), cert.equality_ok.tolist(),
                  cert.margin_ok.tolist(), cert.gap.tolist(), cert.margin_min.tolist(),
                  cert.top_other.tolist(), distance, fit_mse.tolist(), iters.tolist(), runs.tolist())
    return [ContrastiveExplanation(
        true_class=ti, probe_class=pi, constraints=constraints, margin=float(margin),
        tol=float(tol), input=inputs[i], reconstruction=g0[i], generated=ge[i],
        residual=delta_c[i], image=seen[i], explanation=explanation[i], code0=z0_c[i],
        code=ze_c[i], class_probs=class_probs[i], path=paths[i].float(), code_path=cpaths[i],
        satisfied=ok, equality_ok=eq_ok, margin_ok=mg_ok, message=messages[i], gap=gap,
        margin_min=mmin, top_other=j, distance=dist, fit_mse=mse, iteration=it,
        stats={**stats, "runs": r})
        for i, (ti, pi, ok, eq_ok, mg_ok, gap, mmin, j, dist, mse, it, r) in enumerate(columns)]


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


__all__ = ["ContrastiveExplanation", "explain_contrast", "explain_contrasts", "fit_codes"]
