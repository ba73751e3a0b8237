"""``SamplerConfig``: the settings of a run, built once; ``run``: those settings on a problem
(what ``fs.sample``, the one public entry point, calls).

A run's settings come in three typed parts, each defined once:

* ``SamplerConfig`` itself: the method, ``n``, ``k``, ``seed``, the diversity objective, device
  and dtype;
* ``seeding``: a ``SeedConfig`` (the shared seed phase: the augmented Lagrangian's ``ALConfig``
  fields plus ``optimizer``, ``lr``, ``seed_margin``), also used by the joint solve;
* ``options``: the method's own ``Config`` (``CoverConfig``, ``WalkConfig``, ``JointConfig``,
  a baseline's...), given as that dataclass or as a dict that is validated against it.

``fs.sample(problem, lr=0.1, max_outer=4, joint_until="converged", method="joint")`` routes each
flat keyword to the part whose field it names; an unknown keyword is refused with the valid ones.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import operator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Optional, Union

import torch
from torch import Tensor

from . import driver
from .diversity import Diversity, make_objective
from .options import check_options, option
from .problem import FeasibleSet
from .result import SampleSet
from .kernels import SAMPLERS, Sampler, check_keys, sampler_class
from .kernels.seeds import SeedConfig

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _count(name: str, value: Any) -> int:
    """An integer setting >= 1 (numpy and 0-d tensor integers accepted; bools and floats not)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    try:
        value = operator.index(value.item() if isinstance(value, Tensor) and value.dim() == 0 else value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SamplerConfig:
    """Every setting of a run (the Hydra ``sampler`` and ``objective`` groups mirror these fields).

    Attributes:
        method: a registered method name (``"smc"``, the default: adaptive multilevel
            splitting, samples of the prior restricted to the set and its probability
            ``log_prob``; ``"cover"``: seeds, then the covering walk, cheapest on slab-like sets;
            ``"walk"``, the paper's walk; ``"joint"``; the baselines), a ``Sampler`` subclass or
            instance.
        n: samples wanted; k: walkers (seeds) per round, ``1 <= k <= n``.
        seed: the run's seed (same seed, settings and device: same samples).
        objective: a registered objective name (``"sum_squared"``, eq. 5/6; ``"codes"``, eq. 13;
            ``"none"``, eq. 14; ``"repulsive"``) or a ``Diversity`` instance.
        diversity_weight, normalize, objective_options: passed to the objective's factory.
        seeding: the seed phase's settings (``SeedConfig``).
        options: the method's settings: its ``Config`` dataclass, or a dict validated against it.
        device: ``None`` (the problem's, else CPU), ``"cpu"``, ``"cuda"``...
        dtype: ``"float32"`` or ``"float64"``.
        initial_codes: starting codes instead of random ones, ``(k, *code_shape)`` for methods
            with a seed phase, ``(n, *code_shape)`` for the joint solve.

    Every field changes the law of a run unless its metadata says ``{"law": False}`` (``n``,
    ``device``, ``initial_codes``): a resume keeps the others (``feassample.rundir.resume``).
    """

    method: Any = "smc"
    n: int = field(default=500, metadata={"law": False})  # a resume may ask for more samples
    k: int = 10
    seed: int = 0
    objective: Union[str, Diversity] = "sum_squared"
    diversity_weight: float = option(1.0, ge=0)
    normalize: bool = True
    objective_options: Optional[dict] = None
    seeding: SeedConfig = field(default_factory=SeedConfig)
    options: Any = None
    device: Optional[str] = field(default=None, metadata={"law": False})
    dtype: str = option("float32", choices=tuple(DTYPES))
    initial_codes: Optional[Tensor] = field(default=None, compare=False, repr=False,
                                            metadata={"law": False, "record": False})

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("n", _count("n", self.n))
        set_("k", _count("k", self.k))
        if self.k > self.n:
            raise ValueError(f"k (walkers per round) must be <= n (samples wanted), got k={self.k} > n={self.n}")
        if isinstance(self.seed, bool) or isinstance(self.seed, float):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        try:
            set_("seed", operator.index(self.seed))
        except TypeError:
            raise ValueError(f"seed must be an integer, got {self.seed!r}") from None
        check_options(self)
        codes = self.initial_codes
        if codes is not None and not (isinstance(codes, Tensor) and codes.is_floating_point()):
            got = f"a {codes.dtype} tensor" if isinstance(codes, Tensor) else f"a {type(codes).__name__}"
            raise ValueError(f"initial_codes must be a real floating tensor (k, *code_shape), got {got}")
        if codes is not None and not bool(torch.isfinite(codes).all()):
            raise ValueError("initial_codes must be finite: they hold NaN or infinite entries")
        if isinstance(self.seeding, dict):
            check_keys("seeding", self.seeding, [f.name for f in fields(SeedConfig)])
            set_("seeding", SeedConfig(**self.seeding))
        elif not isinstance(self.seeding, SeedConfig):
            raise TypeError(f"seeding must be a SeedConfig or a dict, got {type(self.seeding).__name__}")
        cls = sampler_class(self.method)
        if isinstance(self.method, Sampler):
            built = self.method if self.options is None else cls(self.method.config, **dict(self.options))
        else:
            built = cls(self.options)
        set_("options", built.config)
        self.diversity()  # validates the objective

    # -- parts ------------------------------------------------------------------------------
    @classmethod
    def build(cls, base: Optional["SamplerConfig"] = None, **settings) -> "SamplerConfig":
        """``base`` (or the defaults) with ``settings`` applied; flat keywords that name a field of
        ``SeedConfig`` go to ``seeding``, those of the method's ``Config`` to ``options``."""
        if base is not None and not isinstance(base, cls):
            raise TypeError(f"config must be a SamplerConfig (fs.SamplerConfig(method=..., ...)) or None, "
                            f"got {base!r}")
        base = base or cls()
        own = {f.name for f in fields(cls)}
        direct = {k: v for k, v in settings.items() if k in own}
        rest = {k: v for k, v in settings.items() if k not in own}
        method = direct.get("method", base.method)
        method_cls = sampler_class(method)
        seed_fields = {f.name for f in fields(SeedConfig)}
        option_fields = {f.name for f in fields(method_cls.Config)}
        check_keys(f"fs.sample (method {method_cls.name!r})", rest,
                   sorted(own | seed_fields | option_fields))
        given = direct.pop("seeding", None)
        if isinstance(given, SeedConfig):
            seeding = asdict(given)
        elif isinstance(given, dict):
            check_keys("seeding", given, sorted(seed_fields))
            seeding = {**asdict(base.seeding), **given}
        else:
            seeding = asdict(base.seeding)
        seeding.update({k: v for k, v in rest.items() if k in seed_fields})
        options = direct.pop("options", None)
        if options is None and "method" not in direct and base.options is not None:
            options = asdict(base.options)
        if dataclasses.is_dataclass(options) and not isinstance(options, type):
            options = asdict(options)
        options = dict(options or {})
        options.update({k: v for k, v in rest.items() if k in option_fields and k not in seed_fields})
        return dataclasses.replace(base, **direct, seeding=SeedConfig(**seeding), options=options)

    @classmethod
    def from_record(cls, record: dict, **settings) -> "SamplerConfig":
        """The settings ``record()`` wrote (plain values: a method and an objective by their
        registered names), with ``settings`` replacing fields (``n=...``)."""
        return cls(**{**{f.name: record[f.name] for f in fields(cls) if f.name in record}, **settings})

    def sampler(self) -> Sampler:
        """A fresh sampler of this run's method with its options."""
        if isinstance(self.method, Sampler):
            return type(self.method)(self.options)
        return sampler_class(self.method)(self.options)

    @property
    def method_name(self) -> str:
        return sampler_class(self.method).name

    def diversity(self) -> Diversity:
        """The diversity objective of this run."""
        return make_objective(self.objective, self.diversity_weight, self.normalize, self.objective_options)

    def device_dtype(self, problem: FeasibleSet) -> tuple[torch.device, torch.dtype]:
        """The device and dtype the run works in (checked against the problem's model)."""
        dtype = DTYPES[self.dtype]
        home = getattr(problem, "device", None)
        try:
            device = torch.device(self.device) if self.device else (home or torch.device("cpu"))
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device={self.device!r} is not a device name (try 'cpu' or 'cuda'): {err}") from err
        if device.type == "meta":
            raise ValueError("device='meta' holds no data: sample on 'cpu' or 'cuda'")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} was asked for but CUDA is not available here")
        if home is not None and torch.device(home).type != device.type:
            raise ValueError(f"device={self.device!r} does not match the problem's model, which is on "
                             f"{home}: move the model (model.to(device)) or sample on {home}")
        return device, dtype

    def record(self) -> dict:
        """A JSON-able record of the settings (stored with samples and checkpoints): every field
        in order, less those whose metadata says ``record=False`` (``initial_codes``); the method
        and an objective by name, ``seeding`` and ``options`` as dicts of plain values."""
        plain = (int, float, str, bool, list, tuple, type(None))
        special = {
            "method": lambda v: self.method_name,
            "objective": lambda v: v if isinstance(v, str) else type(v).__name__,
            "seeding": asdict,
            "options": lambda v: {k: x for k, x in asdict(v).items() if isinstance(x, plain)},
        }
        return {f.name: special.get(f.name, lambda v: v)(getattr(self, f.name))
                for f in fields(self) if f.metadata.get("record", True)}


