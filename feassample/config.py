"""Structured-config schemas of the Hydra app: YAML in ``conf/`` is validated against these, so a
misspelled key or a wrong type fails before any work starts."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Dict, List, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .core.sample import SamplerConfig


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

    factory: str = MISSING
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DigitsModelSchema:
    """``model=digits``: the zoo's CNN classifier (``feassample.models.load_classifier``)."""

    _target_: str = "feassample.models.load_classifier"
    name: str = "digits_cnn"


@dataclass
class FileModelSchema:
    """``model=file``: your own model: a class (``"pkg.module:Class"`` or ``"path/file.py:Class"``)
    built with ``kwargs``, then a ``state_dict`` file loaded with ``weights_only=True``."""

    _target_: str = "feassample.models.load_model_file"
    cls: str = MISSING
    state_dict: str = MISSING
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class NamedModelSchema:
    """``model=torchvision`` / ``model=timm``: an architecture by name (``arch``) with a local
    state_dict file (``weights``; nothing is downloaded); preprocessing from the library's
    metadata unless ``input_range``/``mean``/``std`` are given (``feassample.models.load_model``)."""

    kind: str = "torchvision"
    arch: str = MISSING
    weights: str = MISSING
    weights_enum: str = "DEFAULT"
    kwargs: Dict[str, Any] = field(default_factory=dict)
    input_range: Optional[List[float]] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    input_shape: Optional[List[int]] = None


@dataclass
class ProgramModelSchema:
    """``model=exported`` / ``model=torchscript``: a ``torch.export`` program (``.pt2``) or a
    TorchScript archive at ``path``, which needs no class source; they carry no preprocessing, so
    give ``input_range`` (and ``mean``/``std`` if the program does not normalize)."""

    kind: str = "exported"
    path: str = MISSING
    input_range: Optional[List[float]] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    input_shape: Optional[List[int]] = None


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
class NeuronProblemSchema:
    """``problem=neuron``: the inverse set of one unit of ``model`` (several for
    ``problem=intersection``), through the generator ``generator`` (a zoo name or null for input
    space) with the diversity measured at the model's layer ``encoder`` (null: on codes)."""

    kind: str = "neuron"
    units: List[UnitSchema] = field(default_factory=list)
    generator: Optional[str] = "digits_vae"
    encoder: Optional[str] = "features.pool2"
    input_shape: List[int] = field(default_factory=lambda: [1, 16, 16])
    input_range: List[float] = field(default_factory=lambda: [0.0, 1.0])
    tol: float = 0.0
    code_radius: Optional[float] = 4.0


@dataclass
class ContrastiveProblemSchema:
    """``problem=contrastive``: a CDeepEx contrastive explanation of one digit (docs/contrastive.md)."""

    kind: str = "contrastive"
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


SAMPLER_ONLY = ("objective", "diversity_weight", "normalize")


def _sampler_schema():
    """The fields of ``fs.SamplerConfig`` (the one definition of the sampler's settings), less
    the objective's (they form the ``objective`` group), plus ``options`` for plug-in methods."""
    hints = get_type_hints(SamplerConfig)
    specs = [(f.name, hints[f.name], field(default=f.default)) for f in fields(SamplerConfig)
             if f.name not in SAMPLER_ONLY]
    specs.append(("options", Dict[str, Any], field(default_factory=dict)))
    return make_dataclass("SamplerSchema", specs)


SamplerSchema = _sampler_schema()


@dataclass
class ObjectiveSchema:
    """The diversity term: ``name`` in ``sum_squared`` (eq. 5/6), ``codes`` (eq. 13), ``none``
    (eq. 14); ``normalize: false`` with weight 1 is the paper's plain sum."""

    name: str = "sum_squared"
    weight: float = 1.0
    normalize: bool = True


@dataclass
class AppConfig:
    """The whole run: a problem, a sampler, an objective, and what to write."""

    problem: Any = MISSING
    model: Any = None
    sampler: SamplerSchema = field(default_factory=SamplerSchema)
    objective: ObjectiveSchema = field(default_factory=ObjectiveSchema)
    threads: int = 1
    progress: bool = True
    plot: bool = True
    coverage: bool = True
    reference_draws: int = 10
    resume: Optional[str] = None


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
    cs.store(group="sampler", name="sampler_schema", node=SamplerSchema)
    cs.store(group="objective", name="objective_schema", node=ObjectiveSchema)
