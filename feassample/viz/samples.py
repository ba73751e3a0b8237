"""Pictures of a run: samples over the shaded set in 2-D, histograms against the band or the
exact law in higher dimension.

Figures are ``matplotlib.figure.Figure`` objects (``new_figure``), never pyplot state, and are
written by ``save_figure``: importing or drawing never changes matplotlib's backend and leaves
no pyplot figure open."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core.problem import FeasibleSet
from ..core.result import SampleSet
from .figure import new_figure, save_figure


def run_title(problem: FeasibleSet, samples: SampleSet, width: int = 120) -> str:
    """The problem and the run's one-line summary, wrapped to fit above a figure."""
    import textwrap
    lines = textwrap.wrap(problem.describe(), width) + textwrap.wrap(samples.summary(), width)
    return "\n".join(lines)


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


def plot_values(samples: SampleSet, problem: FeasibleSet, axes, columns=None) -> None:
    """One histogram per constraint of the certified values against the band."""
    values = samples.values.detach().cpu().double().numpy()
    columns = range(values.shape[1]) if columns is None else columns
    for j, ax in zip(columns, np.atleast_1d(axes)):
        ax.hist(values[:, j], bins=30, color="#d1495b", alpha=0.7)
        ends = [e for e in (float(problem.bands.lo[j]), float(problem.bands.hi[j])) if np.isfinite(e)]
        for i, end in enumerate(ends):
            ax.axvline(end, color="k", ls="--", lw=1, label="band" if i == 0 else None)
        ax.set_xlabel(problem.bands.names[j])
        ax.set_ylabel("count")
        if ends:
            ax.legend(fontsize=8)


def is_image(shape) -> bool:
    """Inputs shaped like images: ``(C, H, W)`` with 1 or 3 channels, or ``(H, W)``."""
    shape = tuple(shape)
    return (len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 4) or \
        (len(shape) == 2 and min(shape) >= 4)


