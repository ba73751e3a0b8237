"""Collect the runs of a sweep into one table and one figure (one row per run: the paper's
Figure 1 layout for image problems).

    feassample-summary multirun/2026-11-22/10-00-00     # summary.md, summary.csv, summary.png, report.html

The app also calls it at the end of every multirun (a Hydra callback).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback

from ..core.result import atomic_write_bytes

COLUMNS = ["run", "overrides", "status", "n_returned", "feasible_fraction", "seed_steps",
           "rounds", "n_evals", "evals_per_sample", "log_prob", "log_prob_se", "mixed", "wall_s"]
#: a job folder (``.hydra/`` written by Hydra) without a ``metrics.json``: the job failed, was
#: killed, or is still running; its row says so, with the last line of its log.
NO_METRICS = "no metrics.json"


def _overrides(run: Path) -> str:
    f = run / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return ""
    lines = [ln.strip()[2:] for ln in f.read_text().splitlines() if ln.strip().startswith("- ")]
    return " ".join(lines)


def _last_log_line(run: Path) -> str:
    log = run / "app.log"
    if not log.is_file():
        return ""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def collect(sweep_dir: str | Path) -> list[dict]:
    """One row per run directory below ``sweep_dir``: each folder with a ``metrics.json``, and each
    job folder (one with ``.hydra/``) without one, whose ``status`` then says so."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise FileNotFoundError(f"{sweep} is not a directory")
    runs = {p.parent for p in sweep.rglob("metrics.json")} | {p.parent for p in sweep.rglob(".hydra")
                                                              if p.is_dir()}
    rows = []
    for run in sorted(runs, key=lambda p: _run_key(p, sweep)):
        row: dict[str, Any] = {"run": str(run.relative_to(sweep)) or ".", "overrides": _overrides(run),
                               "path": str(run)}
        try:
            metrics = json.loads((run / "metrics.json").read_text())
        except FileNotFoundError:
            last = _last_log_line(run)
            row["status"] = f"{NO_METRICS} (failed, killed or still running)" + (f": {last}" if last else "")
            rows.append(row)
            continue
        except json.JSONDecodeError:
            row["status"] = "unreadable metrics.json"
            rows.append(row)
            continue
        for key in COLUMNS[2:]:
            row[key] = metrics.get(key, "n/a")  # n/a: a field this run's method does not report
        if row["mixed"] is None and (metrics.get("diagnostics") or {}).get("independent"):
            row["mixed"] = "independent draws"  # nothing to mix: each row its own draw
        n_evals, n = metrics.get("n_evals"), metrics.get("n_returned")
        row["evals_per_sample"] = n_evals / n if isinstance(n_evals, (int, float)) and n else None
        for key, value in (metrics.get("coverage") or {}).items():
            row[f"coverage.{key}"] = value
        rows.append(row)
    return rows


def _run_key(run: Path, sweep: Path):
    parts = run.relative_to(sweep).parts
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _cell(row: dict, col: str) -> str:
    """A markdown cell: ``log_prob`` with its SE, ``mixed`` in words, the rest as they are."""
    if col == "log_prob ± SE":
        lp, se = row.get("log_prob"), row.get("log_prob_se")
        if not isinstance(lp, (int, float)):
            return _fmt(lp)
        return f"{lp:.4g} ± {se:.2g}" if isinstance(se, (int, float)) else f"{lp:.4g}"
    if col == "mixed":
        v = row.get("mixed", "")
        return {True: "yes", False: "NO", None: "not checked"}.get(v, _fmt(v)) if "mixed" in row else ""
    return _fmt(row.get(col))


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table (``log_prob ± SE`` in one column; ``mixed``: yes, NO or not
    checked; ``n/a`` where a run's method does not report a field)."""
    extra = sorted({k for r in rows for k in r if k.startswith("coverage.")})
    cols = [c for c in COLUMNS if c != "log_prob_se"]
    cols[cols.index("log_prob")] = "log_prob ± SE"
    cols += extra
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r, c) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def figure(rows: list[dict], path: Path, per_row: int = 10) -> Optional[Path]:
    """One row per run: spread samples as images for image problems, else value histograms."""
    from ..core.result import SampleSet
    from ..viz import sample_rows

    # Label each row by the overrides that differ between runs (the swept ones).
    token_sets = [set(r["overrides"].split()) for r in rows]
    given = [t for t in token_sets if t]  # a folder without overrides.yaml says nothing of the sweep
    common = set.intersection(*given) if len(given) > 1 else set()
    loaded = []
    for r, tokens in zip(rows, token_sets):
        folder = Path(r["path"]) / "samples"
        if (folder / "samples.pt").is_file():
            s = SampleSet.load(folder)
            swept = " ".join(t for t in r["overrides"].split() if t not in common) or r["run"]
            loaded.append((f"{swept}\n{r.get('status')}, n={len(s)}", s))
    if not loaded:
        return None
    return sample_rows(loaded, path, per_row)


