"""Step 1 of the contrastive explainer: the code ``z0`` whose image ``G(z0)`` is closest to the
input (their Procedure 2), and the residual ``delta = I - G(z0)``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor


def fit_codes(generator: Callable, images: Tensor, *, encoder: Any = None, steps: int = 400,
              lr: float = 0.05, seed: int = 0, code_shape: Optional[Sequence[int]] = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Their Procedure 2: ``z0 = argmin ||G(z) - I||^2`` per image, batched.

    Starts from ``encoder.encode(I)[0]`` (a VAE's mean code), ``encoder(I)`` (or its first
    element), or, without an encoder, a seeded ``N(0, I)`` draw of ``code_shape`` (default: the
    generator's ``code_shape``). Adam steps on ``z`` only (``torch.autograd.grad``: the
    generator's parameters never receive gradients).

    Returns ``(z0 (B, q), delta = I - G(z0), per-image mean squared error (B,))``.
    """
    images = images.detach()
    with torch.no_grad():
        if encoder is not None:
            out = encoder.encode(images) if hasattr(encoder, "encode") else encoder(images)
            z = out[0] if isinstance(out, (tuple, list)) else out
            z = z.detach().reshape(images.shape[0], -1).to(images.dtype)
        else:
            shape = tuple(code_shape or getattr(generator, "code_shape", ()))
            if not shape:
                raise ValueError("no encoder and the generator has no code_shape: pass code_shape=")
            g = torch.Generator().manual_seed(int(seed))
            z = torch.randn((images.shape[0], *shape), generator=g).to(images)
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(int(steps)):
        with torch.enable_grad():
            err = ((generator(z).reshape(images.shape) - images) ** 2).flatten(1).sum(1)
            grad, = torch.autograd.grad(err.sum(), z)
        z.grad = grad
        opt.step()
    z0 = z.detach()
    with torch.no_grad():
        g0 = generator(z0).reshape(images.shape)
    delta = images - g0
    return z0, delta, delta.pow(2).flatten(1).mean(1)
