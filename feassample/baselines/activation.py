"""Activation maximization (Simonyan et al. 2014) and multifaceted feature visualization
(Nguyen, Yosinski & Clune 2016), as samplers of a band.

``activation_max``: restarts of ``steps`` gradient steps from ``k`` random codes; the final iterate
of each restart is kept when it is inside the band. ``target="max"`` ascends the first
constraint's value (the unit), as the method is published; ``target="band"`` descends toward the
middle of every band. ``diversity=w`` adds Lucid's batch diversity term to the loss:
``w * sum_i mean_{j != i} cos(e_i, e_j)`` over the batch's embeddings ``e`` (the negative cosine
similarity is rewarded; per row it is on the scale of the per-row objective).

``multifaceted``: the same ascent, started from cluster means of real inputs: the inputs that
activate the unit most (``target="max"``) or lie closest to the band (``target="band"``) are
clustered with k-means in the embedding space, and each facet starts from its cluster's mean
input (see ``multifaceted`` for generator problems).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..core.problem import FeasibleSet
from ..core.result import SampleSet
from ..core.sample import SamplerConfig
from . import common
from .common import Budget, Collector
from .kmeans import kmeans

TARGETS = ("max", "band")


def _check_options(target: str, steps: int, diversity: float, l2: float) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be 'max' (ascend the unit) or 'band' (descend to the middle "
                         f"of the band), got {target!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not (math.isfinite(diversity) and diversity >= 0):
        raise ValueError(f"diversity must be a finite weight >= 0, got {diversity!r}")
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite weight >= 0, got {l2!r}")


def _objective(problem: FeasibleSet, values: Tensor, target: str) -> Tensor:
    """Per-row loss to descend: ``-h_0`` (ascend the unit) or the pull to the band's middle."""
    if target == "max":
        return -values[:, 0]
    return common.band_loss(problem, values)


