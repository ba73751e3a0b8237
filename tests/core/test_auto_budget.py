"""cover's budget="auto" (more passes at doubled thinning until the diagnostics pass or the cap)
and the population diagnostics of smc (rows carry their particle and ancestor)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

import feassample as fs
from feassample.core import diagnostics
from feassample.core.kernels.cover import CoverConfig
from feassample.rundir.storage import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks import coverage  # noqa: E402


def test_auto_on_a_mixed_slab_stops_after_one_pass_at_the_same_cost():
    p = fs.LogisticHalfspace.random(64, 0.6, 0.8)
    fixed = fs.sample(p, n=500, k=10, seed=0, method="cover")
    auto = fs.sample(p, n=500, k=10, seed=0, method="cover", options={"budget": "auto"})
    assert fixed.stats["mixed"] is True
    assert auto.stats["budget_rounds"] == 1 and auto.stats["budget_stop"] == "mixed"
    assert auto.n_evals == fixed.n_evals  # 9.5 planned either way
    assert torch.equal(auto.codes, fixed.codes)
    assert "budget auto: 1 pass(es)" in auto.summary()


def test_auto_spends_more_where_the_first_pass_is_not_mixed():
    """Two pieces (benchmarks/coverage.py), seed 2: measured R-hat max 1.066 at thin 8 (8.5
    evaluations per sample), 1.022 at thin 16 (mixed; 24.5 per sample)."""
    problem = coverage.cases()["two_pieces"].problem
    fixed = fs.sample(problem, n=300, k=10, seed=2, method="cover")
    auto = fs.sample(problem, n=300, k=10, seed=2, method="cover", options={"budget": "auto"})
    assert fixed.stats["mixed"] is False and bool(auto.feasible.all()) and len(auto) == 300
    history = auto.stats["budget_history"]
    assert auto.stats["budget_rounds"] == len(history) >= 2
    assert [h["thin"] for h in history] == [history[0]["thin"] * 2 ** i for i in range(len(history))]
    assert auto.stats["thin"] == history[-1]["thin"]
    assert history[0]["rhat_max"] == pytest.approx(fixed.stats["rhat_max"])  # the same first pass
    assert auto.stats["evals_per_sample"] > 2 * fixed.stats["evals_per_sample"]
    assert auto.stats["evals_per_sample"] <= 100  # the default cap
    assert auto.stats["budget_stop"] == "mixed" and auto.stats["mixed"] is True
    assert auto.stats["rhat_max"] < fixed.stats["rhat_max"]


def test_auto_stops_at_the_cap_and_names_the_statistic(caplog):
    problem = coverage.cases()["two_pieces"].problem
    with caplog.at_level(logging.WARNING, logger="feassample.core.kernels.cover"):
        s = fs.sample(problem, n=300, k=10, seed=0, method="cover", options={"budget": "auto", "max_budget": 20})
    assert s.stats["budget_stop"] == "cap" and s.stats["budget_rounds"] == 1
    assert s.stats["evals_per_sample"] <= 20 and s.stats["mixed"] is False
    assert "stopped at the cap max_budget=20" in caplog.text and "R-hat of" in caplog.text


@pytest.mark.parametrize("every", [0, 25, 60], ids=["save-every-round", "every-25th", "every-60th"])
def test_auto_resumes_bit_identically_after_a_fresh_pass(tmp_path, monkeypatch, every):
    # the saves between rounds are timed (ROWS_EVERY_S): here a clock that ticks once per call
    # so a save comes every few rounds; the restart of the rows must still be saved at once, or
    # the cut would keep the first pass's rows under the second pass's count
    import itertools
    import feassample.core.driver.checkpoint as checkpoint
    ticks = itertools.count()
    monkeypatch.setattr(checkpoint, "ROWS_EVERY_S", every)
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: float(next(ticks)))
    problem = coverage.cases()["two_pieces"].problem
    opts = {"budget": "auto"}
    full = fs.sample(problem, n=300, k=10, seed=2, method="cover", options=opts)

    class StopInSecondPass:
        def __call__(self, phase, state, info):
            if phase == "cover" and state.budget_rounds == 2 and state.samples.count >= 100:
                raise KeyboardInterrupt

    part = fs.sample(problem, n=300, k=10, seed=2, method="cover", options=opts, run_dir=tmp_path,
                     callbacks=[StopInSecondPass()])
    assert part.status == "interrupted"
    checkpoint, _ = load_checkpoint(tmp_path)
    # the shards hold the second pass only: the first pass's rows were cut when it restarted
    assert checkpoint.rows["codes"].shape[0] == checkpoint.state["samples.count"] < 300
    resumed = fs.sample(problem, n=300, resume=tmp_path)
    assert resumed.status == "success" and torch.equal(resumed.codes, full.codes)
    assert resumed.stats["budget_history"] == full.stats["budget_history"]


@pytest.mark.parametrize("bad", ["fast", 0, -1.0, True])
def test_a_bad_budget_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="budget must be a number > 0 or 'auto'"):
        CoverConfig(budget=bad)
    with pytest.raises(ValueError, match="max_budget must be"):
        CoverConfig(budget="auto", max_budget=0)


def test_budget_auto_composes_from_the_command_line():
    from hydra import compose, initialize_config_dir

    from feassample.cli import app
    with initialize_config_dir(config_dir=str(app.config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["sampler=cover", "sampler.options.budget=auto",
                                                       "sampler.options.max_budget=40"])
    options = app.sampler_config(cfg).options
    assert options.budget == "auto" and options.max_budget == 40


def test_ancestry_counts_and_inverse_simpson():
    d = diagnostics.ancestry(torch.tensor([0, 0, 1, 2]))
    assert d["row_ancestors"] == 3 and d["effective_ancestors"] == pytest.approx(1 / (0.25 + 2 * 0.0625))
    assert diagnostics.ancestry(torch.arange(7))["effective_ancestors"] == pytest.approx(7)


def test_smc_rows_carry_particle_and_ancestor_and_are_diagnosed():
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s = fs.sample(p, n=1000, seed=3, method="smc", options={"particles": 200, "rejection_rate": None})
    d = s.stats["diagnostics"]
    # 1000 rows from 200 particles: 5 draws per particle chain
    assert d["chains"] == 200 and d["draws"] == 5 and d["rows"] == 1000
    assert s.stats["mixed"] in (True, False) and "rhat_max" in s.stats
    assert d["duplicates"] == diagnostics.duplicates(s.codes)
    # the rows descend from at most the population's surviving ancestors
    assert 1 <= d["row_ancestors"] <= s.stats["distinct_ancestors"]
    assert 1 <= s.stats["effective_ancestors"] <= d["row_ancestors"]
    assert "distinct ancestors" in s.summary()


def test_smc_with_one_row_per_particle_is_diagnosed_over_ancestral_families():
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s = fs.sample(p, n=300, seed=3, method="smc", options={"rejection_rate": None})
    d = s.stats["diagnostics"]
    assert d["chains_by"] == "ancestor" and d["chains"] >= 20 and d["draws"] == 4
    assert s.stats["mixed"] is True and "duplicates" in s.stats and d["row_ancestors"] >= 1
    assert "ancestral families" in s.summary() and "distinct ancestors" in s.summary()
    # too few families (a population of 40): skipped, and the summary says why
    s = fs.sample(p, n=40, seed=3, method="smc", options={"particles": 40, "rejection_rate": None})
    assert s.stats["mixed"] is None and "mixing not checked" in s.summary()
