"""Saved states: the base of every sampler state and the buffer of accepted samples.

``State.state_dict()`` / ``State.from_state_dict()`` save and restore a state exactly (RNG state
included) with plain values only, so a checkpoint loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from torch import Tensor


# -- states -----------------------------------------------------------------------------------
class State:
    """Base of every sampler state (subclasses are dataclasses).

    ``state_dict()`` flattens nested ``State`` fields with dotted keys (``moments.first``) and
    leaves out ``SampleBuffer`` rows, which live in the run directory's shards (only their
    ``count`` is kept); ``from_state_dict(d, samples=...)`` rebuilds the state. Everything in a
    state dict is a tensor, a number, a string, ``None`` or a list/tuple/dict of those, so it
    saves with ``torch.save`` and loads with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict:
        """The state as a flat dict of plain values (sample rows excluded, see the class doc)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SampleBuffer):
                out[f"{f.name}.count"] = value.count
            elif isinstance(value, State):
                out.update({f"{f.name}.{k}": v for k, v in value.state_dict().items()})
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_state_dict(cls, data: dict, samples: Optional["SampleBuffer"] = None):
        """A state from ``state_dict()`` output; ``samples`` fills the state's ``SampleBuffer``."""
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            kind = _unwrap_optional(hints.get(f.name))
            prefix = f"{f.name}."
            if isinstance(kind, type) and issubclass(kind, SampleBuffer):
                if samples is None:
                    raise ValueError(f"{cls.__name__}.{f.name}: the sample rows are missing")
                count = int(data.get(f"{prefix}count", samples.count))
                if samples.count < count:
                    raise ValueError(f"{cls.__name__}: the state counts {count} samples, the "
                                     f"shards hold {samples.count}")
                samples.count = count
                kwargs[f.name] = samples
            elif isinstance(kind, type) and issubclass(kind, State):
                sub = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
                kwargs[f.name] = kind.from_state_dict(sub) if sub else data.get(f.name)
            elif f.name in data:
                kwargs[f.name] = data[f.name]
        return cls(**kwargs)

    def load_state_dict(self, data: dict, samples: Optional["SampleBuffer"] = None) -> "State":
        """Overwrite this state's fields from ``state_dict()`` output (returns ``self``)."""
        other = type(self).from_state_dict(data, samples if samples is not None else buffer_of(self))
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))
        return self


def _unwrap_optional(kind):
    if typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def buffer_of(state: State) -> Optional["SampleBuffer"]:
    return next((getattr(state, f.name) for f in fields(state)
                 if isinstance(getattr(state, f.name), SampleBuffer)), None)


@dataclass
class SampleBuffer:
    """Accepted samples, filled in order: the first ``count`` rows of ``codes`` ``(capacity, ...)``,
    ``values`` ``(capacity, m)`` and each tensor of ``extra`` (e.g. embeddings) are valid."""

    codes: Tensor
    values: Tensor
    extra: dict = field(default_factory=dict)
    count: int = 0

    @classmethod
    def empty(cls, capacity: int, codes_like: Tensor, values_like: Tensor, **extra_like: Tensor) -> "SampleBuffer":
        """A buffer for ``capacity`` rows shaped like one row of each given tensor ``(B, ...)``."""
        def room(t: Tensor) -> Tensor:
            return t.new_zeros((capacity, *t.shape[1:]))
        return cls(room(codes_like), room(values_like), {k: room(v) for k, v in extra_like.items()})

    @property
    def capacity(self) -> int:
        return int(self.codes.shape[0])

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def append(self, codes: Tensor, values: Tensor, **extra: Tensor) -> int:
        """Add rows (as many as there is room for); returns how many were taken."""
        take = min(int(codes.shape[0]), self.capacity - self.count)
        if take <= 0:
            return 0
        a, b = self.count, self.count + take
        self.codes[a:b] = codes[:take].to(self.codes.dtype)
        self.values[a:b] = values[:take].to(self.values.dtype)
        for key, value in extra.items():
            self.extra[key][a:b] = value[:take].to(self.extra[key].dtype)
        self.count = b
        return take

    def rows(self, start: int = 0, stop: Optional[int] = None) -> dict[str, Tensor]:
        """Rows ``start:stop`` (default: up to ``count``) as contiguous CPU copies, by name."""
        stop = self.count if stop is None else stop
        out = {"codes": self.codes[start:stop], "values": self.values[start:stop],
               **{k: v[start:stop] for k, v in self.extra.items()}}
        return {k: v.detach().cpu().clone().contiguous() for k, v in out.items()}

    def resize(self, capacity: int) -> "SampleBuffer":
        """Room for ``capacity`` rows, the valid rows kept (to continue a resumed run to a larger n)."""
        if capacity < self.count:
            raise ValueError(f"cannot resume to n={capacity}: the run already has {self.count} samples")
        def grow(t: Tensor) -> Tensor:
            out = t.new_zeros((capacity, *t.shape[1:]))
            out[: self.count] = t[: self.count]
            return out
        self.codes, self.values = grow(self.codes), grow(self.values)
        self.extra = {k: grow(v) for k, v in self.extra.items()}
        return self

    @classmethod
    def from_rows(cls, rows: dict[str, Tensor], capacity: int) -> "SampleBuffer":
        """A buffer of ``capacity`` rows holding ``rows`` (as loaded from shards)."""
        count = int(rows["codes"].shape[0])
        extra = {k: v for k, v in rows.items() if k not in ("codes", "values")}
        buf = cls(rows["codes"], rows["values"], extra, count)
        return buf.resize(max(capacity, count))


__all__ = ["State", "SampleBuffer", "buffer_of"]
