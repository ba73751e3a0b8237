"""Your own models and problem factories from files you name (nothing else is ever imported)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Optional



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
