"""Structured-config schemas of the Hydra app: YAML in ``conf/`` is validated against these, so a
misspelled key or a wrong type fails before any work starts.

Settings have one definition: the sampler schemas mirror the kernels' ``Config`` dataclasses
(``schema_of``) and the neuron problem's schema mirrors ``NeuronInverseSet.__init__``
(``schema_from_signature``); only what the command line adds (how units and bands are written,
which group a value comes from) is written here. Every node's ``_target_`` names its builder in
``feassample.cli.build`` (an explicit registry; nothing is imported from the string)."""
from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Dict, List, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ..core.kernels import SAMPLERS, SeedConfig


@dataclass
class LogisticProblemSchema:
    """``problem=logistic``: ``fs.LogisticHalfspace.random(d, z1, z2, w_seed, c, scale)``."""

    _target_: str = "feassample.problems.logistic.LogisticHalfspace.random"
    d: int = 2
    z1: float = 0.7
    z2: float = 0.95
    w_seed: int = 0
    w: Optional[List[float]] = None
    c: Optional[float] = None
    scale: str = "logit"


@dataclass
class PythonProblemSchema:
    """``problem=python``: a problem built by a function in a Python file the user chose,
    ``factory: path/to/file.py:function`` called with ``kwargs``."""

    _target_: str = "feassample.cli.build.python_problem"
    factory: str = MISSING
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DigitsModelSchema:
    """``model=digits``: the zoo's CNN classifier (``feassample.models.load_classifier``), and what
    a neuron problem uses with it when the command line does not say: ``generator`` and
    ``encoder`` (``problem.generator=auto``, ``problem.encoder=auto``), and the example units and
    bands of ``problem=neuron`` / ``problem=intersection`` when no unit is given. No other model
    config carries such defaults."""

    _target_: str = "feassample.models.load_classifier"
    name: str = "digits_cnn"
    generator: Optional[str] = "digits_vae"
    encoder: Optional[str] = "features.pool2"
    neuron: Dict[str, Any] = field(default_factory=lambda: {
        "units": ["classifier.fc2:3"], "band": [8.0, 12.0]})
    intersection: Dict[str, Any] = field(default_factory=lambda: {
        "units": ["classifier.fc2:3", "classifier.fc2:8"], "band": [4.0, 8.0]})


@dataclass
class PreprocessingSchema:
    """The preprocessing fields every model config may give (``feassample.Preprocessing``):
    the input range, normalization ``mean``/``std`` and the input shape; unset: from the model's
    metadata, where it has some."""

    input_range: Optional[List[float]] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    input_shape: Optional[List[int]] = None


@dataclass
class FileModelSchema(PreprocessingSchema):
    """``model=file``: your own model: a class (``"pkg.module:Class"`` or ``"path/file.py:Class"``)
    built with ``kwargs``, then a ``state_dict`` file loaded with ``weights_only=True``."""

    _target_: str = "feassample.models.load_model_file"
    cls: str = MISSING
    state_dict: str = MISSING
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class NamedModelSchema(PreprocessingSchema):
    """``model=torchvision`` / ``model=timm``: an architecture by name (``arch``) with a local
    state_dict file (``weights``; nothing is downloaded); preprocessing from the library's
    metadata unless ``input_range``/``mean``/``std`` are given (``feassample.models.load_model``)."""

    _target_: str = "feassample.models.load_torchvision"
    arch: str = MISSING
    weights: str = MISSING
    weights_enum: str = "DEFAULT"
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgramModelSchema(PreprocessingSchema):
    """``model=exported`` / ``model=torchscript``: a ``torch.export`` program (``.pt2``) or a
    TorchScript archive at ``path``, which needs no class source; they carry no preprocessing, so
    give ``input_range`` (and ``mean``/``std`` if the program does not normalize)."""

    _target_: str = "feassample.models.load_exported"
    path: str = MISSING


@dataclass
class UnitSchema:
    """One neuron and its band: ``layer`` (dotted path), ``unit`` (int, [channel] or
    [channel, y, x], or a string ``layer4:17`` naming the layer too, then ``layer`` may be
    left out), ``z1 <= f <= z2``, or ``band: [z1, z2]`` (handy in sweeps)."""

    layer: Optional[str] = None
    unit: Any = MISSING
    z1: Optional[float] = None
    z2: Optional[float] = None
    band: Optional[List[float]] = None


@dataclass
class ContrastiveProblemSchema:
    """``problem=contrastive``: a CDeepEx contrastive explanation of one digit (docs/contrastive.md)."""

    _target_: str = "feassample.problems.contrastive.ContrastSet"
    split: str = "test"
    image_index: int = 0
    true_class: Optional[int] = None
    probe_class: Optional[int] = None
    margin: float = 0.1
    tol: float = 0.01
    constraints: str = "cdeepex"
    generator: str = "digits_vae"
    max_outer: int = 10
    restarts: int = 2
    seed: int = 0


