"""The throughput benchmark's quick path on its tiniest configuration (one subprocess, seconds)."""
from __future__ import annotations

import math

from benchmarks import throughput


def _number(cell: str) -> float:
    """The leading number of a table cell: ``"1,979"``, ``"1/632"`` (as 1/632), ``"88%"``, ``"353 (+0)"``."""
    cell = cell.split(" (")[0].rstrip("%").replace(",", "")
    if cell.startswith("1/"):
        return 1 / float(cell[2:])
    return float(cell)


def test_quick_table_has_every_column_and_positive_finite_numbers():
    out = throughput.main(["--quick", "--models", "slab784", "--batches", "10", "--total", "60"])
    lines = [line for line in out.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == throughput.COLUMNS
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(rows) == 1
    row = dict(zip(head, rows[0]))
    assert row["model"] == "slab d=784" and row["k"] == "10" and row["threads"] == "1"
    assert row["status"] == "success" and row["returned / n"] == "20 / 20"
    for col in ("wall s", "evals/s", "samples/s", "raw fwd+bwd/s", "samples/s / raw", "evals/s / raw",
                "fwd calls", "peak MiB (+)", "walk rounds"):
        v = _number(row[col])
        assert math.isfinite(v) and v > 0, (col, row[col])
    for col in ("overhead (walk)", "overhead (all)"):  # fractions of wall time spent outside the model
        assert 0 <= _number(row[col]) <= 100, (col, row[col])
    # the sampler cannot beat the model's raw speed: each evaluation is one forward+backward
    assert _number(row["evals/s"]) < _number(row["raw fwd+bwd/s"])
    # 20 samples from the walk's kept states: evaluations per sample are at least one
    assert _number(row["samples/s"]) < _number(row["evals/s"])
