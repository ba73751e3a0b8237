"""Summary and run pictures with axes, labels and the band marked; the sweep summary with
log_prob ± SE, mixed in words, evaluations per sample and a status for every job (issue 21)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import feassample as fs
from feassample import viz
from feassample.cli import summary


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.fixture(scope="module")
def slab_samples():
    torch.set_num_threads(1)
    p = fs.LogisticHalfspace.random(d=8, z1=0.6, z2=0.8, w_seed=0)
    return p, fs.sample(p, n=30, k=5, seed=0, method="cover", progress=False)


def _band_lines(ax) -> list[float]:
    return sorted(float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_linestyle() == "--")


def test_summary_histograms_have_axes_labels_ticks_and_the_band(slab_samples):
    _, s = slab_samples
    fig = viz.sample_rows_figure([("z1=0.6", s), ("again", s)])
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert ax.get_ylabel() == "count" and ax.axison
        assert len(ax.get_xticks()) > 1 and len(ax.get_yticks()) > 1
        # the band of sigmoid(.) in [0.6, 0.8] on the logit scale, from the definition of logit
        assert _band_lines(ax) == pytest.approx([_logit(0.6), _logit(0.8)], abs=1e-9)
        assert "band logit f(x) in [0.405, 1.39]" in ax.get_title(loc="left")
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["logit f(x)"]
    assert "constraint value" in axes[-1].get_xlabel()


def test_the_run_picture_marks_the_band_in_each_value_panel(slab_samples, tmp_path):
    p, s = slab_samples
    from feassample.viz.figure import new_figure

    fig = new_figure()
    ax = fig.subplots(1, 1)
    viz.plot_values(s, p, [ax])
    assert ax.get_xlabel() == "logit f(x)" and ax.get_ylabel() == "count"
    assert _band_lines(ax) == pytest.approx([_logit(0.6), _logit(0.8)], abs=1e-9)
    assert "band" in [t.get_text() for t in ax.get_legend().get_texts()]


def _job(sweep: Path, name: str, overrides: list[str], metrics=None, log: str = "") -> None:
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if log:
        (run / "app.log").write_text(log)


def test_the_sweep_summary_has_evals_per_sample_log_prob_with_se_and_a_status_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0", ["method=smc"], {"status": "success", "n_returned": 40, "n_evals": 8192,
                                      "rounds": 31, "log_prob": -3.688, "log_prob_se": 0.16,
                                      "mixed": None, "diagnostics": {"mixed": None, "skipped": "few"}})
    _job(sweep, "1", ["method=cover"], {"status": "partial", "n_returned": 25, "n_evals": 1000,
                                        "seed_steps": 12, "rounds": 5, "log_prob": None,
                                        "log_prob_se": None, "mixed": False})
    _job(sweep, "2", ["method=smc"], {"status": "success", "n_returned": 40, "n_evals": 256,
                                      "rounds": 1, "log_prob": -0.74, "log_prob_se": 0.066, "mixed": None,
                                      "diagnostics": {"mixed": None, "independent": True}})
    _job(sweep, "3", ["method=walk"], None, log="started\nRuntimeError: CUDA out of memory\n")
    out = summary.write_summary(sweep)
    rows = {r["run"]: r for r in out["rows"]}
    assert list(rows) == ["0", "1", "2", "3"]
    assert rows["0"]["evals_per_sample"] == 8192 / 40 and rows["1"]["evals_per_sample"] == 1000 / 25
    assert rows["0"]["seed_steps"] == "n/a" and rows["1"]["seed_steps"] == 12
    assert rows["3"]["status"].startswith("no metrics.json") and "CUDA out of memory" in rows["3"]["status"]
    table = (sweep / "summary.md").read_text().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    col = {name: header.index(name) for name in ("log_prob ± SE", "mixed", "evals_per_sample", "status")}
    assert cells["0"][col["log_prob ± SE"]] == "-3.688 ± 0.16"
    assert cells["0"][col["mixed"]] == "not checked" and cells["1"][col["mixed"]] == "NO"
    assert cells["2"][col["mixed"]] == "independent draws"
    assert cells["0"][col["evals_per_sample"]] == "204.8"
    assert "failed, killed or still running" in cells["3"][col["status"]]
    assert "log_prob_se" in (sweep / "summary.csv").read_text().splitlines()[0]
