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
input (see ``Multifaceted`` for generator problems).

One ``step`` is one gradient step of the current batch (a restart is ``steps`` of them); the
step that ends a restart also measures its final iterates and keeps those inside the band.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from ..core.problem import FeasibleSet
from ..core.options import check_options, option
from . import common
from .common import Baseline, BaselineState
from .kmeans import kmeans

TARGETS = ("max", "band")


@dataclass(frozen=True)
class ActivationConfig:
    """Options of ``method="activation_max"``.

    Attributes:
        target: ``"max"`` (ascend the first constraint's value) or ``"band"`` (descend toward the
            middle of every band).
        steps: gradient steps per restart (the run's ``optimizer`` and ``lr``).
        diversity: weight of Lucid's batch diversity term (mean cosine similarity of the
            embeddings within the batch, minimized).
        l2: Simonyan's L2 regularization weight on the codes.
        max_evals: budget of per-sample model evaluations (default ``200 * n``).

    ``initial_codes`` ``(k, *code_shape)`` (a setting of the run) start the first restart.
    """

    target: str = option("max", choices=TARGETS)
    steps: int = option(50, ge=1)
    diversity: float = option(0.0, ge=0)
    l2: float = option(0.0, ge=0)
    max_evals: Optional[int] = option(None, ge=1)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class MultifacetedConfig:
    """Options of ``method="multifaceted"`` (see ``Multifaceted`` for what each does).

    Attributes:
        real_inputs: ``(N, *input_shape)`` candidate inputs (default: ``pool`` decoded prior codes).
        target, steps, diversity, l2, max_evals: as for ``activation_max``.
        top: fraction of the candidates kept for clustering (at least ``facets``), in ``(0, 1]``.
        pool: prior codes drawn (and decoded) when there are no real inputs, or to start a
            generator problem's facets from.
        facets: clusters (default ``k``).
        kmeans_iters: Lloyd iterations of the k-means.
        jitter: noise (times the box width) added to the facet means after the first restart
            (input-space problems).
    """

    real_inputs: Optional[Any] = field(default=None, compare=False, repr=False)
    target: str = option("max", choices=TARGETS)
    steps: int = option(50, ge=1)
    diversity: float = option(0.0, ge=0)
    l2: float = option(0.0, ge=0)
    top: float = option(0.1, gt=0, le=1)
    pool: int = option(2000, ge=1)
    facets: Optional[int] = option(None, ge=1)
    kmeans_iters: int = option(25, ge=1)
    jitter: float = option(0.05, ge=0)
    max_evals: Optional[int] = option(None, ge=1)

    def __post_init__(self) -> None:
        check_options(self)
        if self.real_inputs is not None and not isinstance(self.real_inputs, Tensor):
            try:
                torch.as_tensor(self.real_inputs)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ValueError(f"real_inputs must be a tensor (N, *input_shape), got "
                                 f"{type(self.real_inputs).__name__}: {err}") from None


def _objective(problem: FeasibleSet, values: Tensor, target: str) -> Tensor:
    """Per-row loss to descend: ``-h_0`` (ascend the unit) or the pull to the band's middle."""
    if target == "max":
        return -values[:, 0]
    return common.band_loss(problem, values)


@dataclass
class AscentState(BaselineState):
    """A restart in progress: ``codes`` (``None`` between restarts), the gradient steps it has
    taken and its optimizer's state (``torch.optim``'s per-parameter state, e.g. Adam's moments).

    Attributes:
        restarts: restarts finished.
    """

    restarts: int = 0
    codes: Optional[Tensor] = None
    taken: int = 0
    optim: Optional[dict] = None


