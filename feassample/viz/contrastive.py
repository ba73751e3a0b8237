"""Pictures of contrastive explanations (``fs.explain_contrast``): the red/blue explanation, the
four-panel answer, and the class-likelihood paths (the CDeepEx paper's Figs. 3 and 5b).

Everything draws on ``matplotlib.figure.Figure`` axes (``viz.new_figure``) and saves through
``viz.save_figure``: no pyplot state, no backend switch.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

from ..problems.contrastive.explanation import ContrastiveExplanation
from .figure import new_figure, save_figure


def explanation_rgb(explanation: Tensor, background: Optional[Tensor] = None,
                    scale: Optional[float] = None) -> Tensor:
    """An ``(H, W, 3)`` picture of ``G(z0) - G(ze)`` over a light grey copy of ``background``:
    red where the value is negative (to be added), blue where positive (to be removed), with
    opacity proportional to ``|value| / scale`` (default: its largest magnitude)."""
    e = explanation.detach().double().reshape(explanation.shape[-2:])
    base = torch.ones(*e.shape, 3, dtype=torch.float64)
    if background is not None:
        bg = background.detach().double().reshape(e.shape).clamp(0, 1)
        base = base * (1 - 0.35 * bg)[..., None]
    s = float(scale) if scale else float(e.abs().max())
    s = s if s > 0 else 1.0
    red = torch.tensor([0.85, 0.05, 0.05], dtype=torch.float64)
    blue = torch.tensor([0.05, 0.2, 0.9], dtype=torch.float64)
    a_red = (-e / s).clamp(0, 1)[..., None]
    a_blue = (e / s).clamp(0, 1)[..., None]
    out = base * (1 - a_red) + a_red * red
    out = out * (1 - a_blue) + a_blue * blue
    return out.clamp(0, 1)


def draw_panel(e: ContrastiveExplanation, axes) -> None:
    """Four axes: input, ``G(z0)``, ``G(ze)``, the red/blue explanation over the input."""
    p = e.class_probs
    imgs = [(e.input, f"input (true {e.true_class})"),
            (e.reconstruction, "G(z0)"),
            (e.generated, f"G(ze): p{e.true_class}={float(p[e.true_class]):.2f} "
                          f"p{e.probe_class}={float(p[e.probe_class]):.2f}")]
    for ax, (img, title) in zip(axes[:3], imgs):
        ax.imshow(img.detach().reshape(img.shape[-2:]).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
    axes[3].imshow(explanation_rgb(e.explanation.cpu(), e.input.cpu()).numpy(), interpolation="nearest")
    axes[3].set_title(f"red: add, blue: remove\n({e.true_class} -> {e.probe_class})", fontsize=7)
    for ax in axes:
        ax.set_axis_off()


def save_explanation(e: ContrastiveExplanation, folder: Union[str, Path],
                     name: str = "contrastive") -> Path:
    """Write ``<name>.png`` (input, G(z0), G(ze), explanation) and ``<name>.json`` (``e.save``:
    the numbers and the class-likelihood path) into ``folder``; returns the PNG's path."""
    e.save(folder, name)
    fig = new_figure(figsize=(8.4, 2.6))
    draw_panel(e, fig.subplots(1, 4))
    fig.suptitle(f"why {e.true_class}, not {e.probe_class}? ({e.constraints}; "
                 f"{'satisfied' if e.satisfied else 'NOT satisfied'})", fontsize=9)
    return save_figure(fig, Path(folder) / f"{name}.png")


def mean_paths(explanations: list) -> tuple[Tensor, Tensor, Tensor]:
    """``(true, probe, best other)`` class likelihoods ``(T,)`` per iteration, averaged over the
    explanations (``T``: the shortest path)."""
    t_len = min(len(e.path) for e in explanations)
    paths = torch.stack([e.path[:t_len] for e in explanations])                  # (N, T, C)
    t = torch.tensor([e.true_class for e in explanations])[:, None, None].expand(-1, t_len, 1)
    p = torch.tensor([e.probe_class for e in explanations])[:, None, None].expand(-1, t_len, 1)
    others = paths.scatter(2, t, -math.inf).scatter(2, p, -math.inf)
    return (paths.gather(2, t)[..., 0].mean(0), paths.gather(2, p)[..., 0].mean(0),
            others.max(2).values.mean(0))


def plot_paths(groups: dict, path: Union[str, Path, None] = None, title: str = "", ax=None):
    """The paper's Fig. 5b: mean class likelihood along the optimization for each group
    (``{"CDeepEx": [explanations], "xGEMs": [...]}``): true class, probe class, and the most
    likely other class, averaged over the group's images. Draws on ``ax`` when given (returns
    it), else writes a figure to ``path`` and returns the path."""
    if ax is None and path is None:
        raise ValueError("plot_paths needs ax= (to draw on) or path= (to write a PNG)")
    fig = None
    if ax is None:
        fig = new_figure(figsize=(6.2, 3.6))
        ax = fig.subplots()
    colors = ["#1b6ca8", "#d1495b", "#2a9d8f", "#8d6a9f"]
    for g, (label, exps) in enumerate(groups.items()):
        tp, pp, op = mean_paths(exps)
        col = colors[g % len(colors)]
        it = torch.arange(1, len(tp) + 1).numpy()
        ax.plot(it, tp.numpy(), "-", color=col, label=f"{label}: true class")
        ax.plot(it, pp.numpy(), "--", color=col, label=f"{label}: probe class")
        ax.plot(it, op.numpy(), ":", color=col, label=f"{label}: best other class")
    ax.set_xscale("log")
    ax.set_xlabel("optimization iteration (log scale)")
    ax.set_ylabel("class likelihood (mean over images)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    if fig is None:
        return ax
    return save_figure(fig, path)


__all__ = ["explanation_rgb", "draw_panel", "save_explanation", "mean_paths", "plot_paths"]
