"""Every check of a composed config that needs no model loaded, in one place: the app's callback
runs ``check_config`` before Hydra creates any output directory, and each builder of
``feassample.cli.build`` runs its group's checks before it loads anything, so a config built from
Python (tests, ``feassample-merge``) gets the same messages. Raises ValueError, TypeError or
FileNotFoundError."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from .sampler import sampler_config
from .targets import model_target, problem_target
from .units import auto_setting, neuron_units
from ..core.problem import FeasibleSet
from ..core.result import DiskFull
from ..models.files import load_object

#: the errors a bad input raises: one line on stderr and exit code 2 (``app``, ``preflight``)
BAD_INPUT = (ValueError, TypeError, FileNotFoundError, AttributeError, ImportError, MemoryError, DiskFull)

#: generator names of feassample.models.params, built for the model's input shape and range
PARAMETRIZATIONS = ("fourier", "pixels")


def check_threads(cfg: DictConfig) -> None:
    """Refuse ``threads`` below 1 (it used to be raised to 1 silently)."""
    threads = cfg.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 (CPU threads for torch), got {threads!r}")


def _exists(value, what: str, base: Path) -> None:
    """Refuse a missing file named by the config (relative to the launch directory ``base``)."""
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise FileNotFoundError(f"{what}={value}: {path} does not exist")


def _is_file_spec(spec) -> bool:
    return str(spec).split(":")[0].endswith(".py")


def _check_spec_file(spec, what: str, base: Path) -> None:
    """``path/to/file.py:name`` must name an existing file (``package.module:name`` is imported
    later)."""
    where = str(spec).rsplit(":", 1)[0] if ":" in str(spec) else str(spec)
    if where.endswith(".py"):
        _exists(where, what, base)


def _given(node: DictConfig, key: str) -> bool:
    return key in set(node.keys()) and not OmegaConf.is_missing(node, key)


def check_code_specs(cfg: DictConfig, base: Optional[Path] = None) -> None:
    """Refuse a ``_target_`` that is not one of feassample's builders, and ``problem.factory`` /
    ``model.cls`` values of the wrong kind, before anything runs (a ``package.module:name`` is
    imported and its kind checked; a file you name is not run here)."""
    problem, model = cfg.get("problem"), cfg.get("model")
    if problem is not None and problem_target(problem).option == "python" \
            and _given(problem, "factory") and not _is_file_spec(problem.factory):
        load_object(problem.factory, base, kind=FeasibleSet, what="problem.factory")
    if model is not None and model_target(model).option == "file" and _given(model, "cls") \
            and model.cls and not _is_file_spec(model.cls):
        load_object(model.cls, base, kind=torch.nn.Module, what="model.cls")


def check_model(cfg: DictConfig, base: Path) -> None:
    """The ``model`` node's builder, required keys and files, without loading anything."""
    if cfg.get("model") is None:
        raise ValueError("this problem needs a model: add model=digits or model=file ...")
    node, target = cfg.model, model_target(cfg.model)
    for key in target.required:
        if OmegaConf.is_missing(node, key):
            raise ValueError(f"model={target.option} needs model.{key}=... "
                             f"(see conf/model/{target.option}.yaml)")
    if "cls" in target.required:
        _check_spec_file(node.cls, "model.cls", base)
    for key in target.files:
        _exists(node[key], f"model.{key}", base)


def check_generator_name(name: Optional[str]) -> None:
    """Refuse a generator name that is neither a parametrization nor a zoo generator."""
    if name is None or name in PARAMETRIZATIONS:
        return
    from ..models import WEIGHTS_DIR, read_manifest
    zoo = sorted(n for n in read_manifest(WEIGHTS_DIR)["models"] if "vae" in n)
    if name not in zoo:
        raise ValueError(f"problem.generator={name!r} is unknown: choose auto, null, "
                         f"{', '.join(PARAMETRIZATIONS)} or a zoo generator ({', '.join(zoo)})")


def _check_neuron(cfg: DictConfig, base: Path) -> None:
    """``problem=neuron|intersection``: the model, the units and bands, the generator's name, and
    an input range for an input-space problem on a model that states none."""
    check_model(cfg, base)
    neuron_units(cfg)
    generator = auto_setting(cfg, "generator")
    check_generator_name(generator)
    model = model_target(cfg.model)
    if ((generator is None or generator in PARAMETRIZATIONS) and cfg.problem.input_range is None
            and not model.states_input_range and cfg.model.get("input_range") is None):
        how = "sampling inputs directly" if generator is None else f"problem.generator={generator}"
        raise ValueError(f"problem.input_range=[lo,hi] (or model.input_range) is required for "
                         f"{how} with model={model.option}, which states no input range")


def _check_python(cfg: DictConfig, base: Path) -> None:
    """``problem=python``: a ``problem.factory`` naming an existing file (or a module)."""
    if not _given(cfg.problem, "factory"):
        raise ValueError("problem=python needs problem.factory=path/to/file.py:function "
                         "(a function returning a FeasibleSet)")
    _check_spec_file(cfg.problem.factory, "problem.factory", base)


#: each built-in problem's checks (by its option in ``targets.PROBLEMS``; logistic has none)
PROBLEM_CHECKS = {"neuron": _check_neuron, "intersection": _check_neuron,
                  "contrastive": check_model, "python": _check_python}


def check_problem(cfg: DictConfig, base: Path) -> None:
    """The ``problem`` node's builder and its own checks (and its model's)."""
    check = PROBLEM_CHECKS.get(problem_target(cfg.problem).option)
    if check is not None:
        check(cfg, base)


def check_config(cfg: DictConfig, base: Path, skip: frozenset = frozenset()) -> None:
    """Every check that needs no model loaded: the sampler's and objective's options, the
    problem's required keys, unit strings and bands, the files the config names, the input range
    of an input-space problem, and ``resume``; ``skip``: top-level keys a sweep sets later (their
    checks wait for the jobs)."""
    check_threads(cfg)
    swept = bool({"problem", "model"} & set(skip))
    if not swept:
        check_code_specs(cfg, base)
    sampled = swept or problem_target(cfg.problem).sampled
    if sampled and not {"sampler", "objective"} & set(skip):
        sampler_config(cfg, base)
    if not swept:
        check_problem(cfg, base)
    if not {"shard", "shards", "sampler"} & set(skip) and (cfg.get("shard") is not None
                                                          or cfg.get("shards") is not None):
        if cfg.get("shard") is None or cfg.get("shards") is None:
            raise ValueError("give both shard= and shards= (this job's index and the number of jobs)")
        from ..rundir.shards import shard_plan
        shard_plan(int(cfg.sampler.n), int(cfg.sampler.seed), cfg.shard, cfg.shards)
    if cfg.get("resume") and "resume" not in skip:
        resume = Path(str(cfg.resume)).expanduser()
        resume = resume if resume.is_absolute() else base / resume
        if not resume.is_dir():
            raise FileNotFoundError(f"resume={cfg.resume}: {resume} is not a run directory")