def _as_rgb(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    img = (img - lo) / (hi - lo)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    return np.clip(img, 0, 1)


def draw_images(ax_row, x: torch.Tensor, labels: list[str], value_range=(0.0, 1.0)) -> None:
    """Images into a row of axes, each titled with its label (e.g. its activation)."""
    for ax, img, label in zip(ax_row, x.detach().cpu().double().numpy(), labels):
        shown = _as_rgb(img, *value_range)
        ax.imshow(shown, cmap="gray_r" if shown.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in ax_row[len(labels):]:
        ax.axis("off")


def pick_spread(values: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of ``count`` samples spread over the range of the first value column."""
    n = values.shape[0]
    if n <= count:
        return torch.arange(n)
    order = torch.argsort(values[:, 0])
    return order[torch.linspace(0, n - 1, count).round().long()]


def image_grid(problem: FeasibleSet, samples: SampleSet, path: str | Path, ncols: int = 10,
               nrows: int = 5) -> Path:
    """A grid of sample images titled with their activations, then histograms of each
    constraint value against its band."""
    path = Path(path)
    m = problem.bands.m
    count = min(len(samples), ncols * nrows)
    idx = pick_spread(samples.values, count)
    rows = max(1, math.ceil(count / ncols))
    fig = new_figure(figsize=(1.3 * ncols, 1.45 * rows + 2.6))
    grid = fig.add_gridspec(rows + 1, ncols, height_ratios=[1.0] * rows + [1.6])
    value_range = getattr(problem, "input_range", (0.0, 1.0))
    vals = samples.values.detach().cpu().double()
    for r in range(rows):
        row_idx = idx[r * ncols:(r + 1) * ncols]
        axes = [fig.add_subplot(grid[r, c]) for c in range(ncols)]
        labels = [", ".join(f"{v:.2f}" for v in vals[i].tolist()) for i in row_idx]
        draw_images(axes, samples.x[row_idx], labels, value_range)
    per = max(1, ncols // m)
    for j in range(m):
        ax = fig.add_subplot(grid[rows, j * per:(j + 1) * per - (1 if per > 2 else 0)])
        plot_values(samples, problem, [ax], columns=[j])
    fig.suptitle(run_title(problem, samples), fontsize=8)
    return save_figure(fig, path)


def plot_run(problem: FeasibleSet, samples: SampleSet, path: str | Path,
             reference: Optional[torch.Tensor] = None) -> Path:
    """Write the run's picture to ``path`` (PNG) and return the path."""
    if is_image(problem.input_shape):
        return image_grid(problem, samples, path)
    path = Path(path)
    m = problem.bands.m
    two_d = int(np.prod(problem.code_shape)) == 2
    has_law = hasattr(problem, "law") and hasattr(problem, "t")
    panels = int(two_d or has_law) + m
    fig = new_figure(figsize=(4.2 * panels, 4))
    axes = np.atleast_1d(fig.subplots(1, panels))
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
    fig.suptitle(run_title(problem, samples), fontsize=8)
    return save_figure(fig, path)


def _bands(s: SampleSet) -> tuple[list, list, list]:
    """The band ``(lo, hi, names)`` a SampleSet was sampled in, from its recorded config (lists
    of one entry per constraint; names ``h0, h1, ...`` and infinite ends when not recorded)."""
    bands = ((s.config or {}).get("problem") or {}).get("bands") or {}
    m = s.values.shape[1] if s.values.ndim == 2 else 1
    # float(): a loaded record stores infinite ends as the strings "inf" / "-inf"
    lo = [float(v) for v in bands.get("lo") or [-math.inf] * m]
    hi = [float(v) for v in bands.get("hi") or [math.inf] * m]
    names = list(bands.get("names") or [f"h{j}" for j in range(m)])
    return lo, hi, names


def _band_text(lo: list, hi: list, names: list) -> str:
    return "; ".join(f"{n} in [{a:.3g}, {b:.3g}]" for n, a, b in zip(names, lo, hi))


def sample_rows(rows: list, path: str | Path, per_row: int = 10, title: str = "",
                value_range=(0.0, 1.0), pick: str = "spread") -> Path:
    """Write :func:`sample_rows_figure` to ``path`` (PNG) and return the path."""
    return save_figure(sample_rows_figure(rows, per_row, title, value_range, pick), Path(path))


def sample_rows_figure(rows: list, per_row: int = 10, title: str = "", value_range=(0.0, 1.0),
                       pick: str = "spread") -> Figure:
    """One row per ``(label, SampleSet)``: ``per_row`` samples spread over the band (or the
    ``pick="first"`` ones, e.g. the seeds), titled with their values (the paper's Figure 1
    layout), the band under each row's label; for non-image samples, one histogram per row of
    each constraint's values with axes, ticks, labels and the band's ends as dashed lines."""
    images = all(is_image(s.x.shape[1:]) for _, s in rows if len(s))
    cols = per_row if images else 1
    height = 1.45 if images else 2.3
    fig = new_figure(figsize=(1.25 * cols + 2.2 if images else 8, height * len(rows) + 0.8))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, ((label, s), ax_row) in enumerate(zip(rows, axes)):
        lo, hi, names = _bands(s)
        if images and len(s):
            idx = pick_spread(s.values, per_row) if pick == "spread" else torch.arange(min(per_row, len(s)))
            vals = s.values.double()
            draw_images(list(ax_row), s.x[idx], [", ".join(f"{v:.1f}" for v in vals[i].tolist())
                                                 for i in idx], value_range)
            ax_row[0].axis("on")
            ax_row[0].set_xticks([])
            ax_row[0].set_yticks([])
            ax_row[0].set_ylabel(f"{label}\n{_band_text(lo, hi, names)}", fontsize=7, rotation=0,
                                 ha="right", va="center")
            continue
        ax = ax_row[0]
        if not len(s):
            ax.axis("off")
            ax.set_title(f"{label}: no samples", fontsize=8)
            continue
        values = s.values.double().numpy()
        colors = ["#d1495b", "#2e4057", "#66a182", "#edae49", "#8d96a3"]
        for j in range(values.shape[1]):
            color = colors[j % len(colors)]
            ax.hist(values[:, j], bins=30, alpha=0.6, color=color, label=names[j])
            for end in (lo[j], hi[j]):
                if math.isfinite(end):
                    ax.axvline(end, color=color, ls="--", lw=1.2)
        ax.set_ylabel("count", fontsize=8)
        ax.set_xlabel("constraint value (dashed: the band's ends)" if i == len(rows) - 1 else "",
                      fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{label.replace(chr(10), ', ')}; band {_band_text(lo, hi, names)}", fontsize=8, loc="left")
        ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


@torch.no_grad()
def save_vae_picture(vae, path: str | Path, seed: int = 0) -> Path:
    """An 8x8 grid of decoded prior samples ``z ~ N(0, I)`` above two rows: 16 test digits and
    their reconstructions (from the mean code)."""
    from .models.digits import digits_data

    g = torch.Generator().manual_seed(seed + 5)
    samples = vae.decode(torch.randn(64, vae.code_dim, generator=g))[:, 0]
    xt, _ = digits_data("test")
    originals = xt[torch.randperm(len(xt), generator=g)[:16]]
    recon = vae(originals)[0][:, 0]

    def tile(imgs: torch.Tensor, rows: int, cols: int, pad: int = 1) -> torch.Tensor:
        h, w = imgs.shape[-2:]
        canvas = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.3)
        for k in range(min(len(imgs), rows * cols)):
            r, c = divmod(k, cols)
            canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
                   pad + c * (w + pad):pad + c * (w + pad) + w] = imgs[k]
        return canvas

    fig = new_figure(figsize=(6, 8.4))
    axes = fig.subplots(2, 1, gridspec_kw={"height_ratios": [8, 2.3]})
    axes[0].imshow(tile(samples, 8, 8), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title(r"decoded samples, $z \sim N(0, I)$ (code_dim=%d)" % vae.code_dim)
    pair = torch.cat([originals[:, 0], recon])
    axes[1].imshow(tile(pair, 2, 16), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("test digits (top) and their reconstructions (bottom)")
    for ax in axes:
        ax.set_axis_off()
    return save_figure(fig, path, dpi=110)
