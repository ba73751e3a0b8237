"""The ``sampler`` and ``objective`` groups: ``fs.SamplerConfig`` from a composed config.

Built-in samplers are named by ``sampler.method`` (a name in the kernels' registry
``SAMPLERS``) and objectives by ``objective.name``; your own come in by ``_target_:
path/to/file.py:Class`` (or ``package.module:Class``), checked to be a subclass of feassample's
``Sampler`` / ``Diversity`` before anything is built from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from ..core.diversity import Diversity
from ..core.kernels import Sampler
from ..core.sampling import SamplerConfig
from ..models.files import load_object


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
