"""Your own models and problem factories from files you name (nothing else is ever imported)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn


def load_object(spec: str, base: Optional[Path] = None) -> Any:
    """The object named by ``"path/to/file.py:name"`` or ``"package.module:name"``.

    A relative file path is resolved against ``base`` (default: the current directory).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"expected 'path/to/file.py:name' or 'package.module:name', got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist or is not a file (from {spec!r})")
        module_name = f"feassample_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        if module_name not in sys.modules:
            spec_obj = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[module_name] = module
            spec_obj.loader.exec_module(module)
        module = sys.modules[module_name]
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ValueError(f"cannot import module {where!r} (from {spec!r}): {err}") from err
    if not hasattr(module, name):
        raise AttributeError(f"{where} has no attribute {name!r} (from {spec!r})")
    return getattr(module, name)


def load_model_file(cls: str, state_dict: str, kwargs: Optional[dict] = None,
                    base: Optional[Path] = None) -> nn.Module:
    """Build ``cls(**kwargs)`` and load a state_dict file into it (``weights_only=True``).

    Args:
        cls: ``"path/to/net.py:Net"`` or ``"package.module:Net"``.
        state_dict: path of a file written by ``torch.save(model.state_dict(), path)``.
        kwargs: constructor arguments.
    """
    factory = load_object(cls, base)
    model = factory(**(kwargs or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"{cls} built a {type(model).__name__}, not a torch.nn.Module")
    from .formats import load_state_dict
    weights = load_state_dict(state_dict, base)
    model.load_state_dict(weights)
    return model.eval()
