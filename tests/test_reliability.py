"""Nothing lost, nothing hung: interruption, kill -9 and resume, NaN models, determinism."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import feassample as fs
from feassample.rundir.storage import has_checkpoint, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def slab() -> fs.LogisticHalfspace:
    return fs.LogisticHalfspace.random(64, 0.6, 0.8)


class InterruptAfter:
    """Raises KeyboardInterrupt (what Ctrl-C does) after some walk rounds."""

    def __init__(self, rounds: int) -> None:
        self.rounds, self.seen = rounds, 0

    def __call__(self, phase, state, info) -> None:
        if phase in ("walk", "cover"):
            self.seen += 1
            if self.seen == self.rounds:
                raise KeyboardInterrupt


METHODS = pytest.mark.parametrize("method", ["cover", "walk"])
STOP_AT = {"cover": 60, "walk": 8}  # rounds: about a fifth of each method's run for n = 300


@METHODS
def test_ctrl_c_returns_the_partial_sampleset_and_saves_it(tmp_path, method):
    s = fs.sample(slab(), n=300, k=10, seed=0, run_dir=tmp_path, callbacks=[InterruptAfter(STOP_AT[method])],
                  method=method)
    assert s.status == "interrupted" and 10 < len(s) < 300
    assert bool(s.feasible.all())
    saved = fs.SampleSet.load(tmp_path / "samples")
    assert torch.equal(saved.codes, s.codes)


@METHODS
def test_resume_continues_to_n_and_matches_an_uninterrupted_run(tmp_path, method):
    problem = slab()
    full = fs.sample(problem, n=300, k=10, seed=0, method=method)
    fs.sample(problem, n=300, k=10, seed=0, run_dir=tmp_path, callbacks=[InterruptAfter(STOP_AT[method])],
              method=method)
    resumed = fs.sample(problem, n=300, resume=tmp_path)
    assert resumed.status == "success" and resumed.stats["resumed"] is True
    assert torch.equal(resumed.codes, full.codes)          # bit-identical continuation
    assert bool(problem.membership(resumed.x).all())
    more = fs.sample(problem, n=350, resume=tmp_path)      # and further, to a larger n
    assert len(more) == 350 and torch.equal(more.codes[:300], full.codes)


def test_resume_during_seeding(tmp_path):
    problem = fs.LogisticHalfspace.random(64, 0.6, 0.8)

    class StopSeeding:
        def __call__(self, phase, state, info):
            if phase == "seeds" and state.steps == 3:
                raise KeyboardInterrupt

    s = fs.sample(problem, n=50, k=5, seed=0, method="cover", run_dir=tmp_path, callbacks=[StopSeeding()])
    assert s.status == "interrupted"
    saved, _ = load_checkpoint(tmp_path)
    assert saved.phase == "seeds" and saved.state["steps"] == 3
    resumed = fs.sample(problem, n=50, resume=tmp_path)
    assert resumed.status == "success" and bool(problem.membership(resumed.x).all())


def test_resume_refuses_another_problem_and_a_missing_checkpoint(tmp_path):
    fs.sample(slab(), n=30, k=5, run_dir=tmp_path)
    with pytest.raises(ValueError, match="another problem"):
        fs.sample(fs.LogisticHalfspace.random(64, 0.5, 0.9), n=40, resume=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fs.sample(slab(), n=40, resume=tmp_path / "nowhere")


KILLED_RUN = """
import sys, time, torch, feassample as fs
torch.set_num_threads(1)
problem = fs.LogisticHalfspace.random(64, 0.6, 0.8)
slow = lambda phase, state, info: time.sleep(0.01) if phase in ("walk", "cover") else None
fs.sample(problem, n=2000, k=10, seed=0, run_dir=sys.argv[1], callbacks=[slow], method=sys.argv[2])
"""


@METHODS
def test_kill_minus_9_loses_at_most_the_last_save_interval_and_resumes(tmp_path, method):
    """Rows and state are saved together at most every ``ROWS_EVERY_S``: a kill leaves a state
    and the shards it counts (at most one round beyond it), and the resumed run repeats the lost
    rounds identically."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(run), method], cwd=ROOT)
    shards = run / "checkpoint" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.pt"))) < 6:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert has_checkpoint(run)
    checkpoint, _ = load_checkpoint(run)
    saved = checkpoint.rows["codes"].shape[0]
    assert saved >= 6 * 1  # every shard written before the kill is there
    on_disk = sum(torch.load(f, weights_only=True)["codes"].shape[0] for f in shards.glob("*.pt"))
    last = max(shards.glob("*.pt"), key=lambda f: f.name)
    # at most the last save's shard beyond the recorded state (a kill between shard and state)
    assert on_disk - saved in (0, torch.load(last, weights_only=True)["codes"].shape[0])
    problem = fs.LogisticHalfspace.random(64, 0.6, 0.8)
    n = max(400, saved + 40)  # more rows than the kill left: the resumed run has to make some
    resumed = fs.sample(problem, n=n, resume=run)
    assert resumed.status == "success" and len(resumed) == n
    assert bool(problem.membership(resumed.x).all())
    full = fs.sample(problem, n=n, k=10, seed=0, method=method)
    assert torch.equal(resumed.codes, full.codes)