def _available_bytes(device: torch.device) -> Optional[int]:
    """Memory the run can use on ``device`` (free GPU memory; on CPU the smaller of the machine's
    available memory and a cgroup limit), or ``None`` when unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    found = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            found.append(int(text))
    return min(found) if found else None


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.3g} KiB"


def memory_estimate(problem: FeasibleSet, cfg: SamplerConfig, checkpoint: bool = False) -> int:
    """Bytes of the ``n x (code size + input size + m)`` sample buffers of a run, twice over (the
    result, or the checkpoint's copy, holds the rows again), three times with a checkpoint store."""
    code = math.prod(problem.code_shape)
    inputs = math.prod(getattr(problem, "input_shape", problem.code_shape) or problem.code_shape)
    itemsize = torch.empty((), dtype=DTYPES[cfg.dtype]).element_size()
    rows = cfg.n * (code + inputs + problem.bands.m) * itemsize
    return rows * (3 if checkpoint else 2)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0] or type(err).__name__


#: the fewest rows of the probe batch of ``validate`` (``max(k, PROBE_ROWS)``)
PROBE_ROWS = 16


def _probe_codes(problem: FeasibleSet, cfg: "SamplerConfig", rows: int, dtype, device) -> Tensor:
    """The probe batch: ``rows`` codes, the run's ``initial_codes`` (repeated to ``rows``) or
    draws of ``init_codes`` from a generator of its own."""
    if cfg.initial_codes is not None:  # the run starts there: probe those (already checked)
        codes = cfg.initial_codes[:rows].to(dtype=dtype, device=device)
        return codes.repeat((math.ceil(rows / codes.shape[0]),) + (1,) * (codes.dim() - 1))[:rows]
    try:
        codes = problem.init_codes(rows, torch.Generator().manual_seed(0), dtype, device)
    except Exception as err:  # noqa: BLE001  (user code: name where it failed)
        raise ValueError(f"problem.init_codes({rows}, ...) failed: {type(err).__name__}: "
                         f"{_first_line(err)}") from err
    want = (rows, *problem.code_shape)
    if not isinstance(codes, Tensor) or tuple(codes.shape) != want:
        got = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise ValueError(f"problem.init_codes({rows}, ...) returned {got}, expected a tensor of shape "
                         f"{want} ({rows} codes of code_shape {tuple(problem.code_shape)})")
    return codes


