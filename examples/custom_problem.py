"""A new problem in plain Python: the annulus 1 <= |x| <= 2 cut by the half-plane x1 + x2 >= 0.

Run it:            python examples/custom_problem.py            (writes docs/img/custom_problem.png)
From the app:      feassample problem=annulus
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

import feassample as fs


def annulus(r_inner: float = 1.0, r_outer: float = 2.0) -> fs.FeasibleSet:
    """The half annulus {x in [-3, 3]^2 : r_inner <= |x| <= r_outer, x1 + x2 >= 0}."""

    def constraints(x: torch.Tensor) -> torch.Tensor:  # (B, 2) -> (B, 2)
        return torch.stack([x.norm(dim=1), x[:, 0] + x[:, 1]], dim=1)

    return fs.from_functions(constraints, lo=[r_inner, 0.0], hi=[r_outer, math.inf],
                             code_shape=(2,), box=(-3.0, 3.0), names=["|x|", "x1 + x2"])


def main(out: Path = Path(__file__).resolve().parents[1] / "docs" / "img" / "custom_problem.png") -> fs.SampleSet:
    problem = annulus()
    samples = fs.sample(problem, n=500, k=10, seed=0)
    print(samples.summary())
    from feassample.viz import plot_run

    plot_run(problem, samples, out)
    print(f"wrote {out}")
    return samples


if __name__ == "__main__":
    main()
