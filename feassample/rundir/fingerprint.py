"""A problem's fingerprint: digests of everything that defines its feasible set, so that a run
directory is resumed only by the same problem.

``fingerprint(problem)`` maps names to SHA-256 digests: ``"definition"`` (the problem's
``config()``: class, bands, code and input shapes, box, and what subclasses add) and one entry per
attribute that carries data: tensors (``w``, ``c``...), modules (a model, a generator, an encoder:
every parameter and buffer), functions (a constraint's code and constants), and the members of an
intersection (``members.0.w``...).
"""
from __future__ import annotations

import hashlib
import json
import types
from typing import Any

import torch
from torch import Tensor, nn


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


def function_digest(fn: Any) -> str:
    """SHA-256 of a Python function's code, constants and names (best effort for closures)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return hashlib.sha256(repr(fn).encode()).hexdigest()
    h = hashlib.sha256(code.co_code)
    h.update(repr(code.co_consts).encode())
    h.update(repr(code.co_names).encode())
    return h.hexdigest()


def _entries(prefix: str, value: Any, out: dict, depth: int) -> None:
    if isinstance(value, Tensor):
        out[prefix] = tensor_digest(value)
    elif isinstance(value, nn.Module):
        out[prefix] = module_digest(value)
    elif isinstance(value, (types.FunctionType, types.MethodType)):
        out[prefix] = function_digest(value)
    elif depth < 2 and isinstance(value, (list, tuple)) and value and \
            all(hasattr(v, "config") and hasattr(v, "bands") for v in value):
        for i, member in enumerate(value):
            for key, digest in fingerprint(member, depth + 1).items():
                out[f"{prefix}.{i}.{key}"] = digest


def fingerprint(problem, depth: int = 0) -> dict[str, str]:
    """``{name: sha256}`` of what defines ``problem`` (see the module docstring)."""
    text = json.dumps(problem.config(), sort_keys=True, default=str)
    out = {"definition": hashlib.sha256(text.encode()).hexdigest()}
    for name, value in sorted(vars(problem).items()):
        _entries(name.lstrip("_"), value, out, depth)
    return out


def differences(saved: dict, now: dict) -> list[str]:
    """The names whose digests differ (or exist on one side only), sorted."""
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


__all__ = ["fingerprint", "differences", "tensor_digest", "module_digest", "function_digest"]