class NaNAfter(nn.Module):
    """A model whose output turns NaN on part of the input space (x[0] > 0.9)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        out = self.fc(x)
        return torch.where(x[:, :1] > 0.9, torch.full_like(out, float("nan")), out)


def test_a_model_that_produces_nan_stops_those_samples_and_keeps_the_others():
    model = NaNAfter()
    wrapper = nn.Sequential()
    wrapper.add_module("net", model)
    q = fs.NeuronInverseSet(wrapper, "net", 0, 1.5, 2.5, input_shape=(4,), input_range=(0.0, 1.0))
    s = fs.sample(q, n=60, k=6, seed=0, objective="none")
    assert bool(s.feasible.all())
    x = s.x.double()
    assert bool((x[:, 0] <= 0.9).all())
    f = x.sum(1)
    assert bool(((f >= 1.5) & (f <= 2.5)).all())


def test_same_seed_same_config_same_device_is_bit_identical():
    problem = slab()
    a = fs.sample(problem, n=120, k=10, seed=7)
    b = fs.sample(problem, n=120, k=10, seed=7)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.values, b.values)


def test_device_mismatch_fails_before_work():
    model = nn.Sequential(nn.Linear(4, 2))
    q = fs.NeuronInverseSet(model, "0", 0, 0.0, 1.0, input_shape=(4,), input_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="device"):
        fs.sample(q, n=10, k=2, device="meta")


def test_a_band_a_sigmoid_unit_cannot_reach_ends_infeasible_within_budget():
    """z1 = 1.2 on a sigmoid unit: never reachable; bounded time, best iterates, how close."""
    model = nn.Sequential(nn.Linear(6, 3), nn.Sigmoid())
    q = fs.NeuronInverseSet(model, "1", 0, 1.2, 1.5, input_shape=(6,), input_range=(0.0, 1.0))
    s = fs.sample(q, n=50, k=5, seed=0, method="cover", inner_steps=50, max_outer=4)
    assert s.status == "infeasible" and not bool(s.feasible.any())
    assert s.stats["seed_steps"] == 200
    assert "closest came within" in s.stats["message"]
    gap = float(s.stats["message"].split("closest came within ")[1].split(" ")[0])
    with torch.no_grad():
        best = model(s.x)[:, 0].max()
    assert gap == pytest.approx(1.2 - float(best), abs=1e-3)  # the message says how close
    assert s.values.shape == (5, 1)                            # the best iterates, certified values


def test_an_activation_far_above_the_units_range_ends_infeasible(tmp_path):
    from feassample.models.neurons import digits_neuron
    q = digits_neuron("classifier.fc2", 3, 1000.0, 1001.0)
    # the covering walk's seeds (inner_steps, max_outer); smc's unreachable bands: tests/core/test_smc.py
    s = fs.sample(q, n=20, k=4, seed=0, method="cover", inner_steps=30, max_outer=3, run_dir=tmp_path)
    assert s.status == "infeasible"
    saved = fs.SampleSet.load(tmp_path / "samples")
    assert saved.stats["status"] == "infeasible" and len(saved) == 4


def test_w_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="w has length 3 but d=4"):
        fs.LogisticHalfspace.random(4, 0.5, 0.9, w=[1.0, 2.0, 3.0])
