"""The Hydra application: compose the config, build the problem, sample, write the outputs.

Each run writes into Hydra's output directory (``outputs/DATE/TIME`` or ``multirun/...``):
``samples/`` (the ``SampleSet``), ``metrics.json`` and ``plot.png``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .schemas import register
from ..core.problem import FeasibleSet
from ..core.result import DiskFull, SampleSet, atomic_write_bytes
from ..api import sample
from ..core.diversity import Diversity
from ..core.kernels import Sampler
from ..core.sampling import SamplerConfig
from ..models.files import load_object

log = logging.getLogger("feassample")
register()


MODEL_KINDS = ("torchvision", "timm", "exported", "torchscript")
#: keys of a model config that go to the loader (the digits config's neuron defaults do not)
DIGITS_PROBLEM_KEYS = ("generator", "encoder", "neuron", "intersection")
#: generator names of feassample.models.params, built for the model's input shape and range
PARAMETRIZATIONS = ("fourier", "pixels")


def _model_kind(node) -> str:
    """``digits``, ``file`` or one of ``MODEL_KINDS`` for a composed ``model`` node."""
    keys = set(node.keys())  # ("key" in node is False for a missing ??? value)
    if "kind" in keys and node.get("kind") in MODEL_KINDS:
        return str(node.kind)
    return "file" if "state_dict" in keys else "digits"


def _required(node, keys: tuple, kind: str) -> None:
    for key in keys:
        if OmegaConf.is_missing(node, key):
            raise ValueError(f"model={kind} needs model.{key}=... (see conf/model/{kind}.yaml)")


def build_model(cfg: DictConfig, base: Path):
    """The model of the ``model`` group (file paths resolved against ``base``)."""
    if cfg.get("model") is None:
        raise ValueError("this problem needs a model: add model=digits or model=file ...")
    node = cfg.model
    kind = _model_kind(node)
    from ..models.formats import load_model
    if kind in MODEL_KINDS:
        _required(node, ("arch", "weights") if kind in ("torchvision", "timm") else ("path",), kind)
        fields = OmegaConf.to_container(node, resolve=True)
        fields.pop("kind")
        return load_model(kind, **fields, base=base)
    if kind == "file":
        _required(node, ("cls", "state_dict"), "file")
        fields = OmegaConf.to_container(node, resolve=True)
        fields.pop("_target_", None)
        return load_model("file", cls=fields.pop("cls"), weights=fields.pop("state_dict"),
                          **fields, base=base)
    fields = OmegaConf.to_container(node, resolve=True)
    for key in DIGITS_PROBLEM_KEYS:
        fields.pop(key, None)
    return instantiate(_own_target(fields, "model"))


def _band(value, where: str) -> tuple[float, float]:
    """``(z1, z2)`` from a ``[z1, z2]`` config value, checked."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where} must be [z1, z2] (two numbers), got {value!r}")
    z1, z2 = float(value[0]), float(value[1])
    if math.isnan(z1) or math.isnan(z2) or z1 > z2:
        raise ValueError(f"{where} must be [z1, z2] with z1 <= z2, got {value!r}")
    return z1, z2


def _is_slot(entry) -> bool:
    """An empty ``units`` entry of a preset (every field null), there for ``problem.units.N.*``."""
    return isinstance(entry, dict) and all(v is None for v in entry.values())