_PLAIN = (int, float, str, bool)


def _schema_type(kind):
    """An OmegaConf-compatible annotation for a dataclass field's type (sequences become lists,
    unions and non-plain types ``Any``)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind in _PLAIN or kind is Any:
        return kind
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and type(None) in args:
            inner = _schema_type(rest[0])
            return Optional[inner] if inner is not Any else Any
        return Any
    if origin in (list, tuple, typing.Sequence, __import__("collections.abc").abc.Sequence):
        item = _schema_type(args[0]) if args and args[0] is not Ellipsis else Any
        return List[item] if item in _PLAIN else List[Any]
    if origin is dict:
        return Dict[str, Any]
    return Any


def schema_of(cls, name: str, extra: tuple = ()):
    """A Hydra schema mirroring the dataclass ``cls`` (the one definition of those settings):
    same fields, defaults and (OmegaConf-compatible) types, not frozen, plus ``extra`` fields."""
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        if f.default is not NO_DEFAULT:
            value = f.default
            if isinstance(value, tuple):
                value = field(default_factory=lambda v=value: list(v))
            else:
                value = field(default=value)
        elif f.default_factory is not NO_DEFAULT:
            value = field(default_factory=f.default_factory)
        else:
            value = field(default=MISSING)
        specs.append((f.name, _schema_type(hints[f.name]), value))
    return make_dataclass(name, list(specs) + list(extra))


def _plain_field(default):
    """A dataclass field holding ``default`` (a tuple becomes a list; no default: ``???``)."""
    if default is inspect.Parameter.empty or default is NO_DEFAULT:
        return field(default=MISSING)
    if isinstance(default, (tuple, list)):
        return field(default_factory=lambda v=default: list(v))
    if default is not None and not isinstance(default, _PLAIN):
        raise TypeError(f"default {default!r} is not a plain config value")
    return field(default=default)


def schema_from_signature(func, name: str, *, first: tuple = (), skip: dict = (),
                          given: dict = (), extra: tuple = (), doc: str = "") -> type:
    """A Hydra schema with one field per parameter of ``func`` (after ``self``), with its default
    and (OmegaConf-compatible) type: ``first`` fields, then the parameters less ``skip`` (``{name:
    where the value comes from}``), with ``given`` (``{name: (type, default)}``) replacing what
    the command line writes differently, then ``extra`` fields. A parameter added to ``func``
    appears in the schema by itself; one with a default that is no config value must be skipped."""
    hints = get_type_hints(func)
    params = [p for p in inspect.signature(func).parameters.values()
              if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = sorted((set(skip) | set(given)) - {p.name for p in params})
    if unknown:
        raise TypeError(f"{func.__qualname__} has no parameters {unknown}: the schema {name} is stale")
    specs = list(first)
    for p in params:
        if p.name in skip:
            continue
        if p.name in dict(given):
            kind, default = dict(given)[p.name]
        else:
            kind, default = _schema_type(hints.get(p.name, Any)), p.default
        try:
            specs.append((p.name, kind, _plain_field(default)))
        except TypeError as err:
            raise TypeError(f"{func.__qualname__}({p.name}=...): {err}: add it to the skipped "
                            f"parameters of {name}") from None
    schema = make_dataclass(name, specs + list(extra))
    schema.__doc__ = doc or schema.__doc__
    return schema


def _neuron_schema() -> type:
    from ..problems.neuron import NeuronInverseSet

    return schema_from_signature(
        NeuronInverseSet.__init__, "NeuronProblemSchema",
        first=[("_target_", str, field(default="feassample.problems.neuron.NeuronInverseSet"))],
        skip=NEURON_FROM_ELSEWHERE, given=NEURON_AS_WRITTEN, extra=NEURON_UNITS, doc=NEURON_DOC)


#: ``NeuronInverseSet`` parameters a ``problem=neuron`` node does not carry, and where they come from
NEURON_FROM_ELSEWHERE = {
    "model": "the model group",
    "layer": "the unit string 'layer:n' (or a units entry's layer)",
    "z1": "problem.band / problem.bands (or a units entry's z1, band)",
    "z2": "problem.band / problem.bands (or a units entry's z2, band)",
    "preprocessing": "the model group's input_range, mean, std and input_shape",
    "code_shape": "the generator",
    "transforms": "Python callables, not config values",
}
#: parameters the command line writes as names (built in ``feassample.cli.build``): ``auto`` is
#: the model config's (the one default that differs from ``NeuronInverseSet``'s ``None``: a
#: name on the command line, the model config's choice by default)
NEURON_AS_WRITTEN = {
    "generator": (Optional[str], "auto"),
    "encoder": (Optional[str], "auto"),
}
#: what the command line adds: several units and their bands
NEURON_UNITS = (
    ("band", Optional[List[float]], field(default=None)),
    ("units", List[Any], field(default_factory=list)),
    ("bands", Optional[List[Any]], field(default=None)),
)
NEURON_DOC = """``problem=neuron``: the inverse set of one unit of ``model`` (several for
``problem=intersection``), the parameters of ``NeuronInverseSet`` less ``NEURON_FROM_ELSEWHERE``.

