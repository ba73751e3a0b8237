"""A new problem in one file: a thin spherical shell in the unit cube, ``r1 <= ||x - c|| <= r2``.

From Python (``python examples/extending_problem.py``) or from the command line:

    feassample problem=python problem.factory=examples/extending_problem.py:make \\
        +problem.kwargs.d=10 coverage=false

A problem states its constraints (``measure``), its bands and its prior on codes (here uniform
on the box, the default ``init_codes``); the samplers, the driver, checkpoints and resume need
nothing else.
"""
from __future__ import annotations

import torch

import feassample as fs


class Shell(fs.FeasibleSet):
    """``{x in [0, 1]^d : r1 <= ||x - 1/2|| <= r2}``."""

    def __init__(self, d: int = 10, r1: float = 0.6, r2: float = 0.65) -> None:
        if not 0 < r1 < r2:
            raise ValueError(f"need 0 < r1 < r2, got r1={r1}, r2={r2}")
        self.bands = fs.Bands((r1,), (r2,), names=("radius",))
        self.code_shape = self.input_shape = (int(d),)
        self.box = (0.0, 1.0)

    def measure(self, x: torch.Tensor) -> fs.Measurement:
        return fs.Measurement((x - 0.5).norm(dim=1, keepdim=True))

    def config(self) -> dict:
        return {**super().config(), "d": self.code_shape[0]}


def make(d: int = 10, r1: float = 0.6, r2: float = 0.65) -> Shell:
    """The factory the command line calls (``problem.factory=...:make``)."""
    return Shell(d, r1, r2)


if __name__ == "__main__":
    torch.set_num_threads(1)
    shell = make()
    s = fs.sample(shell, n=300, k=10, seed=0)
    radius = (s.x - 0.5).norm(dim=1)
    print(s.summary())
    print(f"radius in [{float(radius.min()):.4f}, {float(radius.max()):.4f}] (band [0.6, 0.65])")
