"""Pictures of a run: samples over the shaded set in 2-D, histograms against the band or the
exact law in higher dimension."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .core.problem import FeasibleSet
from .core.result import SampleSet


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid_bounds(problem: FeasibleSet, codes: np.ndarray) -> tuple[float, float, float, float]:
    if problem.box is not None:
        lo, hi = problem.box
        return lo, hi, lo, hi
    pad = 0.25 * (codes.max(0) - codes.min(0) + 1e-9)
    (x0, y0), (x1, y1) = codes.min(0) - pad, codes.max(0) + pad
    return float(x0), float(x1), float(y0), float(y1)


def plot_2d(problem: FeasibleSet, samples: SampleSet, ax, resolution: int = 300) -> None:
    """Samples over the set shaded by its membership test on a grid (2-D codes only)."""
    codes = samples.codes.detach().cpu().double().numpy()
    x0, x1, y0, y1 = _grid_bounds(problem, codes)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=samples.codes.dtype)
    _, inside = problem.check(grid)
    ax.contourf(gx, gy, inside.reshape(gx.shape).numpy().astype(float), levels=[0.5, 1.5],
                colors=["#cfe3f7"])
    ax.contour(gx, gy, inside.reshape(gx.shape).numpy().astype(float), levels=[0.5],
               colors=["#4a7fb5"], linewidths=0.8)
    ok = samples.feasible.cpu().numpy().astype(bool)
    ax.scatter(codes[ok, 0], codes[ok, 1], s=6, c="#d1495b", label=f"samples ({ok.sum()})")
    if (~ok).any():
        ax.scatter(codes[~ok, 0], codes[~ok, 1], s=12, marker="x", c="k",
                   label=f"not certified ({(~ok).sum()})")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", fontsize=8)


def plot_t_histogram(problem, samples: SampleSet, ax, reference: Optional[torch.Tensor] = None) -> None:
    """Histogram of ``t = w.x`` of the samples against the exact density on the set."""
    t = problem.t(samples.x).cpu().numpy()
    lo, hi = problem.a, problem.b
    span_lo = lo if np.isfinite(lo) else t.min()
    span_hi = hi if np.isfinite(hi) else t.max()
    bins = np.linspace(span_lo, span_hi, 31)
    ax.hist(t, bins=bins, density=True, alpha=0.6, color="#d1495b", label="samples")
    if reference is not None:
        ax.hist(problem.t(reference).cpu().numpy(), bins=bins, density=True, histtype="step",
                color="k", label="exact iid uniform")
    s = np.linspace(span_lo, span_hi, 400)
    ax.plot(s, problem.law.pdf(s), color="#2e4057", lw=1.5, label="exact law of w.x")
    ax.set_xlabel("t = w.x")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def plot_values(samples: SampleSet, problem: FeasibleSet, axes) -> None:
    """One histogram per constraint of the certified values against the band."""
    values = samples.values.detach().cpu().double().numpy()
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.hist(values[:, j], bins=30, color="#d1495b", alpha=0.7)
        for end in (problem.bands.lo[j], problem.bands.hi[j]):
            if np.isfinite(end):
                ax.axvline(end, color="k", ls="--", lw=1)
        ax.set_xlabel(problem.bands.names[j])
        ax.set_ylabel("count")


def plot_run(problem: FeasibleSet, samples: SampleSet, path: str | Path,
             reference: Optional[torch.Tensor] = None) -> Path:
    """Write the run's picture to ``path`` (PNG) and return the path."""
    plt = _pyplot()
    path = Path(path)
    m = problem.bands.m
    two_d = int(np.prod(problem.code_shape)) == 2
    has_law = hasattr(problem, "law") and hasattr(problem, "t")
    panels = int(two_d or has_law) + m
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4))
    axes = np.atleast_1d(axes)
    first = 0
    if two_d:
        plot_2d(problem, samples, axes[0])
        first = 1
    elif has_law:
        plot_t_histogram(problem, samples, axes[0], reference)
        first = 1
    plot_values(samples, problem, axes[first:first + m])
    for ax in axes[first + m:]:
        ax.axis("off")
    fig.suptitle(f"{problem.describe()}\n{samples.summary()}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
