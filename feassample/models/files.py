"""Your own models and problem factories from files you name (nothing else is ever imported).

The rule for a config value that names code (``problem.factory``, ``model.cls``, a plug-in's
``_target_``):

* ``path/to/file.py:name``: a Python file **you** name is run (naming it is your choice) and
  ``name`` is taken from it; the caller then checks what it built.
* ``package.module:name``: an installed module is imported (running only its import code, as any
  ``import`` would) and ``name`` must be a **class of the expected kind** (a ``FeasibleSet``
  subclass for ``problem.factory``, an ``nn.Module`` subclass for ``model.cls``), checked before
  anything is called. Functions from installed modules (``os:system``, ``subprocess:run``) are
  refused, and standard-library modules are refused before they are imported (they hold no
  models or problems).
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Optional

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _kind_names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(f"{k.__module__.split('.')[0]}'s {k.__name__}" for k in kinds)


def load_object(spec: str, base: Optional[Path] = None, *, kind=None, what: str = "spec") -> Any:
    """The object named by ``"path/to/file.py:name"`` or ``"package.module:name"``.

    A relative file path is resolved against ``base`` (default: the current directory).
    ``kind`` (a class or a tuple of classes): with a ``package.module:name`` spec, the object must
    be a subclass of it, checked before the caller calls anything (see the module docstring);
    standard-library modules are refused without being imported. ``what`` names the setting in
    messages (``"problem.factory"``).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"{what} must be 'path/to/file.py:name' or 'package.module:name', got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if not _NAME.match(name):
        raise ValueError(f"{what}={spec!r}: {name!r} after the ':' is not a Python name")
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
            try:
                spec_obj.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
        module = sys.modules[module_name]
    else:
        if not _MODULE.match(where):
            raise ValueError(f"{what}={spec!r}: {where!r} is neither a .py file nor a module name")
        top = where.split(".")[0]
        if kind is not None and top in getattr(sys, "stdlib_module_names", ()):
            raise TypeError(f"{what}={spec!r} names the standard library's {where!r} (not imported): not "
                            f"a subclass of {_kind_names(kind)}; name such a class of your own package, "
                            f"or a file (path/to/file.py:name)")
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ValueError(f"cannot import module {where!r} (from {spec!r}): {err}") from err
    if not hasattr(module, name):
        raise AttributeError(f"{where} has no attribute {name!r} (from {spec!r})")
    obj = getattr(module, name)
    if kind is not None and not where.endswith(".py") and \
            not (isinstance(obj, type) and issubclass(obj, kind)):
        raise TypeError(f"{what}={spec!r} names {type(obj).__name__} {name!r}, not a subclass of "
                        f"{_kind_names(kind)}: from an installed module only such a class is "
                        f"accepted (functions only from a file you name: path/to/file.py:{name})")
    return obj
