"""docs/extending.md's examples run without touching library files: a new sampler, a new
diversity objective and a new problem, from Python and from the command line, with checkpoints,
signals and bit-identical resume given by the one driver."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import feassample as fs
from feassample.cli import app
from feassample.rundir.storage import load_checkpoint
from feassample.models.files import load_object

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SAMPLER = load_object(f"{EXAMPLES / 'extending_sampler.py'}:BoxMetropolis")
SHELL = load_object(f"{EXAMPLES / 'extending_problem.py'}:make")
OBJECTIVE = load_object(f"{EXAMPLES / 'extending_objective.py'}:SoftNearest")


class StopAfter:
    def __init__(self, phase: str, rounds: int) -> None:
        self.phase, self.rounds, self.seen = phase, rounds, 0

    def __call__(self, phase, state, info) -> None:
        if phase == self.phase:
            self.seen += 1
            if self.seen == self.rounds:
                raise KeyboardInterrupt


CASES = {  # example -> (problem, settings, phase to interrupt)
    "sampler": (lambda: fs.LogisticHalfspace.random(16, 0.6, 0.8), {"method": "box_metropolis"}, "box_metropolis"),
    "objective": (lambda: fs.LogisticHalfspace.random(16, 0.6, 0.8),
                  {"method": "walk", "objective": "soft_nearest"}, "walk"),
    "problem": (lambda: SHELL(d=6), {"options": {"rejection_rate": None}}, "smc"),  # the levels
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_example_checkpoints_and_resumes_bit_identically(tmp_path, case):
    make, settings, phase = CASES[case]
    problem = make()
    full = fs.sample(problem, n=120, k=6, seed=2, **settings)
    assert full.status == "success" and bool(full.feasible.all())
    part = fs.sample(problem, n=120, k=6, seed=2, run_dir=tmp_path, callbacks=[StopAfter(phase, 8)], **settings)
    assert part.status == "interrupted" and len(part) < 120
    checkpoint, _ = load_checkpoint(tmp_path)
    assert checkpoint.phase == phase and checkpoint.rows["codes"].shape[0] == len(part)
    resumed = fs.sample(problem, n=120, resume=tmp_path)
    assert resumed.status == "success" and resumed.stats["resumed"] is True
    assert torch.equal(resumed.codes, full.codes)


def test_the_new_sampler_is_exact_inside_the_set_and_validates_its_options():
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s = fs.sample(p, n=100, k=5, seed=0, method=SAMPLER(step=0.1))
    assert s.status == "success" and bool(p.membership(s.x.double()).all())
    assert s.stats["method"] == "box_metropolis" and 0 < s.stats["acceptance"] < 1
    # written from docs/extending.md alone, it gets the run's diagnostics over its 5 walkers and
    # the stable result fields
    assert s.diagnostics is not None and s.diagnostics["chains"] == 5 and s.diagnostics["rhat_max"] > 0
    assert s.n_evals > 0 and s.max_violation <= float(p.bands.tol) and s.log_prob is None
    with pytest.raises(ValueError, match="no option 'stepp' \\(did you mean 'step'\\?\\)"):
        fs.sample(p, n=10, k=5, method="box_metropolis", options={"stepp": 0.1})
    with pytest.raises(ValueError, match="step must be > 0"):
        fs.sample(p, n=10, k=5, method="box_metropolis", options={"step": -1.0})


def test_the_progress_bar_counts_a_new_samplers_samples(capsys):
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    fs.sample(p, n=60, k=5, seed=0, method="box_metropolis", progress=True,
              callbacks=[lambda phase, state, info: time.sleep(0.01)])  # slow enough for tqdm to redraw
    err = capsys.readouterr().err
    assert "55/60" in err or "60/60" in err  # the driver's bar follows progress(state), whatever the sampler


def test_the_new_objective_sees_the_pools_points():
    seen = {}

    class Spy(OBJECTIVE):
        def value(self, batch, pool):
            if pool is not None and pool.points is not None:
                seen["points"] = max(seen.get("points", 0), pool.points.shape[0])
            return super().value(batch, pool)

    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s = fs.sample(p, n=80, k=5, seed=0, method="walk", objective=Spy())
    assert s.status == "success" and seen["points"] >= 70  # the walk passed its accepted points


KILLED = """
import sys, time, torch, feassample as fs
from feassample.models.files import load_object
torch.set_num_threads(1)
load_object(sys.argv[2] + ":BoxMetropolis")
slow = lambda phase, state, info: time.sleep(0.02)
s = fs.sample(fs.LogisticHalfspace.random(16, 0.6, 0.8), n=3000, k=5, seed=0, run_dir=sys.argv[1],
              callbacks=[slow], method="box_metropolis")
