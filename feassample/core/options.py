"""One check for every option of every settings dataclass: its type from the field's annotation,
its range or choices from the field's ``metadata``.

``check_options(config)`` (called first in each ``Config.__post_init__``, and by ``make_config``
for any sampler's ``Config``) refuses, in one line naming the option, a value that does not fit:

* ``int``: an integer (numpy integers too); a bool, a float (``1.5``, ``2.0``) or a string is not.
* ``float``: a real number (an int is one); a bool, a string, a complex number or NaN is not;
  infinity only where the field's metadata says ``{"inf": True}``.
* ``bool``: ``True`` or ``False`` (not ``"yes"``, not ``1``).
* ``str``: a string, one of ``metadata["choices"]`` when given (with "did you mean").
* ``Optional[X]``: ``None`` or an ``X``; ``Union[float, str]``: either.
* other annotations (``Any``, sequences, dicts, tensors) are left to the class's own
  ``__post_init__``.

Ranges: ``metadata`` keys ``ge``, ``gt``, ``le``, ``lt`` (``field(default=0.5, metadata={"gt": 0,
"lt": 1})``: a number in ``(0, 1)``). Cross-field checks (``max_moves >= moves``) stay in the
class's ``__post_init__``.
"""
from __future__ import annotations

import difflib
import math
import numbers
import operator
import types
import typing
from dataclasses import fields
from functools import lru_cache
from typing import Any, Union

_BOUNDS = (("ge", ">=", operator.ge), ("gt", ">", operator.gt), ("le", "<=", operator.le),
           ("lt", "<", operator.lt))


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001  (an annotation we cannot resolve is not checked)
        return {}


def _range_text(meta) -> str:
    lo = [(k, s) for k, s, _ in _BOUNDS[:2] if k in meta]
    hi = [(k, s) for k, s, _ in _BOUNDS[2:] if k in meta]
    if lo and hi:
        (lk, _), (hk, _) = lo[0], hi[0]
        return (f" in {'[' if lk == 'ge' else '('}{meta[lk]:g}, "
                f"{meta[hk]:g}{']' if hk == 'le' else ')'}")
    return "".join(f" {s} {meta[k]:g}" for k, s in lo + hi)


def _is_int(value) -> bool:
    if isinstance(value, bool) or (hasattr(value, "dtype") and str(getattr(value, "dtype")) == "bool"):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _is_real(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return str(getattr(value, "dtype", "")) != "bool"


def _in_range(value, meta) -> bool:
    return all(op(value, meta[key]) for key, _, op in _BOUNDS if key in meta)


def _fits(value, kind, meta) -> bool:
    """Whether ``value`` is a valid ``kind`` (a plain type) under ``meta``."""
    if kind is int:
        return _is_int(value) and _in_range(operator.index(value), meta)
    if kind is float:
        if not _is_real(value):
            return False
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not meta.get("inf", False)):
            return False
        return _in_range(v, meta)
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return isinstance(value, str) and ("choices" not in meta or value in meta["choices"])
    return True


def _describe(kind, meta, value) -> str:
    if kind is int:
        return "an integer" + _range_text(meta)
    if kind is float:
        infinite = _is_real(value) and math.isinf(float(value)) and not meta.get("inf", False)
        return ("a finite number" if infinite else "a number") + _range_text(meta)
    if kind is bool:
        return "True or False"
    if kind is str:
        if "choices" not in meta:
            return "a string"
        choices = tuple(meta["choices"])
        return repr(choices[0]) if len(choices) == 1 else f"one of {choices}"
    return getattr(kind, "__name__", str(kind))


def _kinds(hint) -> tuple[tuple, bool]:
    """The plain types a hint allows (int, float, bool, str; others: unchecked) and whether
    ``None`` is allowed."""
    origin = typing.get_origin(hint)
    if origin is Union or (hasattr(types, "UnionType") and origin is getattr(types, "UnionType")):
        args = typing.get_args(hint)
        return tuple(a for a in args if a is not type(None)), type(None) in args
    return (hint,), False


CHECKED = (int, float, bool, str)


def check_value(name: str, value: Any, hint: Any, meta) -> None:
    """Refuse ``value`` for the option ``name`` unless it fits ``hint`` and ``meta`` (one line)."""
    kinds, optional = _kinds(hint)
    if value is None and optional:
        return
    checked = [k for k in kinds if k in CHECKED]
    if not checked or len(checked) < len(kinds):  # an unchecked kind (Any, a sequence...) may fit
        return
    if any(_fits(value, k, meta) for k in checked):
        return
    wanted = " or ".join(_describe(k, meta, value) for k in checked) + (" or None" if optional else "")
    hint_text = ""
    if str in checked and isinstance(value, str) and "choices" in meta:
        hint = did_you_mean(value, meta["choices"])
        hint_text = f" ({hint})" if hint else ""
    raise ValueError(f"{name} must be {wanted}, got {value!r}{hint_text}")


def did_you_mean(name: Any, choices, cutoff: float = 0.6) -> str:
    """``"did you mean 'X'?"`` for the closest of ``choices`` to ``name`` (``difflib``), or ``""``:
    the one wording of every suggestion, from the Python API and the command line alike."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}?" if close else ""


def check_options(config: Any) -> None:
    """Check every field of the dataclass instance ``config`` against its annotation and
    metadata (see the module docstring); the first misfit is refused naming the field."""
    hints = _hints(type(config))
    for f in fields(config):
        if f.name in hints:
            check_value(f.name, getattr(config, f.name), hints[f.name], f.metadata)


def option(default: Any = None, **meta: Any) -> Any:
    """A dataclass field with a default and checking metadata: ``option(0.5, gt=0, lt=1)``."""
    from dataclasses import field
    return field(default=default, metadata=meta)


__all__ = ["check_options", "check_value", "option"]