def _check_values(values, B: int, m: int, dtype, cfg: "SamplerConfig") -> None:
    if not isinstance(values, Tensor):
        raise TypeError(f"the constraint values must be a tensor (B, m) = ({B}, {m}), got "
                        f"{type(values).__name__}{' (torch.stack the list)' if isinstance(values, (list, tuple)) else ''}")
    if tuple(values.shape) != (B, m):
        raise ValueError(f"the constraint values have shape {tuple(values.shape)} for a batch of {B}, "
                         f"expected ({B}, {m}) for {m} band(s)")
    if not values.is_floating_point():
        raise TypeError(f"the constraint values are {values.dtype} for a batch of {B}, not floating "
                        f"point: they must be a differentiable function of the inputs")
    if values.dtype != dtype:
        raise TypeError(f"the constraint values are {str(values.dtype).replace('torch.', '')} but the "
                        f"run's dtype is {cfg.dtype} (a batch of {B}): return values in the inputs' dtype "
                        f"(h(x).to(x.dtype)){' or sample with dtype=' + repr('float64') if values.dtype == torch.float64 else ''}")


def validate(problem: FeasibleSet, cfg: SamplerConfig, sampler: Sampler, *,
             checkpoint: bool = False) -> None:
    """Refuse, with one line naming the cause, a run that would fail deep inside (or run on
    wrong numbers) because of what the user passed. Called by ``sample`` before any work.

    * memory: the estimate of ``memory_estimate`` against what the device has free;
    * a probe forward (and backward, for methods that follow gradients) on a real batch of
      ``max(k, PROBE_ROWS)`` initial codes (16 at least: a constraint that changes behaviour
      with the batch size is caught): ``decode`` returns a batch; ``measure`` returns a ``(B, m)``
      floating tensor of the run's dtype (a constraint returning a list, a scalar, int64 or
      float64 values in a float32 run... are named), an embedding with a batch dimension; the
      values have a gradient with respect to the codes (a ``detach``ed or ``argmax`` constraint
      has none);
    * the values of the batch's first and last rows measured again as a batch of 2 agree with
      the big batch's (to ``1e-3`` relative in float32, ``1e-6`` in float64): the certificate
      measures batches of other sizes, so values that depend on the batch are refused.
    The probe costs ``max(k, 16) + 2`` evaluations, not counted in ``n_evals``; it uses its own
    random generator and leaves the global random state untouched.
    """
    device, dtype = cfg.device_dtype(problem)
    need = memory_estimate(problem, cfg, checkpoint)
    have = _available_bytes(device)
    if have is not None and need > have:
        shards = math.ceil(need / have) + 1
        raise MemoryError(
            f"n={cfg.n} samples of code size {math.prod(problem.code_shape)} need about {_gib(need)} "
            f"(codes + inputs + values, {cfg.dtype}, with the result{' and checkpoint' if checkpoint else ''} "
            f"copies) but {device} has {_gib(have)} free: ask for fewer samples "
            f"(n <= {max(1, cfg.n * have // need)}) or split the run into jobs with "
            f"fs.sample(..., shard=i, shards={shards}) (CLI shard=i shards={shards}) and merge them "
            "with feassample-merge")
    gradients = sampler.uses_gradients
    devices = [device] if device.type == "cuda" else []
    m = problem.bands.m
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        codes = _probe_codes(problem, cfg, max(cfg.k, PROBE_ROWS), dtype, device)
        B = codes.shape[0]
        codes = codes.detach().clone().requires_grad_(gradients and codes.is_floating_point())
        try:
            x = problem.decode(codes)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"decoding {B} codes of code_shape {tuple(problem.code_shape)} failed (does "
                             f"code_shape match the decoder/generator's input?): "
                             f"{type(err).__name__}: {_first_line(err)}") from err
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != B:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"decode returned {got} for {B} codes: it must return a tensor "
                             f"(B, *input_shape) with the batch first")
        measured = problem.measure(x)
        values = getattr(measured, "values", None)
        _check_values(values, B, m, dtype, cfg)
        emb = measured.embedding
        if emb is not None and (not isinstance(emb, Tensor) or emb.dim() < 1 or emb.shape[0] != B):
            got = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
            raise ValueError(f"the embedding is {got} for a batch of {B}: it must be a tensor (B, p)")
        if gradients and codes.requires_grad:
            grad = None
            if values.requires_grad:
                grad = torch.autograd.grad(torch.nan_to_num(values, 0.0, 0.0, 0.0).sum(), codes,
                                           allow_unused=True)[0]
            if grad is None:
                raise ValueError(f"the constraint's values have no gradient with respect to the codes "
                                 f"(detach/argmax?): method {sampler.name!r} follows gradients; make h "
                                 "differentiable, or use a gradient-free method (method='rejection')")
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        ends = torch.tensor([0, B - 1], device=codes.device)
        again = problem.measure(problem.decode(codes.detach()[ends])).values
        _check_values(again, 2, m, dtype, cfg)
        big = values.detach()[ends]
        rtol = 1e-3 if dtype == torch.float32 else 1e-6
        close = (again - big).abs() <= rtol * (1.0 + big.abs())
        close |= torch.isnan(again) & torch.isnan(big)
        close |= torch.isinf(again) & (again == big)
        if not bool(close.all()):
            worst = float(torch.nan_to_num((again - big).abs(), nan=math.inf).max())
            raise ValueError(f"the constraint values depend on the batch: rows 0 and {B - 1} of a batch of "
                             f"{B} differ by up to {worst:.3g} from the same rows measured as a batch of 2 "
                             "(a model in train mode, batch statistics, a branch on x.shape[0]?); the "
                             "certificate measures other batch sizes, so h must act row by row")


