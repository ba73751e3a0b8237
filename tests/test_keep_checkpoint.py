"""keep_checkpoint=false: a successful run's checkpoint files go (the samples saved first), only
the files the run wrote; a run that did not succeed keeps them (issue 21)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import feassample as fs
from feassample.cli import app
from feassample.rundir.storage import drop_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _cfg(overrides: list[str], keep: bool):
    with initialize_config_dir(config_dir=str(app.config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    cfg.keep_checkpoint = keep
    return cfg


BASE = ["problem.d=8", "sampler.n=30", "sampler.k=5", "progress=false", "coverage=false", "plot=false"]


def test_a_successful_run_drops_its_checkpoint_and_keeps_its_samples(tmp_path):
    run = tmp_path / "run"
    metrics = app.run(_cfg(BASE, keep=False), run, ROOT)
    assert metrics["status"] == "success"
    assert not (run / "checkpoint").exists()
    assert metrics["checkpoint"].startswith("removed (") and int(metrics["checkpoint"][9:].split()[0]) > 0
    assert json.loads((run / "metrics.json").read_text())["checkpoint"] == metrics["checkpoint"]
    s = fs.SampleSet.load(run / "samples")
    assert len(s) == 30 and bool(s.feasible.all())


def test_the_checkpoint_stays_by_default_and_for_a_run_that_did_not_succeed(tmp_path):
    kept = tmp_path / "kept"
    metrics = app.run(_cfg(BASE, keep=True), kept, ROOT)
    assert (kept / "checkpoint" / "state.pt").is_file() and "checkpoint" not in metrics
    # an unreachable band ends infeasible: its checkpoint is what a resume would continue from
    p = fs.LogisticHalfspace.random(8, 0.995, 0.997)
    s = fs.sample(p, n=10, k=5, method="cover", run_dir=tmp_path / "short", keep_checkpoint=False,
                  options={"max_rounds": 3})
    assert s.status != "success" and (tmp_path / "short" / "checkpoint" / "state.pt").is_file()


def test_only_the_files_the_run_wrote_are_removed(tmp_path):
    run = tmp_path / "run"
    fs.sample(fs.LogisticHalfspace.random(8, 0.55, 0.75), n=20, k=5, run_dir=run)
    (run / "checkpoint" / "notes.txt").write_text("mine")
    freed = drop_checkpoint(run)
    assert freed > 0 and (run / "checkpoint" / "notes.txt").read_text() == "mine"
    assert not (run / "checkpoint" / "state.pt").exists() and not (run / "checkpoint" / "run.json").exists()
    assert len(fs.SampleSet.load(run / "samples")) == 20
