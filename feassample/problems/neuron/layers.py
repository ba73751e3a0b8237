"""Layers of any ``torch.nn.Module`` by dotted name, and their outputs captured by forward hooks.

The forward pass stops as soon as every needed layer has been seen; the layer ``"output"``
reads the model's own output.
"""
from __future__ import annotations

import difflib
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

#: The layer name that reads the model's own output (when no submodule is called ``output``).
OUTPUT = "output"


class _Seen(Exception):
    """Raised by the last needed hook to stop the forward pass early."""


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at a dotted path of ``model.named_modules()``; a helpful error otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"layer must be a dotted name from model.named_modules(), got {name!r}")
    modules = dict(model.named_modules())
    if name in modules and name != "":
        if isinstance(model, torch.jit.ScriptModule):
            raise ValueError(f"layer {name!r} is inside a TorchScript module, which runs no Python "
                             f"hooks: read the model's output (layer {OUTPUT!r}) or load a "
                             f"torch.export program (.pt2) to read inner layers")
        return modules[name]
    if name == OUTPUT:
        return model
    names = [n for n in modules if n] + [OUTPUT]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(names[:60]) + (" ..." if len(names) > 60 else "")
    raise ValueError(f"unknown layer {name!r}.{hint} Valid layers: {shown}")


class LayerProbe:
    """Runs a model and returns the outputs of some named layers, stopping once all are seen.

    Args:
        model: any module.
        layers: dotted names of the layers to capture.
        stop_early: abort the forward pass once every layer has produced its output.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], stop_early: bool = True) -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = {name: resolve_layer(model, name) for name in self.layers}
        self.stop_early = stop_early

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        seen: dict[str, Tensor] = {}
        handles = []

        def hook_for(name):
            def hook(_module, _inputs, output):
                if isinstance(output, (tuple, list)):
                    output = output[0]
                if name not in seen:
                    seen[name] = output
                if self.stop_early and len(seen) == len(self.layers):
                    raise _Seen()
            return hook

        hooked = {n: m for n, m in self.modules.items() if m is not self.model}
        wants_output = len(hooked) < len(self.modules)
        for name, module in hooked.items():
            handles.append(module.register_forward_hook(hook_for(name) if not wants_output
                                                        else self._keep(seen, name)))
        try:
            out = self.model(x)
        except _Seen:
            pass
        else:
            if wants_output:
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if not isinstance(out, Tensor):
                    raise RuntimeError(f"the output of {type(self.model).__name__} is a "
                                       f"{type(out).__name__}, not a tensor: name a layer instead "
                                       f"of {OUTPUT!r}")
                for name in self.modules:
                    if name not in hooked:
                        seen[name] = out
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in self.layers if n not in seen]
        if missing:
            raise RuntimeError(f"layers {missing} produced no output in the forward pass of "
                               f"{type(self.model).__name__}: are they used by forward()?")
        return seen

    @staticmethod
    def _keep(seen: dict, name: str):
        """A hook that records a layer's output and lets the forward pass run to the end."""
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            seen.setdefault(name, output)
        return hook


def _model_dtype(model: nn.Module) -> Optional[torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.dtype
    return None


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
