"""The units and bands of a ``problem=neuron|intersection`` node, parsed and checked from the
config alone (no model is loaded): ``(layer, unit, z1, z2)`` per unit."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from .schemas import UnitSchema
from .targets import problem_target
from ..problems.neuron import parse_unit


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
    node = OmegaConf.to_container(cfg.problem, resolve=True)
    option = problem_target(cfg.problem).option
    model = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") is not None else {}
    entries = [e for e in (node.get("units") or []) if not _is_slot(e)]
    single, shared, bands = node.get("unit"), node.get("band"), node.get("bands")
    if single is not None and entries:
        raise ValueError("give problem.unit (one unit) or problem.units (several), not both")
    if single is None and not entries and shared is None and bands is None:
        example = model.get(option) if isinstance(model.get(option), dict) else {}
        entries, shared = list(example.get("units") or []), example.get("band")
    if single is None and not entries:
        raise ValueError(
            f"problem={option} needs " + ("a unit: problem.unit=LAYER:N 'problem.band=[z1,z2]' "
                                        "(e.g. problem.unit=layer4:17)" if option == "neuron" else
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
    if option == "neuron" and len(out) != 1:
        raise ValueError(f"problem=neuron takes one unit, got {len(out)}: use problem=intersection")
    tol = node.get("tol") or 0.0
    for layer, unit, z1, z2 in out:
        if z1 == z2 and tol == 0.0:
            name = unit if layer is None else f"{layer}:{unit}"
            raise ValueError(f"the band [{z1}, {z2}] of unit {name} is an equality: give a "
                             f"tolerance problem.tol > 0 (e.g. problem.tol=1e-3)")
    return out


def auto_setting(cfg: DictConfig, key: str) -> Optional[str]:
    """``problem.<key>`` with ``auto`` replaced by the model config's (only ``model=digits`` has
    one: every other model starts with none)."""
    value = cfg.problem.get(key)
    if value == "auto":
        value = cfg.model.get(key) if cfg.get("model") is not None and key in set(
            cfg.model.keys()) else None
    return value
