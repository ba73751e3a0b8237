"""Units of a layer: Lucent-style unit strings (``"layer4:17"``) and the reader of one unit.

An int names a fully connected unit (on a layer with channels: the channel's spatial mean),
``(channel,)`` a channel's spatial mean and ``(channel, y, x)`` one position.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

from torch import Tensor

Unit = Union[int, tuple, str]


def parse_unit(spec: str) -> tuple[str, Union[int, tuple]]:
    """``(layer, unit)`` from a Lucent-style string: ``"fc:243"`` -> ``("fc", 243)``,
    ``"layer4:17"`` -> ``("layer4", 17)`` (a channel's spatial mean on a layer with channels),
    ``"layer4:17:3:3"`` -> ``("layer4", (17, 3, 3))`` (one position)."""
    if not isinstance(spec, str):
        raise TypeError(f"unit string must be a str like 'layer4:17', got {spec!r}")
    layer, sep, rest = spec.partition(":")
    parts = rest.split(":") if sep else []
    if not layer or not parts or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
        raise ValueError(f"unit {spec!r} is not 'layer:unit': use 'layer4:17' (a channel), "
                         f"'layer4:17:3:3' (channel 17 at y=3, x=3) or 'fc:243' (a unit), with "
                         f"the layer's dotted name from model.named_modules()")
    idx = tuple(int(p) for p in parts)
    return layer, idx[0] if len(idx) == 1 else idx


def unit_reader(unit: Unit, shape: Sequence[int], layer: str) -> Callable[[Tensor], Tensor]:
    """A function ``layer output (B, ...) -> (B,)`` for a unit, validated against the layer's
    output shape (without the batch dimension)."""
    shape = tuple(int(s) for s in shape)
    if isinstance(unit, bool):
        raise TypeError(f"unit must be an int or a tuple, got {unit!r}")
    if isinstance(unit, list):
        unit = tuple(unit)
    if isinstance(unit, int):
        if len(shape) != 1:
            # On a layer with channels, an int names a channel, as in the paper's "neuron 197
            # of conv5": the channel's spatial mean, the same as unit=(channel,).
            if not 0 <= unit < shape[0]:
                raise ValueError(f"unit={unit} is out of range for layer {layer!r} with output "
                                 f"shape {shape}: an int names a channel, valid channels are "
                                 f"0..{shape[0] - 1}")
            return lambda out: out[:, unit].flatten(1).mean(dim=1)
        if not 0 <= unit < shape[0]:
            raise ValueError(f"unit={unit} is out of range for layer {layer!r} with {shape[0]} "
                             f"units (output shape {shape}): valid units are 0..{shape[0] - 1}")
        return lambda out: out.flatten(1)[:, unit]
    if not isinstance(unit, tuple) or not all(isinstance(u, int) and not isinstance(u, bool) for u in unit):
        raise TypeError(f"unit must be an int, (channel,) or (channel, y, x), got {unit!r}")
    if len(shape) < 2:
        raise ValueError(f"unit={unit} indexes channels/positions, but layer {layer!r} is fully "
                         f"connected with output shape {shape}: use an int unit in 0..{shape[0] - 1}")
    if len(unit) == 1:
        (ch,) = unit
        if not 0 <= ch < shape[0]:
            raise ValueError(f"channel {ch} is out of range for layer {layer!r} with output shape "
                             f"{shape}: valid channels are 0..{shape[0] - 1}")
        return lambda out: out[:, ch].flatten(1).mean(dim=1)
    if len(unit) == len(shape):
        for axis, (u, s) in enumerate(zip(unit, shape)):
            if not 0 <= u < s:
                raise ValueError(f"unit={unit} is out of range for layer {layer!r} with output "
                                 f"shape {shape} (index {axis} must be in 0..{s - 1})")
        return lambda out: out[(slice(None), *unit)]
    raise ValueError(f"unit={unit} has {len(unit)} indices; layer {layer!r} has output shape "
                     f"{shape}: use (channel,) or a full index of {len(shape)} numbers")
