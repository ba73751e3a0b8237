"""Importing the optional vision libraries in tests (torchvision, timm), or skipping with a reason.

torchvision's wheel on PyPI ships C++ ops (nms, roi_align...) built against PyPI's CUDA torch. On
the CPU build of torch they fail to load, and torchvision's import then dies registering a fake
kernel for ``torchvision::nms`` (``operator torchvision::nms does not exist``). The classification
models these tests use call none of those ops, so when (and only when) that happens the tests
declare the two operator schemas torchvision registers unguarded and import it again. The library
itself never does this: it reports the broken install in one line (``feassample.models.formats``).
"""
from __future__ import annotations

import importlib
import sys

import pytest
import torch

_SHIM = []


def _declare_missing_torchvision_ops() -> None:
    if _SHIM:
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SHIM.append(lib)


def import_vision(name: str):
    """``torchvision`` or ``timm``, or ``pytest.skip`` when not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (optional extra: pip install 'feassample[vision]')")
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith(("torchvision.", "timm"))]:
        del sys.modules[mod]
    _declare_missing_torchvision_ops()
    return importlib.import_module(name)