def neuron_units(cfg: DictConfig) -> list[tuple[Optional[str], Any, float, float]]:
    """``(layer, unit, z1, z2)`` for each unit of ``problem=neuron|intersection``, from
    ``problem.unit``/``problem.band`` (one unit), ``problem.units`` (strings or entries) with
    ``problem.bands`` or the shared ``problem.band``, or, when none is given, the model config's
    example (only ``model=digits`` has one). Checked from the config alone: no model is loaded."""
    from .schemas import UnitSchema
    from ..problems.neuron import parse_unit

    node = OmegaConf.to_container(cfg.problem, resolve=True)
    kind = node.get("kind", "neuron")
    model = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") is not None else {}
    entries = [e for e in (node.get("units") or []) if not _is_slot(e)]
    single, shared, bands = node.get("unit"), node.get("band"), node.get("bands")
    if single is not None and entries:
        raise ValueError("give problem.unit (one unit) or problem.units (several), not both")
    if single is None and not entries and shared is None and bands is None:
        example = model.get(kind) if isinstance(model.get(kind), dict) else {}
        entries, shared = list(example.get("units") or []), example.get("band")
    if single is None and not entries:
        raise ValueError(
            f"problem={kind} needs " + ("a unit: problem.unit=LAYER:N 'problem.band=[z1,z2]' "
                                        "(e.g. problem.unit=layer4:17)" if kind == "neuron" else
                                        "units: 'problem.units=[LAYER:N,LAYER:M]' "
                                        "'problem.band=[z1,z2]' (or problem.bands, one per unit)"))
    if single is not None:
        if bands is not None:
            raise ValueError("problem.bands goes with problem.units: give problem.unit's band as "
                             "problem.band=[z1,z2]")
        entries = [single]
    if bands is not None and len(bands) != len(entries):
        raise ValueError(f"problem.bands has {len(bands)} bands for {len(entries)} units: give "
                         f"one [z1, z2] per unit")
    keys = {f.name for f in dataclasses.fields(UnitSchema)}
    out = []
    for i, entry in enumerate(entries):
        where = "problem.unit" if single is not None else f"problem.units.{i}"
        layer, own = None, None
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - keys)
            if unknown:
                raise ValueError(f"{where} has unknown keys {unknown}: valid keys are "
                                 f"{sorted(keys)}")
            layer, unit = entry.get("layer"), entry.get("unit")
            if unit is None:
                raise ValueError(f"{where} needs unit: a 'layer:n' string (e.g. unit: 'layer4:17')")
            if entry.get("band") is not None:
                own = _band(entry["band"], f"{where}.band")
            if entry.get("z1") is not None or entry.get("z2") is not None:
                if own is not None:
                    raise ValueError(f"{where} has both band and z1/z2: give one of them")
                own = _band([entry.get("z1"), entry.get("z2")], f"{where}.z1/z2")
        else:
            unit = entry
        if isinstance(unit, str):
            try:
                parse_unit(unit)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        elif isinstance(unit, list) and unit and all(isinstance(v, int) for v in unit):
            unit = tuple(unit)
        elif not (isinstance(unit, int) and not isinstance(unit, bool)):
            raise ValueError(f"{where} must be a 'layer:n[:y:x]' string (e.g. layer4:17), got "
                             f"{unit!r}")
        if not isinstance(unit, str) and layer is None:
            raise ValueError(f"{where}: unit {unit!r} needs its layer: write it as "
                             f"'LAYER:{unit if isinstance(unit, int) else ':'.join(map(str, unit))}'")
        if own is None:
            if bands is not None:
                own = _band(bands[i], f"problem.bands.{i}")
            elif shared is not None:
                own = _band(shared, "problem.band")
            else:
                raise ValueError(f"{where} has no band: give problem.band=[z1,z2]"
                                 + ("" if single is not None else " (shared) or problem.bands"))
        out.append((layer, unit, *own))
    if kind == "neuron" and len(out) != 1:
        raise ValueError(f"problem=neuron takes one unit, got {len(out)}: use problem=intersection")
    return out


def _auto(cfg: DictConfig, key: str) -> Optional[str]:
    """``problem.<key>`` with ``auto`` replaced by the model config's (only ``model=digits`` has
    one: every other model starts with none)."""
    value = cfg.problem.get(key)
    if value == "auto":
        value = cfg.model.get(key) if cfg.get("model") is not None and key in set(
            cfg.model.keys()) else None
    return value


def check_generator_name(name: Optional[str]) -> None:
    """Refuse a generator name that is neither a parametrization nor a zoo generator."""
    if name is None or name in PARAMETRIZATIONS:
        return
    from ..models import WEIGHTS_DIR, read_manifest
    zoo = sorted(n for n in read_manifest(WEIGHTS_DIR)["models"] if "vae" in n)
    if name not in zoo:
        raise ValueError(f"problem.generator={name!r} is unknown: choose auto, null, "
                         f"{', '.join(PARAMETRIZATIONS)} or a zoo generator ({', '.join(zoo)})")


