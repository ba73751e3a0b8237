"""Models by name and by file format, loaded without unpickling arbitrary objects.

``load_model(kind, ...)`` returns a module in eval mode that carries its input contract as
``model.preprocessing`` (a :class:`~feassample.problems.preprocessing.Preprocessing`) whenever
the library it comes from states one, so ``NeuronInverseSet`` normalizes inputs the way the model
was trained on them. See ``docs/models.md``.

kinds:
    ``"torchvision"``  ``arch=`` a torchvision classification model name, ``weights=`` a local
                       state_dict file; preprocessing from torchvision's weights enum.
    ``"timm"``         ``arch=`` a timm model name, ``weights=`` a local state_dict file;
                       preprocessing from the model's ``pretrained_cfg``.
    ``"exported"``     ``path=`` a ``torch.export`` program (``.pt2``, from ``torch.export.save``).
    ``"torchscript"``  ``path=`` a TorchScript archive (from ``torch.jit.save``); only its output
                       can be read (TorchScript runs no Python hooks).
    ``"file"``         ``cls="net.py:Net"``, ``weights=`` a state_dict file (``load_model_file``).

Weights are never downloaded: every file is local.
"""
from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..problems.preprocessing import Preprocessing
from .files import load_object
from .vision import import_vision

KINDS = ("torchvision", "timm", "exported", "torchscript", "file")
SAFE_FORMATS = ("a state_dict (torch.save(model.state_dict(), path)) with kind 'torchvision', "
                "'timm' or 'file', a torch.export program (.pt2, torch.export.save) or a "
                "TorchScript archive (torch.jit.save)")


class UnsafeModelFile(ValueError):
    """A file that could only be read by unpickling arbitrary objects."""


def _resolve(path, what: str, base: Optional[Path] = None) -> Path:
    if path is None:
        raise ValueError(f"{what} is required: the path of a local file (nothing is downloaded)")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    return p


