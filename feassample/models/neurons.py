"""Neuron inverse sets of the digits zoo in one call (used by the examples and the docs)."""
from __future__ import annotations

from typing import Optional, Union

import torch

from ..problems.neuron import NeuronInverseSet
from .zoo import load_classifier, load_generator


def digits_neuron(layer: str = "classifier.fc2", unit: Union[int, tuple] = 3, z1: float = 8.0,
                  z2: float = 12.0, *, generator: bool = True,
                  encoder: Optional[str] = "features.pool2", model=None, G=None,
                  tol: float = 0.0, code_radius: Optional[float] = 4.0) -> NeuronInverseSet:
    """The inverse set of a unit of the zoo's CNN, through the zoo's VAE decoder by default.

    Args:
        layer, unit, z1, z2: the neuron and its band (``classifier.fc2`` unit ``d`` is the
            logit of digit ``d``).
        generator: sample codes of the VAE decoder (``True``) or pixels directly (``False``).
        encoder: the layer whose output is the embedding ``E`` (``None``: distances on codes).
        model, G: reuse already loaded models.
        code_radius: keep the VAE codes in ``||c|| <= code_radius`` (4.0: the 97th percentile of
            the norm of an 8-dimensional N(0, I) code), where decoded digits look natural.
    """
    model = model if model is not None else load_classifier()
    if generator:
        G = G if G is not None else load_generator()
    return NeuronInverseSet(model, layer, unit, z1, z2, generator=G if generator else None,
                            encoder=encoder, input_shape=(1, 16, 16), input_range=(0.0, 1.0),
                            tol=tol, code_radius=code_radius if generator else None)


def embed(problem: NeuronInverseSet, x: torch.Tensor) -> torch.Tensor:
    """The problem's embedding ``E(x)`` of inputs ``(B, 1, 16, 16)`` as ``(B, p)`` (no gradients)."""
    with torch.no_grad():
        emb = problem.measure(x.to(problem.dtype)).embedding
    return emb if emb is not None else x.reshape(x.shape[0], -1)