def build_generator(name: Optional[str], model, node):
    """The generator named by ``problem.generator`` (after ``auto``): none, an image
    parametrization sized from ``problem.input_shape``/``input_range`` or the model's metadata,
    or a zoo generator."""
    check_generator_name(name)
    if name is None:
        return None
    if name not in PARAMETRIZATIONS:
        from ..models import load_generator
        return load_generator(name)
    from ..models.params import FourierImage, PixelImage
    from ..problems.preprocessing import model_preprocessing

    pre = model_preprocessing(model)
    shape = node.input_shape if node.input_shape is not None else (pre.input_shape if pre else None)
    span = node.input_range if node.input_range is not None else (pre.input_range if pre else None)
    if shape is None or span is None:
        raise ValueError(f"problem.generator={name} needs problem.input_shape=[C,H,W] and "
                         f"problem.input_range=[lo,hi]: the model states "
                         f"{'no input shape' if shape is None else 'no input range'}")
    shape, span = tuple(int(v) for v in shape), tuple(float(v) for v in span)
    if name == "pixels":
        return PixelImage(shape, span)
    return FourierImage(shape, span, decorrelate=shape[0] == 3)


def _own_target(node: DictConfig, group: str) -> DictConfig:
    """``node`` when its ``_target_`` is one of feassample's own builders (what the schemas set);
    any other target is refused before Hydra imports or calls it: your own code comes in by
    ``problem.factory`` / ``model.cls`` (a file you name)."""
    target = node.get("_target_")
    if target is not None and not str(target).startswith("feassample."):
        raise ValueError(f"{group}._target_={target!r} is not one of feassample's builders: name your "
                         f"own code with {'problem=python problem.factory' if group == 'problem' else 'model=file model.cls'}"
                         f"=path/to/file.py:name")
    return node


def check_code_specs(cfg: DictConfig, base: Optional[Path] = None) -> None:
    """Refuse ``problem.factory`` / ``model.cls`` values of the wrong kind, and foreign
    ``_target_``s, before anything runs (a ``package.module:name`` is imported and its kind
    checked; a file you name is not run here)."""
    problem, model = cfg.get("problem"), cfg.get("model")
    if problem is not None and "factory" in set(problem.keys()) and not OmegaConf.is_missing(problem, "factory"):
        if not str(problem.factory).split(":")[0].endswith(".py"):
            load_object(problem.factory, base, kind=FeasibleSet, what="problem.factory")
    elif problem is not None and problem.get("kind") is None:
        _own_target(problem, "problem")
    if model is not None and "cls" in set(model.keys()) and not OmegaConf.is_missing(model, "cls") \
            and model.cls:
        if not str(model.cls).split(":")[0].endswith(".py"):
            load_object(model.cls, base, kind=torch.nn.Module, what="model.cls")
    elif model is not None:
        _own_target(model, "model")


def build_neuron_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """A ``NeuronInverseSet`` (or an ``Intersection`` of them) from ``problem=neuron|intersection``."""
    from ..problems import Intersection, NeuronInverseSet

    node = cfg.problem
    units = neuron_units(cfg)
    model = build_model(cfg, base)
    generator = build_generator(_auto(cfg, "generator"), model, node)
    encoder = _auto(cfg, "encoder")
    members = [NeuronInverseSet(
        model, layer, unit, z1, z2, generator=generator, encoder=encoder,
        input_shape=tuple(node.input_shape) if node.input_shape is not None else None,
        input_range=tuple(node.input_range) if node.input_range is not None else None,
        tol=float(node.tol), code_radius=node.code_radius if generator is not None else None)
        for layer, unit, z1, z2 in units]
    return members[0] if len(members) == 1 else Intersection(members)


def build_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """The problem of a composed config: ``_target_`` nodes are instantiated, ``factory`` nodes
    call a function from a user's file."""
    node = cfg.problem
    keys = set(node.keys())  # ("key" in node is False for a missing ??? value)
    if "factory" in keys and OmegaConf.is_missing(node, "factory"):
        raise ValueError("problem=python needs problem.factory=path/to/file.py:function "
                         "(a function returning a FeasibleSet)")
    if "factory" in keys:
        factory = load_object(node.factory, base, kind=FeasibleSet, what="problem.factory")
        problem = factory(**OmegaConf.to_container(node.kwargs, resolve=True))
    elif node.get("kind") in ("neuron", "intersection"):
        problem = build_neuron_problem(cfg, base)
    elif node.get("kind") == "contrastive":
        from .contrastive import problem_from_config
        problem = problem_from_config(node, build_model(cfg, base))
    else:
        problem = instantiate(_own_target(node, "problem"))
    if not isinstance(problem, FeasibleSet):
        raise TypeError(f"the problem config built a {type(problem).__name__}, not a FeasibleSet")
    return problem


