"""A problem's fingerprint: digests of everything that defines its feasible set, so that a run
directory is resumed only by the same problem.

``fingerprint(problem)`` maps names to SHA-256 digests: ``"definition"`` (the problem's
``config()``: class, bands, code and input shapes, box, and what subclasses add) and one entry per
attribute that carries data: tensors (``w``, ``c``...), modules (a model, a generator, an encoder:
every parameter and buffer), functions, callable objects, and the members of an intersection
(``members.0.w``...).

A function's digest covers what it reads, not only its code (``function_digest``): its bytecode
and constants (nested functions and lambdas included), the values in its closure cells, its
defaults (``__defaults__``, ``__kwdefaults__``), and every global it names (``co_names`` of it and
of its nested code, looked up in ``__globals__``), each digested by value (tensor bytes, a module's
``state_dict``, plain values, containers, other functions recursively to ``MAX_DEPTH``). So a
``from_functions`` constraint whose weights live in a closure or a global has another fingerprint
when one weight changes.

What cannot be digested (an object without readable state such as a ``torch.Generator`` or a
lock, or a chain of references deeper than ``MAX_DEPTH``) is recorded as ``UNDIGESTED`` plus
where it was read; ``undigested(fingerprint)`` names those entries and a resume refuses them
(``rundir.resume.check_same_problem``) unless ``fs.sample(..., resume_unchecked=True)``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import site
import sysconfig
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: how deep references are followed from a problem's attribute (function -> global -> ...)
MAX_DEPTH = 6
#: the prefix of a fingerprint entry whose value could not be digested
UNDIGESTED = "undigested:"

_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, type(Ellipsis))


_BUILTINS = (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
             types.MethodDescriptorType, types.MethodWrapperType, types.ClassMethodDescriptorType)


@functools.lru_cache(maxsize=None)
def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages())
    roots.add(str(Path(__file__).resolve().parents[1]))  # feassample itself
    return tuple(str(Path(r).resolve()) for r in roots if r)


@functools.lru_cache(maxsize=4096)
def _installed(filename: str) -> bool:
    """Whether code from ``filename`` is a library's (stdlib, site-packages, feassample)."""
    if filename.startswith("<"):
        return False
    path = str(Path(filename).resolve())
    return any(path.startswith(root + "/") for root in _library_roots())


class Undigestable(Exception):
    """A value a constraint reads that has no digest; ``str()`` says where it was read."""


