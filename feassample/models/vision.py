"""Importing torchvision (and timm, which imports it) on a torch build its compiled ops do not fit.

torchvision's wheel ships C++ ops (``nms``, ``roi_align``, ...) built for one torch. Beside another
build (PyPI's torchvision 0.28.0 next to the CPU torch 2.13.0 that ``make setup`` installs) the
library ``torchvision/_C`` does not load; torchvision then still imports its Python model
definitions but dies registering a fake kernel for ``torchvision::nms``, an operator the missing
library would have defined (``operator torchvision::nms does not exist``).

:func:`import_torchvision` checks, before the first import of torchvision, whether its compiled
library loads. When (and only when) it does not, it declares the schemas of the two operators
torchvision's import registers without checking for its library (``nms`` and ``qnms``), with no
kernel. The classification models (ResNet, VGG, ViT, ...) call none of those ops; a detection op
called anyway fails with torchvision's own message ("Couldn't load custom C++ ops ..."), since
every one of them checks for the library first. The declaration is made once per process.
"""
from __future__ import annotations

import glob
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import List, Optional

import torch

# The torchvision operators whose fake kernels torchvision registers at import time without
# first checking that its compiled library loaded (torchvision 0.28: _meta_registrations.py).
UNGUARDED_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# The torch.library handle that owns the declarations: kept alive for the process (a Library
# deregisters what it defined when it is garbage collected).
_DECLARED: List[torch.library.Library] = []


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _compiled_library() -> Optional[str]:
    """The path of torchvision's compiled ops library (``torchvision/_C.so``), or None."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            found = glob.glob(os.path.join(folder, "_C" + suffix))
            if found:
                return found[0]
    return None


def compiled_ops_load() -> bool:
    """Whether torchvision's compiled ops library loads beside this torch (False when absent)."""
    path = _compiled_library()
    if path is None:
        return False
    try:
        torch.ops.load_library(path)
    except (OSError, ImportError, RuntimeError):
        return False
    return True


def declare_missing_ops() -> List[str]:
    """Declare (schemas only, no kernels) the :data:`UNGUARDED_OPS` not already defined; the
    names declared."""
    missing = [name for name in UNGUARDED_OPS if not _op_exists(name)]
    if missing:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            lib.define(UNGUARDED_OPS[name])
        _DECLARED.append(lib)
    return missing


def prepare_torchvision() -> List[str]:
    """Make a later ``import torchvision`` succeed where its compiled ops do not load: the operators
    declared (empty when torchvision is absent, already imported, or its ops load). Run once by
    ``import feassample.models``; cheap and idempotent."""
    if "torchvision" in sys.modules or _DECLARED:
        return []
    if importlib.util.find_spec("torchvision") is None or compiled_ops_load():
        return []
    return declare_missing_ops()


def import_torchvision(name: str = "torchvision") -> ModuleType:
    """``torchvision`` (or one of its modules, e.g. ``"torchvision.models"``), importable even
    where its compiled ops do not load. Raises ImportError when torchvision is not installed."""
    if importlib.util.find_spec("torchvision") is None:
        raise ModuleNotFoundError("No module named 'torchvision'", name="torchvision")
    prepare_torchvision()
    return importlib.import_module(name)


def import_vision(name: str) -> ModuleType:
    """An optional vision library by module name (``torchvision...`` or ``timm...``): torchvision is
    made importable first (:func:`import_torchvision`), since timm imports it."""
    if name.split(".")[0] in ("torchvision", "timm"):
        try:
            import_torchvision()
        except ModuleNotFoundError:
            if name.split(".")[0] == "torchvision":
                raise
    return importlib.import_module(name)
