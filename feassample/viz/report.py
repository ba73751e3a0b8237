"""One self-contained HTML page per run (``run_report``) and per sweep (``sweep_report``): every
image is embedded as a base64 ``data:`` URI, no script or style is fetched, so the page opens
from a copied file with no network. A small inline script marks the page when every image has
decoded (``<body data-images="ok N">``, or ``"broken: ..."``), which the browser test reads."""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Iterable, Optional

from ..core.result import SampleSet, atomic_write_bytes

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.6em;
font-size:.8em;overflow-x:auto}.note{color:#555;font-size:.85em}"""

#: sets ``data-images`` on <body> once every <img> has loaded: ``ok N`` or ``broken: i, j``
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images), bad = [];
  imgs.forEach(function (im, i) { if (!im.complete || im.naturalWidth === 0) bad.push(i); });
  document.body.setAttribute('data-images', bad.length ? 'broken: ' + bad.join(', ') : 'ok ' + imgs.length);
});
</script>"""


def data_uri(png) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes, a PNG file, or a matplotlib figure."""
    if hasattr(png, "savefig"):
        from matplotlib.backend_bases import FigureCanvasBase
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        if type(png.canvas) is FigureCanvasBase:  # a bare Figure (new_figure): draw it with Agg
            FigureCanvasAgg(png)
        buffer = io.BytesIO()
        png.tight_layout()
        png.savefig(buffer, format="png", dpi=100)
        data = buffer.getvalue()
    elif isinstance(png, (bytes, bytearray)):
        data = bytes(png)
    else:
        data = Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _e(v) -> str:
    return html.escape(str(v))


def _num(v) -> str:
    if isinstance(v, bool):  # the summary's words for a flag (``mixed``: yes / NO)
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return _e("" if v is None else v)