One unit: ``unit: layer4:17`` (a ``"layer:n[:y:x]"`` string) and ``band: [z1, z2]``. Several:
``units`` lists strings (their bands in ``bands``, aligned, or the shared ``band``) or entries
``{layer, unit, z1, z2, band}``; empty entries (``unit: null``) are slots for
``problem.units.N.*`` overrides. ``generator``: ``auto`` (the model config's, e.g.
``digits_vae`` for ``model=digits``, none for every other model), ``null`` (sample inputs
directly), ``fourier`` or ``pixels`` (``feassample.models.params``) or a zoo generator's
name. ``encoder``: ``auto`` (the model config's), ``null`` (diversity on codes) or a layer.
``input_shape``/``input_range``: null takes them from the model's preprocessing metadata or
the generator (an input-space problem without either must give ``input_range``)."""


SeedSchema = schema_of(SeedConfig, "SeedSchema")
NeuronProblemSchema = _neuron_schema()
RUN_FIELDS = ("n", "k", "seed", "device", "dtype")


def sampler_schema(method: Optional[str], options) -> type:
    """The ``sampler`` node's schema for one method: the run's fields of ``SamplerConfig``, the
    seed phase's ``seeding`` and the method's typed ``options`` (``Dict`` for a plug-in named by
    ``_target_``, whose options are validated against its own Config before sampling)."""
    from ..core.sampling import SamplerConfig

    hints = get_type_hints(SamplerConfig)
    run = {f.name: f for f in fields(SamplerConfig)}
    specs = [("method", str, field(default=method or MISSING))]
    specs += [(n, _schema_type(hints[n]), field(default=run[n].default)) for n in RUN_FIELDS]
    specs.append(("seeding", SeedSchema, field(default_factory=SeedSchema)))
    if options is None:
        specs.append(("options", Dict[str, Any], field(default_factory=dict)))
        specs.append(("_target_", Optional[str], field(default=None)))
    else:
        specs.append(("options", options, field(default_factory=options)))
    title = "".join(part.title() for part in (method or "plugin").split("_"))
    return make_dataclass(f"{title}SamplerSchema", specs)


@dataclass
class ObjectiveSchema:
    """The diversity term: ``name`` in ``sum_squared`` (eq. 5/6), ``codes`` (eq. 13), ``none``
    (eq. 14), ``repulsive`` (a kernel energy against the pool's points) or another registered
    name; ``normalize: false`` with weight 1 is the paper's plain sum; ``options`` go to the
    objective's factory; ``_target_: path/to/file.py:Class`` names a ``Diversity`` subclass of
    your own (built as ``Class(weight=..., **options)``)."""

    name: str = "sum_squared"
    weight: float = 1.0
    normalize: bool = True
    options: Dict[str, Any] = field(default_factory=dict)
    _target_: Optional[str] = None


@dataclass
class AppConfig:
    """The whole run: a problem, a sampler, an objective, and what to write."""

    problem: Any = MISSING
    model: Any = None
    sampler: Any = MISSING
    objective: ObjectiveSchema = field(default_factory=ObjectiveSchema)
    threads: int = 1
    progress: bool = True
    plot: bool = True
    report: bool = True             # report.html with the run's facets (docs/analysis.md)
    coverage: bool = True
    reference_draws: int = 10
    resume: Optional[str] = None
    shard: Optional[int] = None     # this job's index in a sharded run (with shards)
    shards: Optional[int] = None    # number of independent jobs whose union is the sample
    keep_checkpoint: bool = True    # false: a successful run's checkpoint files are removed


def register() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="app_schema", node=AppConfig)
    cs.store(group="problem", name="logistic_schema", node=LogisticProblemSchema)
    cs.store(group="problem", name="python_schema", node=PythonProblemSchema)
    cs.store(group="problem", name="neuron_schema", node=NeuronProblemSchema)
    cs.store(group="problem", name="contrastive_schema", node=ContrastiveProblemSchema)
    cs.store(group="model", name="digits_schema", node=DigitsModelSchema)
    cs.store(group="model", name="file_schema", node=FileModelSchema)
    cs.store(group="model", name="named_schema", node=NamedModelSchema)
    cs.store(group="model", name="program_schema", node=ProgramModelSchema)
    cs.store(group="sampler", name="plugin_schema", node=sampler_schema(None, None))
    for name, cls in SAMPLERS.items():
        cs.store(group="sampler", name=f"{name}_schema", node=sampler_schema(name, schema_of(
            cls.Config, f"{cls.Config.__name__}Schema")))
    cs.store(group="objective", name="objective_schema", node=ObjectiveSchema)