print("STATUS", s.status, len(s))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_between_rounds_and_the_resume_is_bit_identical(tmp_path, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(run), str(EXAMPLES / "extending_sampler.py")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shards = run / "checkpoint" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.pt"))) < 5:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]  # the run returned, it did not die
    assert "STATUS interrupted" in out
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    resumed = fs.sample(p, n=200, resume=run)
    full = fs.sample(p, n=200, k=5, seed=0, method="box_metropolis")
    assert resumed.status == "success" and torch.equal(resumed.codes, full.codes)


def _compose(overrides):
    with initialize_config_dir(config_dir=app.config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _cli(args, cwd):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "feassample", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_example_runs_from_the_command_line_and_resumes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    plugin = ["sampler=plugin", "sampler._target_=examples/extending_sampler.py:BoxMetropolis",
              "+sampler.options.step=0.08", "problem.d=16", "sampler.k=5", "progress=false",
              "reference_draws=2"]
    out = _cli([*plugin, "sampler.n=40", f"hydra.run.dir={first}"], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["status"] == "success" and metrics["method"] == "box_metropolis"
    out = _cli([*plugin, "sampler.n=80", f"resume={first}", f"hydra.run.dir={second}"], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = fs.SampleSet.load(first / "samples")
    assert len(resumed) == 80 and resumed.stats["resumed"] is True and bool(resumed.feasible.all())
    for extra in (["sampler=walk", "objective._target_=examples/extending_objective.py:SoftNearest",
                   "+objective.options.temperature=0.05"],
                  ["problem=python", "problem.factory=examples/extending_problem.py:make",
                   "+problem.kwargs.d=6", "coverage=false"]):
        run = tmp_path / extra[0].replace("=", "_")
        out = _cli([*extra, "sampler.n=40", "sampler.k=5", "progress=false", "reference_draws=2",
                    f"hydra.run.dir={run}"], ROOT)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads((run / "metrics.json").read_text())["status"] == "success"


def test_a_misspelled_option_is_refused_before_any_directory_is_created(tmp_path):
    run = tmp_path / "never"
    out = _cli(["+sampler.options.particels=10", "progress=false", f"hydra.run.dir={run}"], ROOT)
    assert out.returncode != 0 and "no option 'particels' (did you mean 'particles'?)" in out.stderr + out.stdout
    assert not run.exists()
    out = _cli(["sampler=plugin", "sampler._target_=examples/extending_sampler.py:BoxMetropolis",
                "+sampler.options.stepp=1", f"hydra.run.dir={run}"], ROOT)
    assert out.returncode != 0 and "no option 'stepp'" in out.stderr + out.stdout
    assert not run.exists()


def test_typed_options_are_checked_when_the_config_is_composed():
    cfg = _compose(["sampler.options.particles=300"])  # the default smc's own option
    assert app.sampler_config(cfg).options.particles == 300
    cfg = _compose(["sampler=cover", "sampler.options.budget=10"])  # the cover walk's own option
    assert app.sampler_config(cfg).options.budget == 10
    with pytest.raises(ConfigCompositionException):
        _compose(["sampler.options.particels=10"])
    cfg = _compose(["+sampler.options.particels=10"])  # '+' adds keys even to a typed node...
    with pytest.raises(ValueError, match="no option 'particels' \\(did you mean 'particles'\\?\\)"):
        app.sampler_config(cfg)                         # ...so the app checks them itself
    with pytest.raises(ConfigCompositionException):
        _compose(["sampler=walk", "sampler.options.particles=10"])  # not a walk option
    cfg = _compose(["sampler=plugin", "sampler._target_=os:system"])
    with pytest.raises(TypeError, match="not a subclass of feassample's Sampler"):
        app.sampler_config(cfg, ROOT)