class _Ascent(Baseline):
    """Restarts of ``steps`` gradient steps; subclasses say where a restart starts (``starts``)."""

    state_class = AscentState

    @property
    def per_row(self) -> int:
        return self.config.steps + 1  # the steps, then one forward pass at the final iterate

    def starts(self, state: AscentState, restart: int, rows: int, gen: torch.Generator) -> Tensor:
        raise NotImplementedError

    def done(self, state: AscentState) -> bool:
        return state.samples.full or (state.codes is None and self.left(state) // self.per_row < 1)

    def why_short(self, state: AscentState) -> str:
        return (f"the budget of {state.max_evals} model evaluations ran out ({self.name}: a restart "
                f"costs {self.per_row} per code)")

    def _optimizer(self, codes: Tensor, saved: Optional[dict]) -> torch.optim.Optimizer:
        rule = self.run.seeding
        if rule.optimizer == "adam":
            opt = torch.optim.Adam([codes], lr=rule.lr)
        else:
            opt = torch.optim.SGD([codes], lr=rule.lr)
        if saved:
            opt.load_state_dict({"state": {0: saved}, "param_groups": opt.state_dict()["param_groups"]})
        return opt

    def step(self, state: AscentState) -> tuple[AscentState, dict]:
        cfg, problem = self.config, self.problem
        if state.codes is None:  # a new restart
            rows = min(self.run.k, self.left(state) // self.per_row)
            with self.generator(state) as gen:
                state.codes = self.starts(state, state.restarts, rows, gen).detach().clone()
            state.taken, state.optim = 0, None
        codes = state.codes.detach().clone().requires_grad_(True)
        opt = self._optimizer(codes, state.optim)
        b = codes.shape[0]
        m, x = common.measure(problem, codes)
        loss = _objective(problem, m.values, cfg.target).sum()
        if cfg.diversity > 0:
            loss = loss + cfg.diversity * b * common.mean_cosine(common.embedding_of(problem, m, x, codes))
        if cfg.l2 > 0:
            loss = loss + cfg.l2 * (codes.reshape(b, -1) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            codes.copy_(problem.project(codes))
        self.spend(state, b)
        state.taken += 1
        saved = opt.state_dict()["state"].get(0)
        state.optim = {k: v for k, v in saved.items() if v is not None} if saved else None
        state.codes = codes.detach()
        info = {"restart": state.restarts, "step": state.taken}
        if state.taken < cfg.steps:
            return state, info
        # the restart's last step: measure the final iterates, keep those inside the band
        final = state.codes
        with torch.no_grad():
            values = common.measure(problem, final)[0].values.detach()
        self.spend(state, b)
        inside = problem.bands.feasible(values)
        info["accepted"] = self.accept(state, final[inside], values[inside])
        self.consider(state, final, values)
        state.restarts += 1
        state.rounds += 1
        state.codes, state.taken, state.optim = None, 0, None
        return state, info

    def method_stats(self, state: AscentState) -> dict:
        return {"restarts": state.restarts, "steps_per_restart": self.config.steps,
                "target": self.config.target, "diversity": self.config.diversity}


class ActivationMax(_Ascent):
    """Activation maximization with random restarts (``method="activation_max"``)."""

    name = "activation_max"
    Config = ActivationConfig
    initial_rows = "k"

    def init(self, problem, run, key: int, seeds=None) -> AscentState:
        return AscentState(**self.start(problem, run, key))

    def starts(self, state: AscentState, restart: int, rows: int, gen: torch.Generator) -> Tensor:
        if restart == 0 and self.run.initial_codes is not None:
            given = self.run.initial_codes[:rows].detach().to(device=self.device, dtype=self.dtype).clone()
            return self.problem.project(given)
        return common.random_codes(self.problem, rows, gen, self.device, self.dtype)


@dataclass
class MultifacetedState(AscentState):
    """``AscentState`` plus the facets: their mean codes (codes are inputs), or the pool of prior
    codes and, per facet, the pool ranked by distance of the decoded image to the facet's mean."""

    means: Optional[Tensor] = None
    pool_codes: Optional[Tensor] = None
    ranked: Optional[Tensor] = None
    facets: int = 0
    candidates: int = 0
    selected: int = 0
    start_evals: int = 0
    codes_are_inputs: bool = False


def _select(problem: FeasibleSet, values: Tensor, target: str, count: int) -> Tensor:
    """Indices of the ``count`` inputs that activate the unit most / lie closest to the band."""
    if target == "max":
        score = values[:, 0]
    else:
        score = -common.band_loss(problem, values)
    score = torch.nan_to_num(score, nan=-math.inf)
    return torch.topk(score, count).indices


class Multifaceted(_Ascent):
    """Multifaceted feature visualization: activation maximization from cluster means
    (``method="multifaceted"``).

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
    whether codes are inputs) is counted in ``model_evals``. Steps 1-4 happen in ``init``.
    """

    name = "multifaceted"
    Config = MultifacetedConfig
    state_class = MultifacetedState

    def init(self, problem, run, key: int, seeds=None) -> MultifacetedState:
        cfg = self.config
        state = MultifacetedState(**self.start(problem, run, key))
        device, dtype = self.device, self.dtype
        facets = run.k if cfg.facets is None else int(cfg.facets)
        pool_codes = pool_x = None

        def spend_upfront(count: int, what: str) -> None:
            if count > self.left(state):
                raise ValueError(f"multifaceted: {what} needs {count} model evaluations, more than the "
                                 f"budget max_evals={state.max_evals}; lower pool/real_inputs or raise max_evals")
            self.spend(state, count)

        with self.generator(state) as gen:
            identity = self._is_identity_decoder(state, gen)
            if cfg.real_inputs is not None:
                cand = torch.as_tensor(cfg.real_inputs).to(device=device, dtype=dtype)
                if tuple(cand.shape[1:]) != tuple(problem.input_shape):
                    raise ValueError(f"real_inputs must have shape (N, *{tuple(problem.input_shape)}), "
                                     f"got {tuple(cand.shape)}")
            else:
                pool_codes = common.random_codes(problem, cfg.pool, gen, device, dtype)
                with torch.no_grad():
                    pool_x = problem.decode(pool_codes)
                cand = pool_x
            if cand.shape[0] < facets:
                raise ValueError(f"multifaceted needs at least facets={facets} candidate inputs, "
                                 f"got {cand.shape[0]}")
            spend_upfront(int(cand.shape[0]), "measuring the candidate inputs")
            with torch.no_grad():
                m = problem.measure(cand)
            emb = (m.embedding.reshape(cand.shape[0], -1) if m.embedding is not None
                   else cand.reshape(cand.shape[0], -1))
            keep = _select(problem, m.values, cfg.target, max(facets, int(math.ceil(cfg.top * cand.shape[0]))))
            _, assign = kmeans(emb[keep], facets, gen, iters=cfg.kmeans_iters)
            kept = cand[keep].reshape(keep.shape[0], -1).to(torch.float64)
            sums = torch.zeros(facets, kept.shape[1], dtype=kept.dtype, device=kept.device).index_add_(0, assign, kept)
            means = sums / torch.bincount(assign, minlength=facets).clamp(min=1).to(kept.dtype)[:, None]
            if identity:
                state.means = means.to(dtype).reshape(facets, *problem.code_shape)
            else:
                if pool_codes is None:
                    pool_codes = common.random_codes(problem, cfg.pool, gen, device, dtype)
                    spend_upfront(cfg.pool, "decoding the pool of prior codes")
                    with torch.no_grad():
                        pool_x = problem.decode(pool_codes)
                dist = torch.cdist(means, pool_x.reshape(pool_x.shape[0], -1).to(torch.float64))
                state.pool_codes = pool_codes
                state.ranked = torch.argsort(dist, dim=1)  # (facets, pool): nearest pool codes per facet
        state.facets, state.candidates, state.selected = facets, int(cand.shape[0]), int(keep.shape[0])
        state.start_evals, state.codes_are_inputs = state.used, identity
        return state

    def _is_identity_decoder(self, state: MultifacetedState, gen: torch.Generator) -> bool:
        """Whether codes are the inputs themselves (no generator): checked by decoding two prior
        codes (2 evaluations)."""
        problem = self.problem
        if tuple(problem.code_shape) != tuple(problem.input_shape):
            return False
        probe = common.random_codes(problem, 2, gen, self.device, self.dtype)
        with torch.no_grad():
            x = problem.decode(probe)
        self.spend(state, 2)
        return tuple(x.shape) == tuple(probe.shape) and torch.equal(x.to(probe.dtype), probe)

    def starts(self, state: MultifacetedState, restart: int, rows: int, gen: torch.Generator) -> Tensor:
        k, facets = self.run.k, state.facets
        if state.codes_are_inputs:
            order = torch.arange(restart * k, restart * k + rows) % facets
            base = state.means[order.to(state.means.device)]
            jitter = self.config.jitter
            if restart > 0 and jitter > 0:
                box = self.problem.box
                width = 1.0 if box is None else float(box[1] - box[0])
                noise = torch.randn(base.shape, generator=gen, dtype=self.dtype).to(self.device)
                base = base + jitter * width * noise
            return self.problem.project(base)
        slot = torch.arange(restart * k, restart * k + rows)
        facet, rank = slot % facets, (slot // facets) % state.ranked.shape[1]
        return state.pool_codes[state.ranked[facet, rank]]

    def method_stats(self, state: MultifacetedState) -> dict:
        return {**super().method_stats(state), "facets": state.facets, "candidates": state.candidates,
                "selected": state.selected, "start_evals": state.start_evals,
                "codes_are_inputs": state.codes_are_inputs}


__all__ = ["ActivationConfig", "MultifacetedConfig", "AscentState", "MultifacetedState",
           "ActivationMax", "Multifaceted", "TARGETS"]