def ascend(problem: FeasibleSet, codes: Tensor, cfg: SamplerConfig, budget: Budget, *,
           steps: int, target: str, diversity: float, l2: float) -> tuple[Tensor, Tensor]:
    """``steps`` gradient steps on a batch of codes, then one forward pass at the final iterate.

    Costs ``B * (steps + 1)`` model evaluations. Returns ``(final codes, their values)``.
    """
    codes = codes.detach().clone().requires_grad_(True)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam([codes], lr=cfg.lr)
    else:
        opt = torch.optim.SGD([codes], lr=cfg.lr)
    b = codes.shape[0]
    for _ in range(steps):
        m, x = common.measure(problem, codes)
        loss = _objective(problem, m.values, target).sum()
        if diversity > 0:
            loss = loss + diversity * b * common.mean_cosine(common.embedding_of(problem, m, x, codes))
        if l2 > 0:
            loss = loss + l2 * (codes.reshape(b, -1) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            codes.copy_(problem.project(codes))
        budget.spend(b)
    with torch.no_grad():
        values = common.measure(problem, codes)[0].values
    budget.spend(b)
    return codes.detach(), values.detach()


def _restarts(problem, cfg, callbacks, t0, method, device, dtype, starts, budget, stats, *,
              steps, target, diversity, l2) -> SampleSet:
    """Run restarts from ``starts(r, count) -> codes`` until n samples or the budget."""
    collector = Collector(cfg.n)
    closest = common.Closest(cfg.k)
    restart = 0
    per_row = steps + 1
    why = ""
    while not collector.full:
        rows = min(cfg.k, budget.left // per_row)
        if rows < 1:
            why = (f"the budget of {budget.max} model evaluations ran out "
                   f"(a restart costs {per_row} per code)")
            break
        codes = starts(restart, rows)
        final, values = ascend(problem, codes, cfg, budget, steps=steps, target=target,
                               diversity=diversity, l2=l2)
        inside = problem.bands.feasible(values)
        collector.add(final[inside])
        closest.update(problem, final, values)
        restart += 1
        common.notify(callbacks, method, collector, budget)
    stats.update(restarts=restart, steps_per_restart=steps, target=target, diversity=diversity)
    return common.conclude(problem, cfg, t0, method, collector, budget, stats, device, dtype,
                           closest=closest, why_short=why)


def activation_max(problem: FeasibleSet, cfg: SamplerConfig, device, dtype, callbacks, t0, *,
                   target: str = "max", steps: int = 50, diversity: float = 0.0, l2: float = 0.0,
                   max_evals: Optional[int] = None, initial_codes: Optional[Tensor] = None):
    """Activation maximization with random restarts.

    Options:
        target: ``"max"`` (ascend the first constraint's value) or ``"band"`` (descend toward the
            middle of every band).
        steps: gradient steps per restart (``cfg.optimizer``, ``cfg.lr``).
        diversity: weight of Lucid's batch diversity term (mean cosine similarity of the
            embeddings within the batch, minimized).
        l2: Simonyan's L2 regularization weight on the codes.
        max_evals: budget of per-sample model evaluations (default ``200 * n``).
        initial_codes: ``(k, *code_shape)`` codes for the first restart.
    """
    _check_options(target, steps, diversity, l2)
    gen = common.generator(cfg)
    budget = Budget(max_evals, cfg)

    def starts(restart: int, rows: int) -> Tensor:
        if restart == 0 and initial_codes is not None:
            return common.given_codes(problem, initial_codes[:rows], device, dtype)
        return common.random_codes(problem, rows, gen, device, dtype)

    return _restarts(problem, cfg, callbacks, t0, "activation_max", device, dtype, starts, budget,
                     {}, steps=steps, target=target, diversity=diversity, l2=l2)


def _is_identity_decoder(problem: FeasibleSet, gen: torch.Generator, device, dtype,
                         budget: Budget) -> bool:
    """Whether codes are the inputs themselves (no generator): checked by decoding two prior
    codes (2 evaluations)."""
    if tuple(problem.code_shape) != tuple(problem.input_shape):
        return False
    probe = common.random_codes(problem, 2, gen, device, dtype)
    with torch.no_grad():
        x = problem.decode(probe)
    budget.spend(2)
    return tuple(x.shape) == tuple(probe.shape) and torch.equal(x.to(probe.dtype), probe)


def _select(problem: FeasibleSet, values: Tensor, target: str, count: int) -> Tensor:
    """Indices of the ``count`` inputs that activate the unit most / lie closest to the band."""
    if target == "max":
        score = values[:, 0]
    else:
        score = -common.band_loss(problem, values)
    score = torch.nan_to_num(score, nan=-math.inf)
    return torch.topk(score, count).indices


def multifaceted(problem: FeasibleSet, cfg: SamplerConfig, device, dtype, callbacks, t0, *,
                 real_inputs: Optional[Tensor] = None, target: str = "max", steps: int = 50,
                 diversity: float = 0.0, l2: float = 0.0, top: float = 0.1, pool: int = 2000,
                 facets: Optional[int] = None, kmeans_iters: int = 25, jitter: float = 0.05,
                 max_evals: Optional[int] = None, initial_codes: Optional[Tensor] = None):
    """Multifaceted feature visualization: activation maximization from cluster means.

    What it does:
      1. Candidate inputs: ``real_inputs`` when given (``(N, *input_shape)``), else the decoded
         images of ``pool`` codes drawn from the prior (``init_codes``).
      2. One forward pass of every candidate (``N`` evaluations); keep the fraction ``top`` (at
         least ``facets``) that activates the unit most (``target="max"``) or is closest to the
         middle of the band (``target="band"``).
      3. k-means of the kept candidates' embeddings into ``facets`` clusters (default ``k``);
         each cluster's mean *input* is a facet.
      4. Starting codes. Input-space problems (codes are inputs): the facet means, projected;
         later restarts add Gaussian noise of standard deviation ``jitter`` (times the box width)
         to them. Generator problems (encode is not part of the contract): ``pool`` prior codes
         are decoded (``pool`` evaluations, shared with step 1 when no real inputs are given) and
         restart ``r`` starts each facet from the code whose decoded image is the ``r``-th nearest
         to the facet's mean input.
      5. ``steps`` gradient steps per restart, as ``activation_max``; the final iterates inside
         the band are kept, until ``n`` samples or the budget.

    Every forward pass above (selection, decoding the pool, and decoding two prior codes to tell
    whether codes are inputs) is counted in ``model_evals``.
    """
    _check_options(target, steps, diversity, l2)
    reject = common.reject_initial_codes
    reject("multifaceted", initial_codes)
    facets = cfg.k if facets is None else int(facets)
    if facets < 1:
        raise ValueError(f"facets must be >= 1, got {facets}")
    if not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1], got {top!r}")
    gen = common.generator(cfg)
    budget = Budget(max_evals, cfg)
    identity = _is_identity_decoder(problem, gen, device, dtype, budget)
    pool_codes = pool_x = None

    def spend_upfront(count: int, what: str) -> None:
        if count > budget.left:
            raise ValueError(f"multifaceted: {what} needs {count} model evaluations, more than the "
                             f"budget max_evals={budget.max}; lower pool/real_inputs or raise max_evals")
        budget.spend(count)

    if real_inputs is not None:
        cand = torch.as_tensor(real_inputs).to(device=device, dtype=dtype)
        if tuple(cand.shape[1:]) != tuple(problem.input_shape):
            raise ValueError(f"real_inputs must have shape (N, *{tuple(problem.input_shape)}), "
                             f"got {tuple(cand.shape)}")
    else:
        pool_codes = common.random_codes(problem, int(pool), gen, device, dtype)
        with torch.no_grad():
            pool_x = problem.decode(pool_codes)
        cand = pool_x
    if cand.shape[0] < facets:
        raise ValueError(f"multifaceted needs at least facets={facets} candidate inputs, got {cand.shape[0]}")
    spend_upfront(int(cand.shape[0]), "measuring the candidate inputs")
    with torch.no_grad():
        m = problem.measure(cand)
    emb = m.embedding.reshape(cand.shape[0], -1) if m.embedding is not None else cand.reshape(cand.shape[0], -1)
    keep = _select(problem, m.values, target, max(facets, int(math.ceil(top * cand.shape[0]))))
    _, assign = kmeans(emb[keep], facets, gen, iters=kmeans_iters)
    kept = cand[keep].reshape(keep.shape[0], -1).to(torch.float64)
    sums = torch.zeros(facets, kept.shape[1], dtype=kept.dtype, device=kept.device).index_add_(0, assign, kept)
    means = sums / torch.bincount(assign, minlength=facets).clamp(min=1).to(kept.dtype)[:, None]

    if identity:
        means_codes = means.to(dtype).reshape(facets, *problem.code_shape)
        width = 1.0 if problem.box is None else float(problem.box[1] - problem.box[0])

        def starts(restart: int, rows: int) -> Tensor:
            order = torch.arange(restart * cfg.k, restart * cfg.k + rows) % facets
            base = means_codes[order.to(means_codes.device)]
            if restart > 0 and jitter > 0:
                noise = torch.randn(base.shape, generator=gen, dtype=dtype).to(device)
                base = base + jitter * width * noise
            return problem.project(base)
    else:
        if pool_codes is None:
            pool_codes = common.random_codes(problem, int(pool), gen, device, dtype)
            spend_upfront(int(pool), "decoding the pool of prior codes")
            with torch.no_grad():
                pool_x = problem.decode(pool_codes)
        dist = torch.cdist(means, pool_x.reshape(pool_x.shape[0], -1).to(torch.float64))
        ranked = torch.argsort(dist, dim=1)  # (facets, pool): nearest pool codes per facet

        def starts(restart: int, rows: int) -> Tensor:
            slot = torch.arange(restart * cfg.k, restart * cfg.k + rows)
            facet, rank = slot % facets, (slot // facets) % ranked.shape[1]
            return pool_codes[ranked[facet, rank]]

    stats = {"facets": facets, "candidates": int(cand.shape[0]), "selected": int(keep.shape[0]),
             "start_evals": budget.used, "codes_are_inputs": identity}
    return _restarts(problem, cfg, callbacks, t0, "multifaceted", device, dtype, starts, budget,
                     stats, steps=steps, target=target, diversity=diversity, l2=l2)
