"""Image parametrizations as generators, for models without a trained generator.

Each is an ``nn.Module`` mapping codes ``(B, *code_shape)`` to images ``(B, C, H, W)`` inside
``output_range``, with a stated prior on codes, N(0, I), that ``init_codes`` draws from. Passed as
``NeuronInverseSet(..., generator=param)``, the sampler's target is that prior restricted to the
band: the codes ``c ~ N(0, I)`` with ``z1 <= f(G(c)) <= z2``. See ``docs/models.md``.

``FourierImage`` is the decorrelated parametrization of feature visualization (Olah, Mordvintsev &
Schubert, "Feature Visualization", Distill 2017): white noise in the frequency domain, scaled by
``1 / f**decay`` so images have the ``1/f`` amplitude spectrum of natural images, mixed across
colour channels by the square root of a colour covariance, and squashed into the input range by a
sigmoid. ``PixelImage`` is the plain one: a sigmoid of each pixel.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

#: The square root of the colour covariance of ImageNet images (rows: R, G, B output channels),
#: the estimate published with Lucid (Olah et al. 2017); its rows are rescaled below.
IMAGENET_COLOR_SQRT = ((0.26, 0.09, 0.02),
                       (0.27, 0.00, -0.05),
                       (0.27, -0.09, 0.03))


def _check_range(output_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in output_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"output_range must be (lo, hi) with finite lo < hi, got {output_range!r}")
    return lo, hi


class _CodePrior(nn.Module):
    """Codes with the standard normal prior, drawn by ``init_codes``."""

    code_shape: tuple[int, ...]
    prior = "N(0, I)"

    def init_codes(self, n: int, generator: Optional[torch.Generator] = None,
                   dtype: Optional[torch.dtype] = None, device="cpu") -> Tensor:
        """``n`` codes ``(n, *code_shape)`` drawn from the prior N(0, I) (on the CPU generator,
        then moved, so a seed gives the same codes on every device)."""
        return torch.randn((n, *self.code_shape), generator=generator,
                           dtype=dtype or torch.float32).to(device)

    def _squash(self, x: Tensor) -> Tensor:
        lo, hi = self.output_range
        return lo + (hi - lo) * torch.sigmoid(x)


class PixelImage(_CodePrior):
    """Plain pixels: codes ``(C, H, W)`` ~ N(0, I), image ``lo + (hi - lo) * sigmoid(codes)``.

    Under the prior every pixel is independent with median ``(lo + hi) / 2``.
    """

    def __init__(self, shape: Sequence[int], output_range: Sequence[float] = (0.0, 1.0)) -> None:
        super().__init__()
        self.output_shape = tuple(int(s) for s in shape)
        if len(self.output_shape) != 3 or any(s < 1 for s in self.output_shape):
            raise ValueError(f"shape must be (channels, height, width), got {shape!r}")
        self.output_range = _check_range(output_range)
        self.code_shape = self.output_shape

    def forward(self, codes: Tensor) -> Tensor:
        return self._squash(codes)


class FourierImage(_CodePrior):
    """Decorrelated Fourier parametrization: codes are the real and imaginary parts of a
    half-spectrum ``(C, H, W // 2 + 1, 2)`` ~ N(0, I).

    Image: ``x = lo + (hi - lo) * sigmoid(M @ irfft2(S * (a + i b)))`` with

    - ``S(f) = s0 / max(f, 1/max(H, W)) ** decay``: the spectrum envelope (``f`` in cycles per
      pixel), ``s0`` chosen so each pixel of ``irfft2(...)`` has variance exactly 1 under the
      prior (computed once, from the gradient of one pixel: the map is linear);
    - ``M``: the colour mixing (``decorrelate=True``: the ImageNet colour-covariance square root
      with rows rescaled so the largest has norm 1, so no channel's variance exceeds 1; else the
      identity).

    Args:
        shape: ``(C, H, W)`` of the image (``C == 3`` when ``decorrelate``).
        output_range: ``(lo, hi)``, the model's input range before normalization.
        decay: the exponent of the ``1/f`` envelope (1.0: natural images; 0.0: white noise).
        decorrelate: mix colour channels by ``M``.
        color_matrix: a ``(C, C)`` matrix to use instead of the ImageNet estimate.
    """

    def __init__(self, shape: Sequence[int], output_range: Sequence[float] = (0.0, 1.0),
                 decay: float = 1.0, decorrelate: bool = True,
                 color_matrix: Optional[Sequence[Sequence[float]]] = None) -> None:
        super().__init__()
        self.output_shape = tuple(int(s) for s in shape)
        if len(self.output_shape) != 3 or any(s < 1 for s in self.output_shape):
            raise ValueError(f"shape must be (channels, height, width), got {shape!r}")
        channels, height, width = self.output_shape
        self.output_range = _check_range(output_range)
        if not (math.isfinite(decay) and decay >= 0):
            raise ValueError(f"decay must be a number >= 0, got {decay!r}")
        self.decay = float(decay)
        self.code_shape = (channels, height, width // 2 + 1, 2)

        fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
        freq = torch.sqrt(fy ** 2 + fx ** 2).clamp(min=1.0 / max(height, width))
        envelope = freq ** (-self.decay)
        # irfft2 is linear in the codes and the law is translation invariant, so every pixel's
        # variance equals the squared norm of one pixel's gradient with respect to the codes.
        probe = torch.zeros((height, width // 2 + 1, 2), dtype=torch.float64, requires_grad=True)
        pixel = torch.fft.irfft2(envelope * torch.view_as_complex(probe), s=(height, width),
                                 norm="ortho")[0, 0]
        (grad,) = torch.autograd.grad(pixel, probe)
        envelope = envelope / grad.pow(2).sum().sqrt()
        self.register_buffer("envelope", envelope.float())

        if decorrelate or color_matrix is not None:
            matrix = torch.tensor(color_matrix if color_matrix is not None else IMAGENET_COLOR_SQRT,
                                  dtype=torch.float32)
            if matrix.shape != (channels, channels):
                raise ValueError(f"the colour matrix is {tuple(matrix.shape)} but the image has "
                                 f"{channels} channels (decorrelate=False for other than RGB)")
            matrix = matrix / matrix.norm(dim=1).max()
        else:
            matrix = torch.eye(channels)
        self.register_buffer("color", matrix)

    def spatial(self, codes: Tensor) -> Tensor:
        """The decorrelated channels before colour mixing and squashing, ``(B, C, H, W)``."""
        _, height, width = self.output_shape
        if codes.dtype not in (torch.float32, torch.float64):
            codes = codes.float()
        spectrum = torch.view_as_complex(codes.contiguous()) * self.envelope.to(codes.dtype)
        return torch.fft.irfft2(spectrum, s=(height, width), norm="ortho")

    def forward(self, codes: Tensor) -> Tensor:
        spatial = self.spatial(codes)
        mixed = torch.einsum("dc,bchw->bdhw", self.color.to(spatial.dtype), spatial)
        return self._squash(mixed).to(codes.dtype)


# -- robustness transforms (deterministic; see NeuronInverseSet(transforms=...)) ---------------
class Shift(nn.Module):
    """Translate images by ``(dy, dx)`` pixels, wrapping around (``torch.roll``)."""

    def __init__(self, dy: int, dx: int) -> None:
        super().__init__()
        self.dy, self.dx = int(dy), int(dx)

    def forward(self, x: Tensor) -> Tensor:
        return torch.roll(x, shifts=(self.dy, self.dx), dims=(-2, -1))

    def extra_repr(self) -> str:
        return f"dy={self.dy}, dx={self.dx}"


class Rescale(nn.Module):
    """Zoom images by ``factor`` about their centre (bilinear), keeping their size: ``factor >
    1`` crops the centre, ``factor < 1`` shrinks and pads by replicating the border."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be a positive number, got {factor!r}")
        self.factor = float(factor)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        ys = (torch.arange(height, dtype=x.dtype, device=x.device) + 0.5) / height * 2 - 1
        xs = (torch.arange(width, dtype=x.dtype, device=x.device) + 0.5) / width * 2 - 1
        grid_y, grid_x = torch.meshgrid(ys / self.factor, xs / self.factor, indexing="ij")
        grid = torch.stack([grid_x, grid_y], dim=-1).expand(x.shape[0], height, width, 2)
        return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                         align_corners=False)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def jitter_and_scale(pixels: int = 2, scales: Sequence[float] = (0.95, 1.05)) -> list[nn.Module]:
    """A fixed set of views: the image itself, shifted by ``+-pixels`` along each axis, and
    rescaled by each factor (``1 + 4 + len(scales)`` transforms)."""
    views: list[nn.Module] = [Shift(0, 0)]
    if pixels:
        views += [Shift(pixels, 0), Shift(-pixels, 0), Shift(0, pixels), Shift(0, -pixels)]
    views += [Rescale(f) for f in scales]
    return views
