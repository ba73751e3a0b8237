"""What a model expects of its inputs: the valid range, the per-channel normalization, the size.

A model carries it as ``model.preprocessing`` (the loaders of ``feassample.models`` attach it
from torchvision's weights enums or timm's ``pretrained_cfg``; the digits zoo sets it), and a
``NeuronInverseSet`` reads it there unless it is given explicitly. Samples then live in the
*unnormalized* input space (e.g. images in [0, 1]) and the problem normalizes them before the
model, exactly as the model's own preprocessing would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Preprocessing:
    """A model's input contract.

    Args:
        input_range: ``(lo, hi)`` of valid inputs before normalization (images: ``(0, 1)``).
        mean, std: per-channel normalization ``(x - mean) / std`` applied before the model
            (channel = dimension 1 of a batch); ``None``: the model takes inputs as they are.
        input_shape: shape of one input without the batch, e.g. ``(3, 224, 224)``; ``None``:
            unknown (then ``input_shape`` must be given to the problem).
        source: where the numbers come from, for reports (e.g. ``"torchvision
            ResNet18_Weights.IMAGENET1K_V1"``).
    """

    input_range: tuple[float, float]
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    input_shape: Optional[tuple[int, ...]] = None
    source: str = ""

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.input_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"input_range must be (lo, hi) with finite lo < hi, got {self.input_range!r}")
        object.__setattr__(self, "input_range", (lo, hi))
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"mean and std go together: got mean={self.mean!r}, std={self.std!r}")
        if self.mean is not None:
            mean = tuple(float(v) for v in self.mean)
            std = tuple(float(v) for v in self.std)
            if len(mean) != len(std) or not mean:
                raise ValueError(f"mean and std must have one entry per channel, got {len(mean)} "
                                 f"means and {len(std)} stds")
            if not all(math.isfinite(s) and s > 0 for s in std):
                raise ValueError(f"std must be positive numbers, got {std}")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if not shape or any(s < 1 for s in shape):
                raise ValueError(f"input_shape must be a shape of positive sizes, got {self.input_shape!r}")
            object.__setattr__(self, "input_shape", shape)

    def check_shape(self, input_shape: Sequence[int]) -> None:
        """Refuse an input shape whose channels do not match ``mean``/``std``."""
        if self.mean is not None and (len(input_shape) < 1 or input_shape[0] != len(self.mean)):
            raise ValueError(f"input_shape {tuple(input_shape)} has {input_shape[0] if input_shape else 0} "
                             f"channels but the normalization ({self.source or 'mean/std'}) has "
                             f"{len(self.mean)}")

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` per channel of a batch ``(B, C, ...)``; ``x`` when no mean/std."""
        if self.mean is None:
            return x
        view = (1, len(self.mean)) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(view)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(view)
        return (x - mean) / std

    def config(self) -> dict:
        """JSON-able description."""
        return {"input_range": list(self.input_range),
                "mean": list(self.mean) if self.mean is not None else None,
                "std": list(self.std) if self.std is not None else None,
                "input_shape": list(self.input_shape) if self.input_shape is not None else None,
                "source": self.source}


def model_preprocessing(model) -> Optional[Preprocessing]:
    """The ``Preprocessing`` a model carries as ``model.preprocessing``, else ``None``."""
    found = getattr(model, "preprocessing", None)
    return found if isinstance(found, Preprocessing) else None
