"""keep_checkpoint=false: the app removes the run's checkpoint folder after a successful run (the
samples saved first), and keeps it otherwise (issue 21)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import feassample as fs
from feassample.cli import app
from feassample.cli.outputs import drop_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _cfg(overrides: list[str], keep: bool):
    with initialize_config_dir(config_dir=str(app.config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    # the CLI key is the CLI schema's to add (keep_checkpoint: bool = True); set it directly here
    OmegaConf.set_struct(cfg, False)
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
    # a partial result: its checkpoint is what a resume continues from
    partial = fs.SampleSet(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1),
                           torch.zeros(1, dtype=torch.bool), {"status": "partial"})
    assert drop_checkpoint(kept, partial) is None and (kept / "checkpoint" / "state.pt").is_file()


def test_a_folder_that_is_not_a_checkpoint_is_never_removed(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "notes.txt").write_text("mine")
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "samples.pt").write_bytes(b"")
    ok = fs.SampleSet(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1),
                      torch.ones(1, dtype=torch.bool), {"status": "success"})
    assert drop_checkpoint(tmp_path, ok) is None and (tmp_path / "checkpoint" / "notes.txt").is_file()