def tensor_digest(t: Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and values (on the CPU, contiguous)."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    data = t.detach().to("cpu").contiguous()
    if data.dtype == torch.bfloat16:
        data = data.float()
    h.update(data.numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()


def module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's class and every parameter and buffer, by name."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, value in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor_digest(value).encode() if isinstance(value, Tensor) else repr(value).encode())
    return h.hexdigest()


def _codes(code: types.CodeType):
    """``code`` and every code object nested in its constants (lambdas, inner functions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _code_text(code: types.CodeType) -> bytes:
    parts = []
    for c in _codes(code):
        consts = tuple(x for x in c.co_consts if not isinstance(x, types.CodeType))
        parts.append(c.co_code + repr(consts).encode() + repr(c.co_names).encode())
    return b"|".join(parts)


class _Digester:
    """Digests values reached from one root, following references to ``MAX_DEPTH``."""

    def __init__(self, root: Any = None) -> None:
        self.root = root
        self.active: set[int] = set()  # ids on the current path (a cycle digests as a marker)

    def value(self, v: Any, where: str, depth: int) -> str:
        if isinstance(v, Tensor):
            return "T" + tensor_digest(v)
        if isinstance(v, nn.Module):
            return "M" + module_digest(v)
        if isinstance(v, _PLAIN):
            return "P" + type(v).__name__ + repr(v)
        if isinstance(v, types.ModuleType):
            return "mod:" + v.__name__
        if isinstance(v, type):
            return f"cls:{v.__module__}.{v.__qualname__}"
        if isinstance(v, _BUILTINS) or type(v).__module__.startswith("torch._ops"):
            name = f"{getattr(v, '__module__', None)}.{getattr(v, '__qualname__', getattr(v, '__name__', ''))}"
            owner = getattr(v, "__self__", None)
            if owner is None or isinstance(owner, (types.ModuleType, type)):
                return "builtin:" + name
            return "bmeth:" + name + self.value(owner, f"{where}.__self__", depth + 1)
        if isinstance(v, types.FunctionType) and _installed(v.__code__.co_filename):
            # library code (torch.nn.functional.relu...): its name; its data is not the user's
            return f"lib:{v.__module__}.{v.__qualname__}"
        if depth > MAX_DEPTH:
            raise Undigestable(f"{where} (references deeper than {MAX_DEPTH} levels)")
        if id(v) in self.active or v is self.root:
            return "cycle"
        self.active.add(id(v))
        try:
            return self._composite(v, where, depth)
        finally:
            self.active.discard(id(v))

    def _composite(self, v: Any, where: str, depth: int) -> str:
        if isinstance(v, types.FunctionType):
            return "F" + self.function(v, where, depth)
        if isinstance(v, types.MethodType):
            own = "self" if v.__self__ is self.root else self.value(v.__self__, f"{where}.__self__", depth + 1)
            return "B" + self.function(v.__func__, where, depth) + own
        if isinstance(v, functools.partial):
            return "p" + self._join([self.value(v.func, f"{where}.func", depth + 1),
                                     self.value(v.args, f"{where}.args", depth + 1),
                                     self.value(v.keywords, f"{where}.keywords", depth + 1)])
        if isinstance(v, (list, tuple, set, frozenset)):
            items = sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v
            return type(v).__name__ + self._join([self.value(x, f"{where}[{i}]", depth + 1)
                                                  for i, x in enumerate(items)])
        if isinstance(v, dict):
            return "dict" + self._join([self.value(k, f"{where} key", depth + 1) + "=" +
                                        self.value(x, f"{where}[{k!r}]", depth + 1)
                                        for k, x in v.items()])
        array = getattr(v, "__array_interface__", None)
        if array is not None and hasattr(v, "tobytes"):
            return "A" + hashlib.sha256(repr((array["typestr"], array["shape"])).encode()
                                        + v.tobytes()).hexdigest()
        state = getattr(v, "__dict__", None)
        if isinstance(state, dict) and not hasattr(type(v), "__slots__"):
            # a plain object (a callable class, a config, a problem): its attributes by value
            return f"obj:{type(v).__module__}.{type(v).__qualname__}" + self._join(
                [f"{k}=" + self.value(x, f"{where}.{k}", depth + 1) for k, x in sorted(state.items())])
        raise Undigestable(f"{where} (a {type(v).__module__}.{type(v).__qualname__}, which has no "
                           "readable state)")

    def function(self, fn: types.FunctionType, where: str, depth: int) -> str:
        code = fn.__code__
        parts = [hashlib.sha256(_code_text(code)).hexdigest()]
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                parts.append(f"{name}=<empty>")
                continue
            parts.append(f"{name}=" + self.value(content, f"{where}: closure {name!r}", depth + 1))
        parts.append(self.value(fn.__defaults__, f"{where}: defaults", depth + 1))
        parts.append(self.value(fn.__kwdefaults__, f"{where}: keyword defaults", depth + 1))
        scope = fn.__globals__
        names = sorted({n for c in _codes(code) for n in c.co_names if n in scope})
        for name in names:
            parts.append(f"{name}=" + self.value(scope[name], f"{where}: global {name!r}", depth + 1))
        return self._join(parts)

    @staticmethod
    def _join(parts: list[str]) -> str:
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def function_digest(fn: Any) -> str:
    """SHA-256 of a function and everything it reads: code (nested code included), closure
    cells, defaults and the globals it names, by value (see the module docstring). Raises
    ``Undigestable`` naming what it could not digest."""
    return _Digester().value(fn, getattr(fn, "__qualname__", repr(fn)), 0)


def _entries(prefix: str, value: Any, out: dict, depth: int, root: Any) -> None:
    if isinstance(value, Tensor):
        out[prefix] = tensor_digest(value)
    elif isinstance(value, nn.Module):
        out[prefix] = module_digest(value)
    elif depth < 2 and isinstance(value, (list, tuple)) and value and \
            all(hasattr(v, "config") and hasattr(v, "bands") for v in value):
        for i, member in enumerate(value):
            for key, digest in fingerprint(member, depth + 1).items():
                out[f"{prefix}.{i}.{key}"] = digest
    elif callable(value) and not isinstance(value, type):
        # functions, bound methods, partials and callable objects: what they read, by value
        try:
            out[prefix] = hashlib.sha256(_Digester(root).value(value, prefix, 0).encode()).hexdigest()
        except Undigestable as err:
            out[prefix] = f"{UNDIGESTED} {err}"


def fingerprint(problem, depth: int = 0) -> dict[str, str]:
    """``{name: sha256}`` of what defines ``problem`` (see the module docstring); an entry that
    could not be digested holds ``UNDIGESTED`` and where (``undigested``)."""
    text = json.dumps(problem.config(), sort_keys=True, default=str)
    out = {"definition": hashlib.sha256(text.encode()).hexdigest()}
    for name, value in sorted(vars(problem).items()):
        _entries(name.lstrip("_"), value, out, depth, problem)
    return out


def undigested(prints: dict) -> list[str]:
    """The entries of a fingerprint that could not be digested, each with where, sorted."""
    return sorted(f"{k}: {v[len(UNDIGESTED):].strip()}" for k, v in prints.items()
                  if isinstance(v, str) and v.startswith(UNDIGESTED))


def differences(saved: dict, now: dict) -> list[str]:
    """The names whose digests differ (or exist on one side only), sorted."""
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


__all__ = ["fingerprint", "differences", "undigested", "tensor_digest", "module_digest",
           "function_digest", "Undigestable", "MAX_DEPTH", "UNDIGESTED"]
