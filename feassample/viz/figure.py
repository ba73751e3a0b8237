"""Figures outside pyplot: ``new_figure`` makes one, ``save_figure`` writes it (Agg canvas, no
global backend, no pyplot figure left open)."""
from __future__ import annotations

import io

from pathlib import Path

from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.result import atomic_write_bytes


def new_figure(**kwargs) -> Figure:
    """A ``matplotlib.figure.Figure`` outside pyplot: no global backend, no figure left open.
    Keyword arguments go to ``Figure`` (``figsize``, ``dpi``...)."""
    return Figure(**kwargs)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders created) as PNG, return the path.

    Every figure of the library is saved here. A figure made with ``new_figure`` (or
    ``Figure()``) is drawn by an Agg canvas attached here; a pyplot figure keeps its canvas and
    stays the caller's to close."""
    path = Path(path)
    if type(fig.canvas) is FigureCanvasBase:  # a bare Figure: draw it with Agg, not a backend
        FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    # a temporary name and a rename: a link at ``path`` is replaced, its target never written
    atomic_write_bytes(path, lambda fh: fh.write(buffer.getvalue()))
    return path