def load_plugin(spec: str, kind: type, what: str, base: Optional[Path] = None):
    """The class named by ``spec`` (``path/to/file.py:Class`` or ``package.module:Class``),
    checked to be a subclass of ``kind`` before anything is built from it."""
    obj = load_object(spec, base, kind=kind, what=what)
    if not (isinstance(obj, type) and issubclass(obj, kind)):
        raise TypeError(f"{what}={spec!r} names {obj!r}, not a subclass of feassample's "
                        f"{kind.__name__}")
    return obj


def sampler_config(cfg: DictConfig, base: Optional[Path] = None) -> SamplerConfig:
    """``fs.SamplerConfig`` from the ``sampler`` and ``objective`` groups (validated: a plug-in's
    options against its own Config)."""
    node = OmegaConf.to_container(cfg.sampler, resolve=True)
    target = node.pop("_target_", None)
    method = node.pop("method")
    if target:
        method = load_plugin(target, Sampler, "sampler._target_", base)
    elif method == "plugin":
        raise ValueError("sampler=plugin needs sampler._target_=path/to/file.py:Class (a Sampler subclass)")
    obj = OmegaConf.to_container(cfg.objective, resolve=True)
    objective = obj["name"]
    if obj.get("_target_"):
        cls = load_plugin(obj["_target_"], Diversity, "objective._target_", base)
        objective = cls(weight=float(obj["weight"]), **(obj.get("options") or {}))
    return SamplerConfig(method=method, **node, objective=objective,
                         diversity_weight=float(obj["weight"]), normalize=bool(obj["normalize"]),
                         objective_options=obj.get("options") or None)


def _exists(value, what: str, base: Path) -> None:
    """Refuse a missing file named by the config (relative to the launch directory ``base``)."""
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise FileNotFoundError(f"{what}={value}: {path} does not exist")


def _check_spec_file(spec, what: str, base: Path) -> None:
    """``path/to/file.py:name`` must name an existing file (``package.module:name`` is imported
    later)."""
    where = str(spec).rsplit(":", 1)[0] if ":" in str(spec) else str(spec)
    if where.endswith(".py"):
        _exists(where, what, base)


def check_model(cfg: DictConfig, base: Path) -> None:
    """The ``model`` node's required keys and files, without loading anything."""
    if cfg.get("model") is None:
        raise ValueError("this problem needs a model: add model=digits or model=file ...")
    node, kind = cfg.model, _model_kind(cfg.model)
    if kind in ("torchvision", "timm"):
        _required(node, ("arch", "weights"), kind)
        _exists(node.weights, "model.weights", base)
    elif kind in ("exported", "torchscript"):
        _required(node, ("path",), kind)
        _exists(node.path, "model.path", base)
    elif kind == "file":
        _required(node, ("cls", "state_dict"), "file")
        _check_spec_file(node.cls, "model.cls", base)
        _exists(node.state_dict, "model.state_dict", base)


def check_config(cfg: DictConfig, base: Path, skip: frozenset = frozenset()) -> None:
    """Every check that needs no model loaded: the sampler's and objective's options, the
    problem's required keys, unit strings and bands, the files the config names, the input range
    of an input-space problem, and ``resume``; ``skip``: top-level keys a sweep sets later (their
    checks wait for the jobs). Raises ValueError/TypeError/FileNotFoundError."""
    check_threads(cfg)
    if not {"problem", "model"} & set(skip):
        check_code_specs(cfg, base)
    problem = cfg.problem
    if {"problem", "model"} & set(skip):
        problem = OmegaConf.create({"kind": "swept"})
    kind = problem.get("kind")
    keys = set(problem.keys())
    if kind != "contrastive" and not {"sampler", "objective"} & set(skip):
        sampler_config(cfg, base)
    if "factory" in keys:
        if OmegaConf.is_missing(problem, "factory"):
            raise ValueError("problem=python needs problem.factory=path/to/file.py:function "
                             "(a function returning a FeasibleSet)")
        _check_spec_file(problem.factory, "problem.factory", base)
    if kind in ("neuron", "intersection", "contrastive"):
        check_model(cfg, base)
    if kind in ("neuron", "intersection"):
        neuron_units(cfg)
        generator = _auto(cfg, "generator")
        check_generator_name(generator)
        model_kind = _model_kind(cfg.model)
        if ((generator is None or generator in PARAMETRIZATIONS) and problem.input_range is None
                and model_kind in ("file", "exported", "torchscript")
                and cfg.model.get("input_range") is None):
            how = "sampling inputs directly" if generator is None else f"problem.generator={generator}"
            raise ValueError(f"problem.input_range=[lo,hi] (or model.input_range) is required for "
                             f"{how} with model={model_kind}, which states no input range")
    if not {"shard", "shards", "sampler"} & set(skip) and (cfg.get("shard") is not None
                                                          or cfg.get("shards") is not None):
        if cfg.get("shard") is None or cfg.get("shards") is None:
            raise ValueError("give both shard= and shards= (this job's index and the number of jobs)")
        from ..api import shard_plan
        shard_plan(int(cfg.sampler.n), int(cfg.sampler.seed), cfg.shard, cfg.shards)
    if cfg.get("resume") and "resume" not in skip:
        resume = Path(str(cfg.resume)).expanduser()
        resume = resume if resume.is_absolute() else base / resume
        if not resume.is_dir():
            raise FileNotFoundError(f"resume={cfg.resume}: {resume} is not a run directory")


