"""Build what a composed config names, one builder per config group: ``build_model``,
``build_problem`` and (in ``feassample.cli.sampler``) ``sampler_config`` for the sampler and
objective groups.

A ``problem`` or ``model`` node names its builder by ``_target_``, resolved against the explicit
registry of ``feassample.cli.targets`` (nothing is imported from the string); your own code comes
in by ``problem.factory`` / ``model.cls``. Each builder runs its group's checks
(``feassample.cli.checks``) before it loads anything.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from torch import nn

from .checks import PARAMETRIZATIONS, check_generator_name, check_model, check_problem
from .schemas import NEURON_AS_WRITTEN
from .targets import model_target, problem_target
from .units import auto_setting, neuron_units
from ..core.problem import FeasibleSet
from ..models.files import load_object

#: keys of a model config that go to the loader (the digits config's neuron defaults do not)
DIGITS_PROBLEM_KEYS = ("generator", "encoder", "neuron", "intersection")


def _fields(node: DictConfig) -> dict:
    """A node's values less what names its builder."""
    fields = OmegaConf.to_container(node, resolve=True)
    fields.pop("_target_", None)
    return fields


def _load_digits(fields: dict, base: Path) -> nn.Module:
    from ..models import load_classifier
    return load_classifier(**{k: v for k, v in fields.items() if k not in DIGITS_PROBLEM_KEYS})


def _load_file(fields: dict, base: Path) -> nn.Module:
    from ..models.formats import load_model
    return load_model("file", cls=fields.pop("cls"), weights=fields.pop("state_dict"), **fields,
                      base=base)


#: loaders of the ``model`` group's options; every other option is ``load_model(option, ...)``
MODEL_LOADERS = {"digits": _load_digits, "file": _load_file}


def build_model(cfg: DictConfig, base: Path) -> nn.Module:
    """The model of the ``model`` group (file paths resolved against ``base``)."""
    check_model(cfg, base)
    option = model_target(cfg.model).option
    if option in MODEL_LOADERS:
        return MODEL_LOADERS[option](_fields(cfg.model), base)
    from ..models.formats import load_model
    return load_model(option, **_fields(cfg.model), base=base)


def build_generator(name: Optional[str], model: nn.Module, node: DictConfig):
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


def _neuron(cfg: DictConfig, base: Path) -> FeasibleSet:
    """A ``NeuronInverseSet`` (or an ``Intersection`` of them) from ``problem=neuron|intersection``:
    every key of the node that is a constructor parameter goes to the constructor (lists as
    tuples); the units, bands, generator and encoder as the command line writes them."""
    from ..problems import Intersection, NeuronInverseSet

    node = cfg.problem
    params = inspect.signature(NeuronInverseSet.__init__).parameters
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in _fields(node).items()
             if k in params and k != "unit" and k not in NEURON_AS_WRITTEN}
    model = build_model(cfg, base)
    generator = build_generator(auto_setting(cfg, "generator"), model, node)
    members = [NeuronInverseSet(
        model, layer, unit, z1, z2, generator=generator, encoder=auto_setting(cfg, "encoder"),
        **given)
        for layer, unit, z1, z2 in neuron_units(cfg)]
    return members[0] if len(members) == 1 else Intersection(members)


def _logistic(cfg: DictConfig, base: Path) -> FeasibleSet:
    from ..problems.logistic import LogisticHalfspace
    return LogisticHalfspace.random(**_fields(cfg.problem))


def _contrastive(cfg: DictConfig, base: Path) -> FeasibleSet:
    from .contrastive import problem_from_config
    return problem_from_config(cfg.problem, build_model(cfg, base))


def python_problem(factory: str, kwargs: dict, base: Optional[Path] = None) -> Any:
    """``problem=python``: what the function ``factory`` (``path/to/file.py:function``, or a
    ``package.module:FeasibleSetSubclass``) returns for ``kwargs``."""
    return load_object(factory, base, kind=FeasibleSet, what="problem.factory")(**kwargs)


def _python(cfg: DictConfig, base: Path) -> Any:
    fields = _fields(cfg.problem)
    return python_problem(fields["factory"], fields.get("kwargs") or {}, base)


#: builders of the built-in problems, by their option in ``targets.PROBLEMS``
PROBLEM_BUILDERS = {"logistic": _logistic, "neuron": _neuron, "intersection": _neuron,
                    "contrastive": _contrastive, "python": _python}


def build_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """The problem of a composed config, from the builder its ``problem._target_`` names (after
    that problem's checks)."""
    check_problem(cfg, base)
    problem = PROBLEM_BUILDERS[problem_target(cfg.problem).option](cfg, base)
    if not isinstance(problem, FeasibleSet):
        raise TypeError(f"the problem config built a {type(problem).__name__}, not a FeasibleSet")
    return problem