def file_format(path: Path) -> str:
    """What a file is, from its bytes: ``"exported"``, ``"torchscript"``, ``"pickle"`` (a zip
    written by ``torch.save``, a state_dict or a whole module), or ``"unknown"``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "unknown"
    if any(n.endswith("/models/model.json") or n.endswith("archive_format") for n in names):
        return "exported"
    if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") or
                                                 n.endswith("/data.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "pickle"
    return "unknown"


def load_state_dict(path, base: Optional[Path] = None) -> dict:
    """A state_dict from a local file, read with ``weights_only=True``; one line on refusal."""
    p = _resolve(path, "weights", base)
    kind = file_format(p)
    if kind in ("exported", "torchscript"):
        raise ValueError(f"{p} is a {'torch.export program' if kind == 'exported' else 'TorchScript archive'}, "
                         f"not a state_dict: load it with kind {kind!r}")
    try:
        weights = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unpickling failure is the same refusal)
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UnsafeModelFile(f"{p} holds pickled Python objects (a whole module saved with "
                              f"torch.save(model)?), which feassample never unpickles (it reads "
                              f"weights with weights_only=True); save instead {SAFE_FORMATS} "
                              f"[torch: {first}]") from None
    if isinstance(weights, dict) and "state_dict" in weights and isinstance(weights["state_dict"], dict):
        weights = weights["state_dict"]  # a checkpoint dict that holds one
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{p} holds a {type(weights).__name__}, not a state_dict of tensors")
    return weights


def _load_into(model: nn.Module, weights: dict, where: str) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = " ".join(lines[1:3])[:300] if len(lines) > 1 else lines[0][:300]
        raise ValueError(f"the weights in {where} do not fit this architecture: {detail}") from None


def _import(name: str):
    """An optional library, or one line on how to get it."""
    package = name.split(".")[0]
    try:
        return import_vision(name)
    except ImportError:
        raise ImportError(f"{package} is not installed: pip install 'feassample[vision]'") from None
    except Exception as err:  # noqa: BLE001 (a broken install: e.g. C++ ops built for another torch)
        first = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
        raise ImportError(f"{package} is installed but cannot be imported with torch "
                          f"{torch.__version__} ({first}): install the {package} build that "
                          f"matches your torch") from None


def _preprocessing(found: Optional[Preprocessing], input_range, mean, std, input_shape,
                   what: str) -> Preprocessing:
    """Metadata ``found`` in the library, overridden by what the caller gave; a clear error
    when neither says what the model needs."""
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("mean and std go together: give both (per-channel normalization)")
    if found is None and (mean is None or input_range is None):
        missing = [n for n, v in (("input_range", input_range), ("mean", mean), ("std", std)) if v is None]
        raise ValueError(f"{what} states no preprocessing: give {', '.join(missing)}= (the valid input "
                         f"range and per-channel normalization the weights were trained with)")
    base = found or Preprocessing(input_range=tuple(input_range))
    return Preprocessing(
        input_range=tuple(input_range) if input_range is not None else base.input_range,
        mean=tuple(mean) if mean is not None else base.mean,
        std=tuple(std) if std is not None else base.std,
        input_shape=tuple(input_shape) if input_shape is not None else base.input_shape,
        source=base.source if (mean is None and input_range is None) else
        (f"{base.source} with arguments" if base.source else "arguments"))


def torchvision_preprocessing(arch: str, weights_enum: str = "DEFAULT") -> Optional[Preprocessing]:
    """The preprocessing torchvision states for ``arch`` (its weights enum entry ``weights_enum``):
    inputs in [0, 1] normalized by the enum's mean/std, at the enum's crop size."""
    tv_models = _import("torchvision.models")
    try:
        enum = tv_models.get_model_weights(arch)
    except (ValueError, KeyError):
        return None
    try:
        entry = enum[weights_enum] if weights_enum != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(f"{enum.__name__} has no entry {weights_enum!r}: choose from "
                         f"{', '.join(m.name for m in enum)}") from None
    transform = entry.transforms()
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is None or std is None:
        return None
    crop = getattr(transform, "crop_size", None)
    size = int(crop[0]) if isinstance(crop, (list, tuple)) else (int(crop) if crop else None)
    return Preprocessing(input_range=(0.0, 1.0), mean=tuple(mean), std=tuple(std),
                         input_shape=(len(mean), size, size) if size else None,
                         source=f"torchvision {type(entry).__name__}.{entry.name}")


def load_torchvision(arch: str, weights=None, *, weights_enum: str = "DEFAULT",
                     input_range=None, mean=None, std=None, input_shape=None,
                     base: Optional[Path] = None, **kwargs: Any) -> nn.Module:
    """A torchvision model by name with weights from a local state_dict file.

    Args:
        arch: e.g. ``"resnet18"`` (``torchvision.models.list_models()``).
        weights: a state_dict file (e.g. the ImageNet weights downloaded once by the user, or
            ``torch.save(model.state_dict(), path)``). Required: nothing is downloaded.
        weights_enum: the entry of the architecture's weights enum whose preprocessing applies
            (default: torchvision's ``DEFAULT``).
        input_range, mean, std, input_shape: override the metadata (required for architectures
            torchvision states none for).
        kwargs: constructor arguments (e.g. ``num_classes=10``).
    """
    tv_models = _import("torchvision.models")
    if arch not in tv_models.list_models():
        import difflib
        close = difflib.get_close_matches(arch, tv_models.list_models(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown torchvision architecture arch={arch!r}.{hint}")
    state = load_state_dict(weights, base)
    model = tv_models.get_model(arch, weights=None, **kwargs)
    _load_into(model, state, str(weights))
    found = torchvision_preprocessing(arch, weights_enum)
    model.preprocessing = _preprocessing(found, input_range, mean, std, input_shape,
                                         f"torchvision architecture {arch!r}")
    return model.eval()


def timm_preprocessing(model: nn.Module) -> Optional[Preprocessing]:
    """The preprocessing in a timm model's ``pretrained_cfg`` (mean, std, input_size)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:
        return None
    size = cfg.get("input_size")
    return Preprocessing(input_range=(0.0, 1.0), mean=tuple(mean), std=tuple(std),
                         input_shape=tuple(size) if size else None,
                         source=f"timm pretrained_cfg of {cfg.get('architecture', '?')}"
                                f"{'.' + cfg['tag'] if cfg.get('tag') else ''}")


def load_timm(arch: str, weights=None, *, input_range=None, mean=None, std=None,
              input_shape=None, base: Optional[Path] = None, **kwargs: Any) -> nn.Module:
    """A timm model by name (``pretrained=False``) with weights from a local state_dict file;
    preprocessing from its ``pretrained_cfg``."""
    timm = _import("timm")
    if not timm.is_model(arch):
        import difflib
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown timm architecture arch={arch!r}.{hint}")
    state = load_state_dict(weights, base)
    model = timm.create_model(arch, pretrained=False, **kwargs)
    _load_into(model, state, str(weights))
    model.preprocessing = _preprocessing(timm_preprocessing(model), input_range, mean, std,
                                         input_shape, f"timm architecture {arch!r}")
    return model.eval()


def _file_kind_check(p: Path, expected: str) -> None:
    kind = file_format(p)
    if kind == expected:
        return
    if kind == "pickle":
        raise UnsafeModelFile(f"{p} was written by torch.save (a state_dict or a pickled module), "
                              f"not {'torch.export.save' if expected == 'exported' else 'torch.jit.save'}: "
                              f"feassample never unpickles modules; use {SAFE_FORMATS}")
    if kind in ("exported", "torchscript"):
        raise ValueError(f"{p} is a {'torch.export program' if kind == 'exported' else 'TorchScript archive'}: "
                         f"load it with kind {kind!r}")
    raise ValueError(f"{p} is not a {'torch.export program (.pt2)' if expected == 'exported' else 'TorchScript archive'}")


def _attach(model: nn.Module, input_range, mean, std, input_shape, what: str) -> nn.Module:
    if input_range is not None or mean is not None:
        model.preprocessing = _preprocessing(None, input_range, mean, std, input_shape, what) \
            if mean is not None else Preprocessing(
                input_range=tuple(input_range),
                input_shape=tuple(input_shape) if input_shape is not None else None,
                source="arguments")
    return model


def load_exported(path, *, input_range=None, mean=None, std=None, input_shape=None,
                  base: Optional[Path] = None) -> nn.Module:
    """A ``torch.export`` program (``.pt2``) as a module whose submodules keep their names
    (``torch.export.unflatten``), so any layer can be read with hooks.

    A program carries no preprocessing: give ``input_range`` (and ``mean``/``std`` when the
    program does not normalize its inputs itself), here or to the problem. The program must have
    been exported with a dynamic batch dimension (``dynamic_shapes``) to sample batches of any
    size.
    """
    p = _resolve(path, "path", base)
    _file_kind_check(p, "exported")
    program = torch.export.load(str(p))
    model = torch.export.unflatten(program)
    return _attach(model, input_range, mean, std, input_shape, f"the program {p.name}").eval()


def load_torchscript(path, *, input_range=None, mean=None, std=None, input_shape=None,
                     base: Optional[Path] = None) -> nn.Module:
    """A TorchScript archive (``torch.jit.save``). TorchScript modules run no Python hooks, so
    only the model's output can be measured (layer ``"output"``, e.g. ``unit="output:3"``).
    """
    p = _resolve(path, "path", base)
    _file_kind_check(p, "torchscript")
    model = torch.jit.load(str(p), map_location="cpu")
    return _attach(model, input_range, mean, std, input_shape, f"the archive {p.name}").eval()


def load_model(kind: str, *, arch: Optional[str] = None, weights=None, path=None,
               cls: Optional[str] = None, kwargs: Optional[dict] = None,
               input_range: Optional[Sequence[float]] = None, mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None, input_shape: Optional[Sequence[int]] = None,
               weights_enum: str = "DEFAULT", base: Optional[Path] = None) -> nn.Module:
    """A model of any supported kind (see the module docstring), in eval mode.

    Examples::

        load_model("torchvision", arch="resnet18", weights="resnet18.pth")
        load_model("timm", arch="resnet18", weights="sd.pt")
        load_model("exported", path="net.pt2", input_range=(0, 1))
        load_model("torchscript", path="net.ts", input_range=(-1, 1))
        load_model("file", cls="net.py:Net", weights="sd.pt", input_range=(0, 1))
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}: choose from {', '.join(KINDS)}")
    extra = dict(input_range=input_range, mean=mean, std=std, input_shape=input_shape, base=base)
    if kind in ("torchvision", "timm"):
        if not arch:
            raise ValueError(f"kind {kind!r} needs arch= (e.g. 'resnet18')")
        if kind == "torchvision":
            return load_torchvision(arch, weights, weights_enum=weights_enum, **extra, **(kwargs or {}))
        return load_timm(arch, weights, **extra, **(kwargs or {}))
    if kind == "exported":
        return load_exported(path, **extra)
    if kind == "torchscript":
        return load_torchscript(path, **extra)
    if not cls:
        raise ValueError("kind 'file' needs cls='path/to/net.py:Net'")
    factory = load_object(cls, base, kind=nn.Module, what="model.cls")
    model = factory(**(kwargs or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"{cls} built a {type(model).__name__}, not a torch.nn.Module")
    _load_into(model, load_state_dict(weights, base), str(weights))
    return _attach(model, input_range, mean, std, input_shape, cls).eval()


def load_model_file(cls: str, state_dict, kwargs: Optional[dict] = None,
                    base: Optional[Path] = None) -> nn.Module:
    """Build ``cls(**kwargs)`` (``"path/to/net.py:Net"`` or ``"package.module:Net"``) and load a
    state_dict file into it with ``weights_only=True``: ``load_model("file", ...)``."""
    return load_model("file", cls=cls, weights=state_dict, kwargs=kwargs, base=base)