def _check_callback(cb) -> None:
    """Refuse a callback that cannot be called as ``cb(phase, state, info)``."""
    if not callable(cb):
        raise TypeError(f"callbacks take (phase, state, info): got {cb!r}, which is not callable")
    try:
        inspect.signature(cb).bind("phase", None, {})
    except TypeError:
        raise TypeError(f"callbacks take (phase, state, info): {getattr(cb, '__name__', cb)!r} "
                        f"has the signature {inspect.signature(cb)}") from None
    except ValueError:  # no signature to read (a builtin): let the call tell
        pass


def run(problem: FeasibleSet, cfg: SamplerConfig, *, callbacks: Iterable = (),
        progress: bool = False, store=None, resume: Optional[driver.Checkpoint] = None) -> SampleSet:
    """Run the settings ``cfg`` (built once, by ``fs.sample``) on ``problem``: check the inputs
    before any work (``validate``), then ``driver.run``.

    Args:
        problem: a ``FeasibleSet`` (``fs.LogisticHalfspace``, ``fs.from_functions(...)``, ...).
        cfg: the run's ``SamplerConfig`` (``SamplerConfig.build(...)``).
        callbacks: callables ``(phase, state, info)`` run after each step.
        progress: show a tqdm progress bar.
        store, resume: a checkpoint store and a saved run to continue (``feassample.rundir``).

    Returns:
        A ``SampleSet`` whose ``feasible`` comes from ``problem.check`` (a fresh pass).
    """
    if not isinstance(problem, FeasibleSet):
        raise TypeError(f"problem must be a feassample FeasibleSet (e.g. fs.LogisticHalfspace or "
                        f"fs.from_functions(...)), got {type(problem).__name__}")
    if not isinstance(cfg, SamplerConfig):
        raise TypeError(f"cfg must be a SamplerConfig, got {type(cfg).__name__}")
    sampler = cfg.sampler()
    cfg.device_dtype(problem)
    initial_codes = cfg.initial_codes
    if initial_codes is not None:
        rows = {"k": cfg.k, "n": cfg.n}.get("k" if sampler.needs_seeds else sampler.initial_rows)
        if rows is None:
            raise ValueError(f"method {sampler.name!r} does not take initial_codes (it draws its own starts)")
        want = (rows, *problem.code_shape)
        if not isinstance(initial_codes, Tensor) or tuple(initial_codes.shape) != want:
            got = tuple(initial_codes.shape) if isinstance(initial_codes, Tensor) else type(initial_codes).__name__
            raise ValueError(f"initial_codes must be a tensor of shape {want}, got {got}")
    callbacks = list(callbacks)
    for cb in callbacks:
        _check_callback(cb)
    validate(problem, cfg, sampler, checkpoint=store is not None)
    return driver.run(problem, cfg, sampler, callbacks=callbacks, store=store, resume=resume,
                      progress=progress)


__all__ = ["SamplerConfig", "run", "validate", "memory_estimate", "DTYPES", "SAMPLERS"]
