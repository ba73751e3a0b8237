"""Pictures of what a sample says about its set: the rarity curve (``plot_rarity``), the
facets with their shares (``plot_facets``) and a sweep's overlap matrix (``plot_overlap``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.result import SampleSet
from .figure import new_figure, save_figure
from .samples import _as_rgb, is_image


def _rows(curve) -> list:
    rows = curve.rarity if isinstance(curve, SampleSet) else curve
    if not rows:
        raise ValueError("curve: no rarity curve (a levels run of method='smc' has one; SampleSet.rarity is None)")
    return list(rows)


def rarity_axes(ax, curves: Sequence, labels: Sequence[str] = (), exact=None) -> None:
    """Draw rarity curves (each a ``SampleSet`` or its ``rarity`` rows) into ``ax``: ``log10
    P`` against the threshold, a band of 2 SE around each; ``exact``: a callable threshold ->
    ``log P`` drawn as a line."""
    first = None
    for i, curve in enumerate(curves):
        rows = _rows(curve)
        first = first or rows
        th = np.array([r.threshold for r in rows])
        lp = np.array([r.log_prob for r in rows]) / math.log(10)
        se = np.array([r.log_prob_se for r in rows]) / math.log(10)
        label = labels[i] if i < len(labels) else None
        line, = ax.plot(th, lp, "o-", ms=3, lw=1, label=label)
        ax.fill_between(th, lp - 2 * se, lp + 2 * se, color=line.get_color(), alpha=0.2, lw=0)
    if exact is not None and first:
        ths = np.array([r.threshold for r in first])
        grid = np.linspace(ths.min(), ths.max(), 200)
        ax.plot(grid, [exact(t) / math.log(10) for t in grid], "k--", lw=1, label="exact")
    side = first[0].side if first else "above"
    several = len(first[0].lo) > 1 if first else False
    if several:
        ax.set_xlabel("level: largest scaled distance to the band")
        ax.set_ylabel("log10 P(distance < level)")
    else:
        ax.set_xlabel("threshold (the constraint's own units)")
        ax.set_ylabel("log10 P(h >= threshold)" if side == "above" else "log10 P(h <= threshold)")
    ax.grid(alpha=0.3)
    if labels or exact is not None:
        ax.legend(fontsize=7)


def plot_rarity(curves, path: str | Path, labels: Sequence[str] = (), exact=None,
                title: str = "") -> Path:
    """Write the rarity curve(s) of ``curves`` (a ``SampleSet``, its ``rarity`` rows, or a list
    of either) to ``path`` (PNG): ``log10 P`` against the threshold with 2-SE bands."""
    one = isinstance(curves, SampleSet) or (isinstance(curves, (list, tuple)) and curves and hasattr(curves[0], "threshold"))
    curves = [curves] if one else list(curves)
    fig = new_figure(figsize=(5.2, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    rarity_axes(ax, curves, labels, exact)
    if title:
        ax.set_title(title, fontsize=8)
    return save_figure(fig, path)


def plot_facets(samples: SampleSet, facets, path: str | Path, value_range=(0.0, 1.0),
                per_facet: Optional[int] = None, points: Optional[np.ndarray] = None) -> Path:
    """Write the facets to ``path`` (PNG): for image inputs one row per facet (its share ± SE
    and mean constraint values, then its medoid images); otherwise a scatter of the first two
    coordinates of ``points`` (default: the codes) coloured by facet, medoids marked."""
    if not len(facets):
        raise ValueError("facets: no facet to draw")
    shape = tuple(samples.x.shape[1:])
    if is_image(shape):
        per = per_facet or max(len(f.medoids) for f in facets)
        fig = new_figure(figsize=(1.25 * (per + 2), 1.35 * len(facets) + 0.3))
        grid = fig.add_gridspec(len(facets), per + 2)
        x = samples.x.detach().cpu().double().numpy()
        for r, f in enumerate(facets):
            ax = fig.add_subplot(grid[r, :2])
            ax.axis("off")
            vals = ", ".join(f"{v:.3g}" for v in f.mean_values)
            ax.text(0.0, 0.5, f"facet {r + 1}\nshare {f.share:.3f} ± {f.share_se:.3f}\n{f.count} rows\nmean h {vals}",
                    fontsize=7, va="center")
            for c, i in enumerate(f.medoids[:per]):
                ax = fig.add_subplot(grid[r, 2 + c])
                shown = _as_rgb(x[i], *value_range)
                ax.imshow(shown, cmap="gray_r" if shown.ndim == 2 else None, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
        return save_figure(fig, path)
    pts = samples.codes.reshape(len(samples), -1).detach().cpu().double().numpy() if points is None else np.asarray(points)
    fig = new_figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for r, f in enumerate(facets):
        p = pts[f.rows]
        ax.scatter(p[:, 0], p[:, 1 if pts.shape[1] > 1 else 0], s=6, alpha=0.6,
                   label=f"facet {r + 1}: {f.share:.3f} ± {f.share_se:.3f}")
        m = pts[f.medoids[:1]]
        ax.scatter(m[:, 0], m[:, 1 if pts.shape[1] > 1 else 0], s=60, marker="*", color="k")
    ax.set_xlabel("code 0")
    ax.set_ylabel("code 1" if pts.shape[1] > 1 else "code 0")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{len(facets)} facets (stars: medoids)", fontsize=8)
    return save_figure(fig, path)


def overlap_figure(matrix: dict, title: str = ""):
    """The overlap matrix ``P(B | A)`` (``cli.summary.overlaps``: row A, column B) as a heatmap
    figure: each cell coloured by ``P(B | A)`` on ``[0, 1]`` and labelled ``p ± SE``; a pair with
    no row of A inside B reads ``0 (no row)``, a pair on different codes is left grey."""
    runs = list(matrix.get("runs") or [])
    if not runs:
        raise ValueError("overlap: no run with samples in the matrix")
    size = len(runs)
    prob = np.full((size, size), np.nan)
    fig = new_figure(figsize=(1.6 + 1.35 * size, 1.2 + 1.0 * size))
    ax = fig.add_subplot(1, 1, 1)
    labels = [[""] * size for _ in range(size)]
    for i in range(size):
        for j in range(size):
            lp, se = matrix["log_prob"][i][j], matrix["log_prob_se"][i][j]
            if lp is None:
                continue
            p = math.exp(lp)
            prob[i, j] = p
            if matrix.get("inside") and matrix["inside"][i][j] == 0:
                labels[i][j] = "0\n(no row)"
            else:
                labels[i][j] = f"{p:.3g}\n± {p * se:.2g}" if math.isfinite(se) else f"{p:.3g}"
    shown = np.ma.masked_invalid(prob)
    cmap = __import__("matplotlib").colormaps["viridis"].with_extremes(bad="0.85")
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0)
    for i in range(size):
        for j in range(size):
            if labels[i][j]:
                ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7,
                        color="k" if prob[i, j] > 0.6 else "w")
    ax.set_xticks(range(size), runs, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(size), runs, fontsize=7)
    ax.set_xlabel("B")
    ax.set_ylabel("A")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="P(B | A)")
    ax.set_title(title or "P(B | A): the share of A's samples inside B (± SE)", fontsize=8)
    return fig


def plot_overlap(matrix: dict, path: str | Path, title: str = "") -> Path:
    """Write the overlap matrix (``overlap_figure``) to ``path`` (PNG)."""
    return save_figure(overlap_figure(matrix, title), path)


__all__ = ["plot_rarity", "rarity_axes", "plot_facets", "plot_overlap", "overlap_figure"]