def table(header: list, rows: Iterable[list], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_num(c)}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image(uri: str, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{_e(alt)}"></p>'


def page(title: str, body: str) -> str:
    """A complete HTML document with the inline style and the image check."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}{CHECK_SCRIPT}</body></html>")


def rarity_section(rows, figure_uri: Optional[str]) -> str:
    if not rows:
        return "<h2>Rarity curve</h2><p class='note'>No levels in this run (a method without levels, or " \
               "rejection: the band was common enough to sample the prior directly).</p>"
    side = rows[0].side if hasattr(rows[0], "side") else rows[0].get("side")
    several = len(rows[0].lo if hasattr(rows[0], "lo") else rows[0]["lo"]) > 1
    what = ("the level is the largest distance outside the band, each constraint's divided by its scale"
            if several else ("log P(h >= threshold)" if side == "above" else "log P(h <= threshold)"))
    body = [[i + 1, r.threshold, r.log_prob, r.log_prob_se, r.log_prob / math.log(10)]
            for i, r in enumerate(rows)]
    out = f"<h2>Rarity curve</h2><p class='note'>One row per level of the run: {_e(what)}; SE cumulative over the stages.</p>"
    if figure_uri:
        out += image(figure_uri, "rarity curve")
    return out + table(["level", "threshold", "log P", "SE", "log10 P"], body)


def facets_section(facets, figure_uri: Optional[str]) -> str:
    if facets is None:
        return ""
    out = (f"<h2>Facets</h2><p class='note'>{facets.k} facet(s) in {_e(facets.space)}; k: {_e(facets.criterion)}; "
           f"SEs over an effective size of {facets.n_eff:.0f} rows ({_e(facets.ess_from)}).</p>")
    if figure_uri:
        out += image(figure_uri, "facets")
    rows = [[i + 1, f.share, f.share_se, f.count, ", ".join(f"{v:.4g}" for v in f.mean_values),
             " ".join(str(m) for m in f.medoids)] for i, f in enumerate(facets)]
    return out + table(["facet", "share", "SE", "rows", "mean constraint values", "medoid rows"], rows)


def diagnostics_section(stats: dict) -> str:
    diag = stats.get("diagnostics") or {}
    keys = ["status", "message", "n_returned", "n_evals", "wall_s", "log_prob", "log_prob_se", "max_violation"]
    rows = [[k, stats.get(k)] for k in keys if k in stats]
    rows += [[f"diagnostics.{k}", diag[k]] for k in ("chains_by", "chains", "draws", "ess_rows", "rhat_max",
                                                     "rhat_threshold", "ess_bulk_min", "ess_tail_min", "mixed",
                                                     "worst", "skipped", "independent", "duplicates",
                                                     "effective_ancestors") if k in diag]
    return "<h2>Diagnostics</h2>" + table(["field", "value"], rows, left=2)


def settings_section(command: Optional[str], config: dict) -> str:
    out = "<h2>Settings that reproduce this run</h2>"
    if command:
        out += f"<pre>{_e(command)}</pre>"
    return out + f"<pre>{_e(json.dumps(config, indent=2, default=str))}</pre>"


def run_report(path: str | Path, samples: SampleSet, *, title: str, picture: Optional[Path] = None,
               facets=None, problem=None, command: Optional[str] = None, extra: str = "") -> Path:
    """Write one run's ``report.html`` to ``path``: the samples' picture (``picture``, e.g. the
    run's ``plot.png``), the facets with their shares and medoids, the rarity curve, the
    diagnostics and the settings (``command`` and ``samples.config``). Returns the path."""
    from .analysis import plot_facets, rarity_axes
    from .figure import new_figure

    parts = [f"<p>{_e(samples.summary())}</p>"]
    if picture is not None and Path(picture).is_file():
        parts.append("<h2>Samples</h2>" + image(data_uri(picture), "samples"))
    if facets is not None and len(facets):
        fig_uri = None
        with _figure_to("facets") as buf:
            plot_facets(samples, facets, buf, value_range=getattr(problem, "input_range", (0.0, 1.0)))
            fig_uri = data_uri(buf.getvalue())
        parts.append(facets_section(facets, fig_uri))
    rows = samples.rarity
    fig_uri = None
    if rows and len(rows) > 1:  # one row (a rejection run): the band alone, a table is enough
        fig = new_figure(figsize=(5.2, 3.6))
        rarity_axes(fig.add_subplot(1, 1, 1), [rows])
        fig_uri = data_uri(fig)
    parts.append(rarity_section(rows, fig_uri))
    parts.append(diagnostics_section(samples.stats))
    parts.append(extra)
    parts.append(settings_section(command, samples.config))
    text = page(title, "".join(parts))
    out = Path(path)
    atomic_write_bytes(out, lambda fh: fh.write(text.encode()))
    return out


class _figure_to:
    """A context giving an in-memory buffer with a ``.png`` name for the savers that take paths."""

    def __init__(self, name: str):
        import tempfile
        self._dir = tempfile.TemporaryDirectory(prefix=f"feassample-{name}-")
        self.path = Path(self._dir.name) / f"{name}.png"

    def __enter__(self):
        return self

    def __fspath__(self) -> str:
        return str(self.path)

    def getvalue(self) -> bytes:
        return self.path.read_bytes()

    def __exit__(self, *exc) -> None:
        self._dir.cleanup()


def sweep_report(path: str | Path, rows: list[dict], *, title: str, pictures: Optional[dict] = None,
                 curves: Optional[list] = None, figure: Optional[Path] = None,
                 overlap: Optional[dict] = None) -> Path:
    """Write a sweep's ``report.html``: the summary table (``rows``: ``summary.collect``), the
    sweep's sample figure, every run's rarity curve on one plot (``curves``: ``(label, rows)``),
    each run's own picture (``pictures``: ``{run: png path}``) with its facets' shares, and the
    overlap matrix ``P(B | A)`` (``overlap``: ``summary.overlaps``) where computed."""
    from .analysis import rarity_axes
    from .figure import new_figure

    cols = ["run", "overrides", "status", "n_returned", "log_prob", "log_prob_se", "mixed", "evals_per_sample", "wall_s"]
    parts = [table(cols, [[r.get(c) for c in cols] for r in rows], left=3)]
    if figure is not None and Path(figure).is_file():
        parts.append("<h2>Samples per run</h2>" + image(data_uri(figure), "samples per run"))
    if overlap and overlap.get("runs"):
        names = overlap["runs"]
        cells = []
        for i, a in enumerate(names):
            row = [a]
            for j in range(len(names)):
                lp, se = overlap["log_prob"][i][j], overlap["log_prob_se"][i][j]
                row.append("" if lp is None else (f"{math.exp(lp):.3g} ± {math.exp(lp) * se:.2g}"
                                                  if math.isfinite(se) else f"{math.exp(lp):.3g}"))
            cells.append(row)
        from .analysis import overlap_figure
        parts.append("<h2>Overlaps P(B | A)</h2><p class='note'>Row A, column B: the share of A's samples "
                     "inside B's band, ± SE over A's effective size.</p>"
                     + image(data_uri(overlap_figure(overlap)), "overlap matrix") + table(["A \\ B", *names], cells))
    if curves:
        fig = new_figure(figsize=(6.4, 4.2))
        rarity_axes(fig.add_subplot(1, 1, 1), [c for _, c in curves], [label for label, _ in curves])
        parts.append("<h2>Rarity curves</h2>" + image(data_uri(fig), "rarity curves"))
    for r in rows:
        run = r.get("run")
        facets = r.get("facets") or {}
        pic = (pictures or {}).get(run)
        if pic is None and not facets:
            continue
        parts.append(f"<h2>{_e(run)}: {_e(r.get('overrides') or '')}</h2>")
        if facets.get("facets"):
            parts.append(table(["facet", "share", "SE", "rows"], [[i + 1, f["share"], f["share_se"], f["count"]]
                                                               for i, f in enumerate(facets["facets"])]))
        if pic is not None and Path(pic).is_file():
            parts.append(image(data_uri(pic), f"samples of {run}"))
    text = page(title, "".join(parts))
    out = Path(path)
    atomic_write_bytes(out, lambda fh: fh.write(text.encode()))
    return out


__all__ = ["run_report", "sweep_report", "data_uri", "page", "table", "CHECK_SCRIPT"]