#: problems built by ValidateCallback before the run directory exists, reused by ``run``
_PREPARED: dict[str, FeasibleSet] = {}


def _problem_key(cfg: DictConfig, base: Path) -> str:
    nodes = {k: OmegaConf.to_container(cfg[k], resolve=True) if cfg.get(k) is not None else None
             for k in ("problem", "model")}
    return json.dumps([nodes, str(base)], sort_keys=True, default=str)


def prepared_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """The problem ValidateCallback built for this config (so a model is loaded once), else a new
    one."""
    return _PREPARED.pop(_problem_key(cfg, base), None) or build_problem(cfg, base)


def one_line(err: BaseException) -> str:
    """``feassample: <message>`` on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch's messages carry terminal colours
    return "feassample: " + " ".join(text.split("\n")).strip()


BAD_INPUT = (ValueError, TypeError, FileNotFoundError, AttributeError, ImportError, MemoryError, DiskFull)


class ValidateCallback(Callback):
    """Hydra callback: check the config (``check_config``) when a run or a sweep starts, and for
    a single run build the problem, so every bad input is one line on stderr (exit code 2)
    before Hydra creates any output directory."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        base = self._base(config)
        try:
            check_config(config, base)
            if config.problem.get("kind") != "contrastive":
                _PREPARED.clear()
                _PREPARED[_problem_key(config, base)] = build_problem(config, base)
        except BAD_INPUT as err:
            print(one_line(err), file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # The sweep's values are not in this config yet: check only the groups it does not sweep.
        from hydra.core.override_parser.overrides_parser import OverridesParser
        swept = {o.key_or_group.split(".")[0].lstrip("+~")
                 for o in OverridesParser.create().parse_overrides(
                     list(config.hydra.overrides.task)) if o.is_sweep_override()}
        try:
            check_config(config, self._base(config), skip=swept)
        except BAD_INPUT as err:
            print(one_line(err), file=sys.stderr)
            raise SystemExit(2) from None

    @staticmethod
    def _base(config: DictConfig) -> Path:
        try:
            return Path(config.hydra.runtime.cwd)
        except Exception:  # noqa: BLE001 - a config composed without Hydra's runtime node
            return Path.cwd()


def coverage(problem, samples: SampleSet, draws: int, seed: int) -> tuple[dict, Any]:
    """Coverage metrics against exact iid uniform samples of the same size (where available)."""
    from .. import metrics

    if not hasattr(problem, "exact_sample") or len(samples) < 2:
        return {}, None
    g = torch.Generator().manual_seed(10_000 + int(seed))
    n = len(samples)
    x = samples.x.double()
    reference = problem.exact_sample(n, generator=g)
    probes = problem.exact_sample(n, generator=g)
    ref_draws = [problem.exact_sample(n, generator=g) for _ in range(max(draws, 2))]
    report = metrics.coverage_report(x, reference, probes, ref_draws, t=problem.t(x),
                                     t_cdf=problem.t_cdf, box=problem.box or (0.0, 1.0))
    report.pop("energy_ratio", None)  # the null mean is ~0: energy_z is the calibrated number
    law = getattr(problem, "law", None)
    if law is not None and "log_prob" in samples.stats:  # the exact volume against the estimate
        exact = float(law.log_volume())
        report["log_prob_exact"] = exact
        se = samples.stats.get("log_prob_se", math.nan)
        report["log_prob_z"] = (samples.stats["log_prob"] - exact) / se if se and se > 0 else math.nan
    return report, reference


def threads_for(cfg: DictConfig) -> int:
    """``cfg.threads``, or 1 inside a parallel launcher's worker (joblib, submitit local)."""
    try:
        launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    except ValueError:  # not under Hydra (tests, library use)
        launcher = ""
    check_threads(cfg)
    if "joblib" in launcher.lower() or launcher.endswith("LocalLauncher"):
        return 1
    return int(cfg.threads)


def check_threads(cfg: DictConfig) -> None:
    """Refuse ``threads`` below 1 (it used to be raised to 1 silently)."""
    threads = cfg.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 (CPU threads for torch), got {threads!r}")


def run(cfg: DictConfig, out_dir: Path, base: Path) -> dict:
    """One run: validate, sample, write ``samples/``, ``metrics.json`` and ``plot.png``."""
    torch.set_num_threads(threads_for(cfg))
    if cfg.problem.get("kind") == "contrastive":  # an explanation, not a sample: its own outputs
        from .contrastive import run_config
        metrics_out = run_config(cfg.problem, build_model(cfg, base), out_dir)
        log.info("%s; outputs in %s", metrics_out["message"], out_dir)
        return metrics_out
    scfg = sampler_config(cfg, base)  # validated before any work
    check_code_specs(cfg, base)
    problem = prepared_problem(cfg, base)
    log.info("problem: %s", problem.describe())
    log.info("sampler: method=%s n=%d k=%d seed=%d", scfg.method_name, scfg.n, scfg.k, scfg.seed)
    resume = None
    if cfg.get("resume"):
        resume = Path(cfg.resume)
        resume = resume if resume.is_absolute() else base / resume
    # The run directory is written as the run goes: a killed run resumes with resume=<dir>.
    result = sample(problem, n=scfg.n, k=scfg.k, seed=scfg.seed, config=scfg,
                    progress=bool(cfg.progress), run_dir=resume or out_dir, resume=resume,
                    shard=cfg.get("shard"), shards=cfg.get("shards"))
    result.config["app"] = OmegaConf.to_container(cfg, resolve=True)
    result.save(out_dir / "samples")
    log.info(result.summary())
    metrics_out = {"feasible_fraction": float(result.feasible.float().mean()) if len(result) else 0.0,
                   **{k: v for k, v in result.stats.items()}}
    reference = None
    if cfg.coverage and result.status != "infeasible":
        cov, reference = coverage(problem, result, int(cfg.reference_draws), scfg.seed)
        metrics_out["coverage"] = cov
        if cov:
            log.info("coverage vs exact iid: KS p=%.3g, boundary z=%.2f, NN ratio=%.2f, fill ratio=%.3f",
                     cov.get("ks_p", math.nan), cov["boundary_z"], cov["nn_ratio"], cov["fill_ratio"])
            if "log_prob_exact" in cov:
                log.info("log P(set): exact %.4g, estimated %.4g (z = %.2f)", cov["log_prob_exact"],
                         result.stats["log_prob"], cov["log_prob_z"])
    text = json.dumps(metrics_out, indent=2, default=str)
    atomic_write_bytes(out_dir / "metrics.json", lambda fh: fh.write(text.encode()))
    if cfg.plot and len(result):
        from ..viz import plot_run

        plot_run(problem, result, out_dir / "plot.png", reference)
    log.info("outputs in %s", out_dir)
    return metrics_out


def config_dir() -> str:
    """The folder of YAML configs: inside the installed package, else the checkout's ``conf/``."""
    installed = Path(__file__).resolve().parents[1] / "conf"
    if (installed / "config.yaml").is_file():
        return str(installed)
    return str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    """Console entry point ``feassample`` (and ``python -m feassample``)."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    base = Path(HydraConfig.get().runtime.cwd)  # relative paths: the directory launched from
    try:
        run(cfg, out_dir, base)
    except (ValueError, TypeError, FileNotFoundError, MemoryError, DiskFull) as err:
        print(one_line(err), file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