def report(rows: list[dict], sweep: Path, figure_png: Optional[Path], matrix: Optional[dict] = None) -> Path:
    """Write the sweep's ``report.html`` (``viz.sweep_report``): the table, the sample figure,
    every run's rarity curve on one plot and each run's picture with its facets' shares, read
    from the runs' ``metrics.json`` and ``plot.png``."""
    from ..core.result import RarityLevel
    from ..viz import sweep_report

    curves, pictures, detailed = [], {}, []
    for r in rows:
        r = dict(r)
        try:
            metrics = json.loads((Path(r["path"]) / "metrics.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            metrics = {}
        rarity = metrics.get("rarity") or []
        if len(rarity) > 1:  # one row is a rejection run's band: no curve
            label = r.get("overrides") or r["run"]
            curves.append((label, [RarityLevel(**{**x, "lo": tuple(x["lo"]), "hi": tuple(x["hi"])}) for x in rarity]))
        r["facets"] = metrics.get("facets") or {}
        picture = Path(r["path"]) / "plot.png"
        if picture.is_file():
            pictures[r["run"]] = picture
        detailed.append(r)
    return sweep_report(sweep / "report.html", detailed, title=f"feassample sweep: {sweep.name}",
                        pictures=pictures, curves=curves, figure=figure_png, overlap=matrix)


def overlaps(rows: list[dict]) -> dict:
    """The sweep's overlap matrix ``P(B | A)`` between its runs: for each run ``A`` with samples
    and each run ``B`` whose problem shares A's codes, the share of A's rows that B's certificate
    puts inside B's band (``analysis.overlap_from_fraction``: ``log P`` with an SE over A's
    effective size). Each run's problem is rebuilt from the app config saved with its samples.
    Returns ``{"runs": [...], "left_out": {run: why}, "log_prob": [[...]], "log_prob_se": [[...]],
    "inside": [[...]]}`` (``None`` where the codes differ or a run has no samples). Problems are
    rebuilt by ``feassample-merge``'s rule (``cli.merge.rebuild_problem``): only built-in kinds
    from plain values, so a ``sampleset.json`` cannot make the summary run code."""
    from ..analysis import overlap_from_fraction
    from ..core.result import SampleSet
    from ..rundir.merge import ProblemUnknown
    from .merge import rebuild_problem

    runs, samples, problems, left_out = [], [], [], {}
    for r in rows:
        folder = Path(r["path"]) / "samples"
        if not (folder / "samples.pt").is_file():
            continue
        s = SampleSet.load(folder)
        # nothing in a data file is code: the problem is rebuilt as feassample-merge rebuilds it
        # (built-in kinds from plain values; a run of your own code is left out, with the reason)
        try:
            problem = rebuild_problem(s.config)
        except ProblemUnknown as err:
            left_out[r["run"]] = str(err).split(": name your")[0].split("; merge with")[0]
            continue
        if problem is None:
            left_out[r["run"]] = "no app config saved with its samples"
            continue
        runs.append(r["run"])
        samples.append(s)
        problems.append(problem)
    size = len(runs)
    out = {"runs": runs, "left_out": left_out, "log_prob": [[None] * size for _ in range(size)],
           "log_prob_se": [[None] * size for _ in range(size)], "inside": [[None] * size for _ in range(size)]}
    for i, a in enumerate(samples):
        for j, b in enumerate(problems):
            if len(a) == 0 or tuple(a.codes.shape[1:]) != tuple(b.code_shape):
                continue
            o = overlap_from_fraction(a, b)
            out["log_prob"][i][j], out["log_prob_se"][i][j], out["inside"][i][j] = o.log_prob, o.log_prob_se, o.inside
    return out


def overlap_markdown(matrix: dict) -> str:
    """The overlap matrix as a markdown table: row ``A``, column ``B``, cell ``P(B | A)`` ± SE."""
    runs = matrix["runs"]
    lines = ["| A \\ B | " + " | ".join(runs) + " |", "|" + "---|" * (len(runs) + 1)]
    for i, a in enumerate(runs):
        cells = []
        for j in range(len(runs)):
            lp, se = matrix["log_prob"][i][j], matrix["log_prob_se"][i][j]
            if lp is None:
                cells.append("")
            elif matrix["inside"][i][j] == 0:
                cells.append("0 (no row of A inside B)")
            else:
                p = math.exp(lp)
                cells.append(f"{p:.3g} ± {p * se:.2g}" if math.isfinite(se) else f"{p:.3g}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    for run, why in (matrix.get("left_out") or {}).items():
        lines.append(f"\nleft out: {run} ({why})")
    return "\n".join(lines)


def write_summary(sweep_dir: str | Path, overlap: bool = False) -> dict:
    """Write ``summary.md``, ``summary.csv``, ``summary.png`` (when a run kept samples) and
    ``report.html`` (one self-contained page) into ``sweep_dir``; with ``overlap=True`` also
    ``overlap.md``, ``overlap.json`` (``overlaps``: ``P(B | A)`` between the runs) and
    ``overlap.png`` (its heatmap, ``viz.plot_overlap``; also drawn in the report). A job that
    wrote no ``metrics.json`` is a row that says so."""
    sweep = Path(sweep_dir)
    rows = collect(sweep)
    if not rows:
        raise FileNotFoundError(f"no run with a metrics.json below {sweep}")
    # temporary names and renames: a link at one of these names is replaced, never followed
    atomic_write_bytes(sweep / "summary.md", lambda fh: fh.write((markdown(rows) + "\n").encode()))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(sweep / "summary.csv", lambda fh: fh.write(table.getvalue().encode()))
    png = figure(rows, sweep / "summary.png")
    matrix = None
    if overlap:
        matrix = overlaps(rows)
        text, table = overlap_markdown(matrix) + "\n", json.dumps(matrix, indent=2, default=str)
        atomic_write_bytes(sweep / "overlap.md", lambda fh: fh.write(text.encode()))
        atomic_write_bytes(sweep / "overlap.json", lambda fh: fh.write(table.encode()))
        if matrix["runs"]:
            from ..viz.analysis import plot_overlap
            plot_overlap(matrix, sweep / "overlap.png")
    page = report(rows, sweep, png, matrix)
    return {"rows": rows, "markdown": sweep / "summary.md", "csv": sweep / "summary.csv", "figure": png,
            "report": page, "overlap": matrix}


class SummaryCallback(Callback):
    """Hydra callback: summarize the sweep directory when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            out = write_summary(config.hydra.sweep.dir)
            print(f"[feassample] sweep summary: {out['markdown']}, {out['figure']}")
        except FileNotFoundError as err:  # e.g. every job failed: nothing to summarize
            print(f"[feassample] no sweep summary: {err}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="feassample-summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a multirun directory (or any folder of runs)")
    parser.add_argument("--overlap", action="store_true",
                        help="also the overlap matrix P(B | A) between the runs (overlap.md, overlap.json, overlap.png)")
    args = parser.parse_args(argv)
    try:
        out = write_summary(args.sweep_dir, overlap=args.overlap)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        parser.exit(2, f"feassample-summary: {err}\n")
    print(markdown(out["rows"]))
    if out["overlap"] is not None:
        print("\nP(B | A), A = row, B = column:\n" + overlap_markdown(out["overlap"]))
    print(f"\nwrote {out['markdown']}, {out['csv']}, {out['figure']}, {out['report']}")


if __name__ == "__main__":
    main()
