"""The contrastive explainer, "why class t and not class p?" (CDeepEx): fit ``z0``, solve the
``ContrastSet`` with ``sample(method="joint")``, certify every answer by an independent forward
pass, and return one ``ContrastiveExplanation`` per image (see
``feassample.problems.contrastive.problem`` for the method and its conventions, ``docs/contrastive.md``
for the numbers). Pictures of the answers: ``feassample.viz.contrastive``.

Here: the input checks, the restarts and the assembly of the answers; the steps have their own
modules (``fit``: ``z0``; ``solve``: the run; ``certificate``: the check) and so does the
result (``explanation``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .certificate import _certify
from .explanation import ContrastiveExplanation
from .fit import fit_codes
from .problem import CONSTRAINTS, ContrastSet, _param_device, _param_dtype
from .solve import _solve


def _as_batch(images: Tensor, image_shape: Optional[Sequence[int]]) -> Tensor:
    if not isinstance(images, Tensor):
        images = torch.as_tensor(images)
    if image_shape is not None:
        return images.reshape(-1, *image_shape)
    return images


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
