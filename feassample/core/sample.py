"""``sample``: the one entry point. Seeds then the walk (default), or the joint solve."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Optional, Union

import torch
from torch import Tensor

from .diversity import Diversity, NoDiversity, SumSquaredDistances
from .lagrangian import ALConfig
from .problem import FeasibleSet
from .result import SampleSet
from .samplers import seeds as seeding
from .samplers import walk as walking
from .samplers.common import Loss, StepConfig, drive

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}

# Other samplers (baselines, variants) register here: name -> fn(problem, cfg, device, dtype,
# callbacks, t0, **options) -> SampleSet. The core's own methods are "walk" and "joint".
METHODS: dict = {}


def register_method(name: str, fn) -> None:
    """Make ``fs.sample(problem, method=name, ...)`` call ``fn`` (used by feassample.baselines)."""
    if name in ("walk", "joint"):
        raise ValueError(f"method name {name!r} is reserved")
    METHODS[name] = fn


@dataclass(frozen=True)
class SamplerConfig:
    """Every setting of a run (the Hydra ``sampler`` group mirrors these fields).

    Attributes:
        method: ``"cover"`` (default: seeds, then the covering walk, an MCMC walk whose samples
            are spread like uniform samples of the set; ``docs/coverage.md``), ``"walk"`` (seeds,
            then the paper's K-at-a-time walk), ``"joint"`` (eq. 5/15 over all n), or a
            registered method (the baselines).
        n: samples wanted; k: walkers (seeds) per round, ``1 <= k <= n``.
        seed: seed of the ``torch.Generator`` that draws the initial codes.
        objective: ``"sum_squared"`` (eq. 5/6), ``"codes"`` (eq. 13), ``"none"`` (eq. 14), or a
            ``Diversity`` instance (e.g. ``CodeObjective(fn)`` to minimize ``fn`` instead).
        diversity_weight: multiplier of the diversity term.
        normalize: divide the sum of squared distances by its number of terms.
        optimizer, lr: seed-phase step rule; walk_lr: the walk's step length (default ``lr``).
        seed_margin: fraction of the band's width kept free on each side by the seeds' target
            (0.5 is the paper's ``eps0 = eps/2``); walk_margin likewise for the walk's penalty.
        penalty0, growth, inner_steps, max_outer: augmented-Lagrangian settings (paper: 10, 10, 100).
        penalty_rule: ``"always"`` (paper) or ``"progress"`` (grow only without progress).
        lr_decay: step-length factor per outer iteration (1: constant).
        max_rounds: walk rounds before giving up (default ``10 * ceil((n - k) / k) + 50``).
        max_idle: walk rounds in a row without an accepted sample before giving up.
        joint_until: ``"feasible"`` (stop each row once inside) or ``"converged"`` (run the full
            augmented-Lagrangian budget, as the paper's Fig. 9 experiment).
        device: ``None`` (the problem's, else CPU), ``"cpu"``, ``"cuda"``...
        dtype: ``"float32"`` or ``"float64"``.
    """

    method: str = "cover"
    n: int = 500
    k: int = 10
    seed: int = 0
    objective: Union[str, Diversity] = "sum_squared"
    diversity_weight: float = 1.0
    normalize: bool = True
    optimizer: str = "adam"
    lr: float = 0.05
    walk_lr: Optional[float] = None
    seed_margin: float = 0.5
    walk_margin: Optional[float] = None
    penalty0: float = 10.0
    growth: float = 10.0
    inner_steps: int = 100
    max_outer: int = 8
    penalty_rule: str = "always"
    lr_decay: float = 1.0
    max_rounds: Optional[int] = None
    max_idle: Optional[int] = 200
    joint_until: str = "feasible"
    device: Optional[str] = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.method not in ("walk", "joint", *METHODS):
            raise ValueError(f"method must be one of {['walk', 'joint', *sorted(METHODS)]}, got {self.method!r}")
        for name in ("n", "k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.k > self.n:
            raise ValueError(f"k (walkers per round) must be <= n (samples wanted), got k={self.k} > n={self.n}")
        if not isinstance(self.objective, Diversity) and self.objective not in ("sum_squared", "codes", "none"):
            raise ValueError(f"objective must be 'sum_squared', 'codes' or 'none', got {self.objective!r}")
        if self.joint_until not in ("feasible", "converged"):
            raise ValueError(f"joint_until must be 'feasible' or 'converged', got {self.joint_until!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.walk_lr is not None and not self.walk_lr > 0:
            raise ValueError(f"walk_lr must be > 0, got {self.walk_lr}")
        if self.max_rounds is not None and self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {self.max_rounds}")
        if not (0 <= self.seed_margin < 1) or not (self.walk_margin is None or 0 <= self.walk_margin < 1):
            raise ValueError("seed_margin and walk_margin must be in [0, 1)")
        self.al()  # validates the augmented-Lagrangian fields
        self.step_rule()

    def al(self) -> ALConfig:
        return ALConfig(penalty0=self.penalty0, growth=self.growth, inner_steps=self.inner_steps,
                        max_outer=self.max_outer, penalty_rule=self.penalty_rule,
                        lr_decay=self.lr_decay)

    def step_rule(self, walk: bool = False) -> StepConfig:
        lr = self.walk_lr if (walk and self.walk_lr is not None) else self.lr
        return StepConfig(optimizer=self.optimizer, lr=lr)

    def diversity(self) -> Diversity:
        if isinstance(self.objective, Diversity):
            return self.objective
        if self.objective == "none":
            return NoDiversity()
        space = "codes" if self.objective == "codes" else "embedding"
        return SumSquaredDistances(self.diversity_weight, space, self.normalize)

    def rounds_budget(self) -> int:
        return self.max_rounds or 10 * math.ceil(max(self.n - self.k, 0) / self.k) + 50


def _resolve(problem: FeasibleSet, cfg: SamplerConfig) -> tuple[torch.device, torch.dtype]:
    if not isinstance(problem, FeasibleSet):
        raise TypeError(f"problem must be a feassample FeasibleSet (e.g. fs.LogisticHalfspace or "
                        f"fs.from_functions(...)), got {type(problem).__name__}")
    dtype = DTYPES[cfg.dtype]
    home = getattr(problem, "device", None)
    try:
        device = torch.device(cfg.device) if cfg.device else (home or torch.device("cpu"))
    except RuntimeError as err:
        raise ValueError(f"device={cfg.device!r} is not a device name (try 'cpu' or 'cuda'): {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} was asked for but CUDA is not available here")
    if home is not None and torch.device(home).type != device.type:
        raise ValueError(f"device={cfg.device!r} does not match the problem's model, which is on "
                         f"{home}: move the model (model.to(device)) or sample on {home}")
    return device, dtype


def finish(problem: FeasibleSet, codes: Tensor, stats: dict, cfg: SamplerConfig, t0: float) -> SampleSet:
    """The ``SampleSet`` of some codes: certified by ``problem.check`` (an independent pass),
    decoded, with ``stats`` completed (wall time, counts). Every method ends here."""
    with torch.no_grad():
        values, feasible = problem.check(codes)
        x = problem.decode(codes)
    stats["check_evals"] = stats.get("check_evals", 0) + int(codes.shape[0])
    stats["wall_s"] = time.perf_counter() - t0
    stats["n_returned"] = int(codes.shape[0])
    stats["certified_fraction"] = float(feasible.float().mean()) if codes.shape[0] else 0.0
    config = {"problem": problem.config(), "sampler": asdict(cfg)}
    return SampleSet(x.detach(), codes.detach(), values.detach(), feasible.detach(), stats, config)


def interrupted_seeding(problem, state: seeding.SeedState, usable: Tensor, stats: dict,
                        cfg: SamplerConfig, callbacks, t0: float) -> SampleSet:
    """Ctrl-C while seeding: let the callbacks keep the seeding state (for a resume) and return
    the seeds that are inside the band, with status ``"interrupted"``."""
    for cb in callbacks:
        cb("seed_final", state)
    stats.update(walk_steps=0, walk_evals=0, model_evals=state.model_evals, status="interrupted",
                 message=(f"interrupted while seeding ({int(usable.sum())} of {cfg.k} seeds "
                          "inside the band); resume to continue"))
    log.warning(stats["message"])
    return finish(problem, state.codes[usable], stats, cfg, t0)


def _infeasible(problem, state: seeding.SeedState, stats: dict, cfg, t0) -> SampleSet:
    best = float(state.best_violation.min())
    stats.update(status="infeasible", message=(
        f"no starting point reached the band within {state.steps} steps ({state.outer} outer "
        f"iterations); the closest came within {best:.4g} of it ({problem.bands.describe()}). "
        "The band may be unreachable: widen it, or raise sampler.max_outer."))
    log.warning(stats["message"])
    order = torch.argsort(state.best_violation)
    return finish(problem, state.best_codes[order], stats, cfg, t0)


def sample(problem: FeasibleSet, n: int = 500, k: int = 10, *, seed: int = 0,
           config: Optional[SamplerConfig] = None, callbacks: Iterable = (),
           progress: bool = False, options: Optional[dict] = None,
           initial_codes: Optional[Tensor] = None, resume_state: Optional[dict] = None,
           **settings) -> SampleSet:
    """Sample ``n`` certified points of a feasible set.

    Args:
        problem: a ``FeasibleSet`` (``fs.LogisticHalfspace``, ``fs.from_functions(...)``, ...).
        n: samples wanted. k: walkers per round (the paper's K).
        seed: seed of the run's ``torch.Generator`` (same seed, config and device: same samples).
        config: a full ``SamplerConfig``; keyword ``settings`` override its fields
            (``method="joint"``, ``objective="none"``, ``lr=0.1``, ``dtype="float64"``...).
        callbacks: callables ``(phase, state)`` run after each step (progress, checkpoints).
        progress: show a tqdm progress bar.
        options: extra keyword arguments for a registered method (``register_method``).
        initial_codes: starting codes, ``(k, *code_shape)`` (``(n, ...)`` for the joint solve),
            instead of random ones (e.g. all equal, for the paper's Fig. 8 ablation).
        resume_state: a saved sampler state to continue from (``{"phase": "seed", "seed": state}``
            or ``{"phase": "walk", "walk": state, "stats": dict}``; see ``feassample.io``).

    Returns:
        A ``SampleSet`` whose ``feasible`` comes from ``problem.check`` (a fresh pass), with
        ``stats["status"]`` ``"success"`` (n certified samples), ``"partial"`` (fewer) or
        ``"infeasible"`` (none; the best iterates are returned, closest first).
    """
    cfg = replace(config or SamplerConfig(), n=n, k=k, seed=seed, **settings)
    options = dict(options or {})
    if initial_codes is not None:
        rows = cfg.n if cfg.method == "joint" else cfg.k
        want = (rows, *problem.code_shape)
        if not isinstance(initial_codes, Tensor) or tuple(initial_codes.shape) != want:
            got = tuple(initial_codes.shape) if isinstance(initial_codes, Tensor) else type(initial_codes).__name__
            raise ValueError(f"initial_codes must be a tensor of shape {want}, got {got}")
        options["initial_codes"] = initial_codes
    device, dtype = _resolve(problem, cfg)
    t0 = time.perf_counter()
    callbacks = list(callbacks)
    bar = None
    if progress:
        from .callbacks import ProgressBar
        bar = ProgressBar(cfg.n)
        callbacks.append(bar)
    try:
        if cfg.method == "joint":
            return _joint(problem, cfg, device, dtype, callbacks, t0, options.get("initial_codes"))
        if cfg.method in METHODS:
            return METHODS[cfg.method](problem, cfg, device, dtype, callbacks, t0, **options)
        return _seeds_and_walk(problem, cfg, device, dtype, callbacks, t0,
                               options.get("initial_codes"), resume_state)
    finally:
        if bar is not None:
            bar.close()


def _initial_codes(problem, count, cfg, device, dtype, given: Optional[Tensor] = None) -> Tensor:
    if given is not None:
        return problem.project(given.detach().to(device=device, dtype=dtype).clone())
    generator = torch.Generator(device="cpu").manual_seed(int(cfg.seed))
    codes = problem.init_codes(count, generator, dtype=dtype, device=device)
    return problem.project(codes.to(device=device, dtype=dtype))


def _seeds_and_walk(problem, cfg: SamplerConfig, device, dtype, callbacks, t0,
                    initial: Optional[Tensor] = None, resume: Optional[dict] = None) -> SampleSet:
    al, bands = cfg.al(), problem.bands
    objective = cfg.diversity()
    walk_margin = cfg.seed_margin if cfg.walk_margin is None else cfg.walk_margin
    walk_loss = Loss(problem, objective, bands.shrink(walk_margin))
    resume = resume or {}
    interrupted = False
    if resume.get("phase") == "walk":
        stats = dict(resume["stats"], n_requested=cfg.n, resumed=True)
        wstate = walking.resize(resume["walk"], cfg.n)
        seed_evals = int(stats.get("seed_evals", 0))
    else:
        seed_loss = Loss(problem, objective, bands.shrink(cfg.seed_margin))
        state = resume.get("seed") or seeding.init(
            _initial_codes(problem, cfg.k, cfg, device, dtype, initial), bands.m, al)
        try:
            state = drive(state, lambda s: seeding.step(s, seed_loss, bands, al, cfg.step_rule()),
                          lambda s: seeding.done(s, al), "seed", callbacks)
        except KeyboardInterrupt:
            interrupted = True
        seeding.refresh(state, seed_loss)
        stats = {"method": "walk", "n_requested": cfg.n, "k": cfg.k, "seed_steps": state.steps,
                 "seed_outer": state.outer, "seed_evals": state.model_evals,
                 **{f"seed_{k}": v for k, v in seeding.residual_report(state, seed_loss).items()}}
        if bool(resume):
            stats["resumed"] = True
        usable = bands.feasible(state.values)
        stats["seeds_accepted"] = int(usable.sum())
        seed_evals = state.model_evals
        if interrupted:
            return interrupted_seeding(problem, state, usable, stats, cfg, callbacks, t0)
        if not bool(usable.any()):
            stats.update(walk_steps=0, walk_evals=0, model_evals=state.model_evals)
            return _infeasible(problem, state, stats, cfg, t0)
        idx = usable.nonzero().squeeze(1)
        wstate = walking.init(state.codes[idx], state.values[idx], state.embedding[idx],
                              state.multipliers[idx], state.penalty[idx], cfg.n)
        for cb in callbacks:
            cb("walk_start", (wstate, dict(stats)))
    move = cfg.step_rule(walk=True)
    budget = cfg.rounds_budget()
    rejected = int(stats.get("rejected_by_check", 0))
    checked = int(stats.get("check_evals", 0))
    for _attempt in range(3):
        if interrupted:
            break
        try:
            wstate = drive(wstate, lambda s: walking.step(s, walk_loss, bands, move),
                           lambda s: walking.done(s, budget, cfg.max_idle), "walk", callbacks)
        except KeyboardInterrupt:
            interrupted = True
        # Certify every accepted sample by an independent pass; replace the ones that fail.
        _, ok = problem.check(wstate.sample_codes[: wstate.accepted])
        checked += int(wstate.accepted)
        if bool(ok.all()):
            break
        rejected += int((~ok).sum())
        wstate = walking.drop(wstate, ok)
        for cb in callbacks:
            cb("walk_rebase", wstate)
        if walking.done(wstate, budget, cfg.max_idle):
            break
    stats.update(walk_steps=wstate.rounds, walk_evals=wstate.model_evals,
                 model_evals=seed_evals + wstate.model_evals, check_evals=checked,
                 rejected_by_check=rejected, nan_walkers=int((~wstate.alive).sum()),
                 walk_steps_min=math.ceil(max(cfg.n - stats["seeds_accepted"], 0) / cfg.k))
    codes = wstate.sample_codes[: wstate.accepted]
    if interrupted:
        stats.update(status="interrupted", message=(
            f"interrupted with {wstate.accepted} of {cfg.n} samples; resume to continue"))
        log.warning(stats["message"])
    elif wstate.accepted >= cfg.n:
        stats.update(status="success", message=f"{cfg.n} samples, all certified inside the band")
    else:
        if not bool(wstate.alive.any()):
            why = "every walker's model output became NaN or infinite"
        elif cfg.max_idle is not None and wstate.idle_rounds >= cfg.max_idle:
            why = f"the walk stalled ({cfg.max_idle} rounds without a new sample)"
        else:
            why = f"the round budget ({budget}) ran out"
        stats.update(status="partial", message=(
            f"{wstate.accepted} of {cfg.n} samples: {why}. Raise sampler.max_rounds, lower "
            "sampler.walk_lr, or widen the band."))
        log.warning(stats["message"])
    if stats["nan_walkers"]:
        stats["message"] += f" ({stats['nan_walkers']} walker(s) stopped: non-finite model output)"
    return finish(problem, codes, stats, cfg, t0)


def _joint(problem, cfg: SamplerConfig, device, dtype, callbacks, t0,
           initial: Optional[Tensor] = None) -> SampleSet:
    al, bands = cfg.al(), problem.bands
    loss = Loss(problem, cfg.diversity(), bands.shrink(cfg.seed_margin))
    freeze = cfg.joint_until == "feasible"
    state = seeding.init(_initial_codes(problem, cfg.n, cfg, device, dtype, initial), bands.m, al)

    def finished(s):
        if freeze:
            return seeding.done(s, al)
        return seeding.budget_spent(s, al)

    state = drive(state, lambda s: seeding.step(s, loss, bands, al, cfg.step_rule(), freeze=freeze),
                  finished, "joint", callbacks)
    seeding.refresh(state, loss)
    stats = {"method": "joint", "n_requested": cfg.n, "seed_steps": state.steps, "joint_steps": state.steps,
             "seed_outer": state.outer, "walk_steps": 0, "model_evals": state.model_evals,
             **{f"joint_{k}": v for k, v in seeding.residual_report(state, loss).items()}}
    inside = bands.feasible(state.values)
    if not bool(inside.any()):
        return _infeasible(problem, state, stats, cfg, t0)
    codes = state.codes[inside]
    status = "success" if bool(inside.all()) else "partial"
    stats.update(status=status, message=f"{int(inside.sum())} of {cfg.n} rows inside the band")
    return finish(problem, codes, stats, cfg, t0)


# The covering walk lives in samplers/cover.py and registers like any plug-in method.
from .samplers.cover import run_cover as _run_cover  # noqa: E402

register_method("cover", _run_cover)
