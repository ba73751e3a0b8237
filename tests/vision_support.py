"""Importing the optional vision libraries in tests (torchvision, timm), or skipping with a reason.

The library makes torchvision importable on a CPU torch its compiled ops were not built for
(``feassample.models.vision``); tests import through it and shim nothing. Where the vision extra
is required (``make test`` sets ``FEASSAMPLE_REQUIRE_VISION=1``, since ``make setup`` installs it)
a missing library fails the test instead of skipping it.
"""
from __future__ import annotations

import os

import pytest

from feassample.models.vision import import_vision as _import_vision


def import_vision(name: str):
    """``torchvision`` or ``timm``, or ``pytest.skip`` when not installed (a failure when
    ``FEASSAMPLE_REQUIRE_VISION=1``)."""
    try:
        return _import_vision(name)
    except ModuleNotFoundError as err:
        if err.name not in (name.split(".")[0], "torchvision"):
            raise
        message = f"{err.name} is not installed (optional extra: pip install 'feassample[vision]')"
        if os.environ.get("FEASSAMPLE_REQUIRE_VISION") == "1":
            pytest.fail(message + "; FEASSAMPLE_REQUIRE_VISION=1 requires it")
        pytest.skip(message)
