"""The command line: one-key units, presets that leak nothing, paths relative to the launch
directory, and every bad input one line on stderr (exit 2) before any run directory exists."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import feassample as fs
from feassample.cli import app, build, checks, units
from feassample.models import load_object

ROOT = Path(__file__).resolve().parents[2]
CONF = Path(app.config_dir())

NET_PY = """
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(256, 8)
        self.fc2 = nn.Linear(8, 3)
    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))
"""


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "feassample", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture()
def user_dir(tmp_path):
    """A directory outside the checkout holding a user's net.py, its state_dict and a whole
    pickled module."""
    (tmp_path / "net.py").write_text(NET_PY)
    net = load_object(f"{tmp_path}/net.py:Net")()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    torch.save(net, tmp_path / "whole.pt")
    return tmp_path


FILE_MODEL = ["model=file", "model.cls=net.py:Net", "model.state_dict=net.pt"]


def test_one_unit_is_one_key_and_a_string_list_makes_an_intersection():
    cfg = _compose(["problem=neuron", "problem.unit=classifier.fc2:5", "problem.band=[6,9]"])
    assert units.neuron_units(cfg) == [(None, "classifier.fc2:5", 6.0, 9.0)]
    cfg = _compose(["problem=intersection", "problem.units=[classifier.fc2:3,classifier.fc2:8]",
                    "problem.bands=[[4,8],[3,9]]"])
    problem = build.build_problem(cfg, ROOT)
    assert isinstance(problem, fs.Intersection) and list(problem.bands.lo) == [4.0, 3.0]
    cfg = _compose(["problem=intersection",
                    "problem.units=[{unit: 'classifier.fc2:3', band: [4,8]}, classifier.fc2:8]",
                    "problem.band=[1,2]"])
    assert [u[2:] for u in units.neuron_units(cfg)] == [(4.0, 8.0), (1.0, 2.0)]
    cfg = _compose(["problem=neuron", "problem.units.0.layer=classifier.fc2",  # the old keys
                    "problem.units.0.unit=1", "problem.units.0.z1=0", "problem.units.0.z2=2"])
    assert units.neuron_units(cfg) == [("classifier.fc2", 1, 0.0, 2.0)]


def test_only_the_digits_model_brings_a_generator_an_encoder_and_a_unit(user_dir):
    digits = build.build_problem(_compose(["problem=neuron"]), ROOT)
    assert digits.generator is not None and digits.unit == 3
    cfg = _compose([*FILE_MODEL, "problem=neuron", "problem.unit=fc2:1", "problem.band=[0,1]",
                    "model.input_range=[0,1]", "problem.input_shape=[1,16,16]"])
    problem = build.build_problem(cfg, user_dir)
    assert problem.generator is None and problem.encoder is None and problem.layer == "fc2"
    with pytest.raises(ValueError, match="problem=neuron needs a unit"):
        checks.check_config(_compose([*FILE_MODEL, "problem=neuron"]), user_dir)


def test_the_fourier_parametrization_is_selectable_from_the_cli():
    from feassample.models.params import FourierImage
    cfg = _compose(["problem=neuron", "problem.unit=classifier.fc2:1", "problem.band=[1,2]",
                    "problem.generator=fourier", "problem.encoder=null"])
    problem = build.build_problem(cfg, ROOT)
    assert isinstance(problem.generator, FourierImage)
    assert problem.generator.output_shape == (1, 16, 16)  # from the digits model's metadata


def test_relative_paths_resolve_against_the_launch_directory(user_dir):
    out = _cli([*FILE_MODEL, "problem=neuron", "problem.unit=fc2:1", "problem.band=[-1,1]",
                "model.input_range=[0,1]", "problem.input_shape=[1,16,16]", "sampler.n=10",
                "sampler.k=5", "progress=false", "plot=false", "hydra.run.dir=run"], user_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    s = fs.SampleSet.load(user_dir / "run" / "samples")
    net = load_object(f"{user_dir}/net.py:Net")()
    net.load_state_dict(torch.load(user_dir / "net.pt", weights_only=True))
    with torch.no_grad():
        f = net(s.x)[:, 1]   # an independent forward pass of the user's model
    assert len(s) == 10 and bool(((f >= -1) & (f <= 1)).all())


@pytest.mark.parametrize("args,message", [
    (["sampler.k=20", "sampler.n=10"], "k (walkers per round) must be <= n"),
    (["problem=neuron", "model=file", "model.cls=nowhere.py:Net", "model.state_dict=net.pt"],
     "model.cls=nowhere.py"),
    ([*FILE_MODEL, "problem=neuron"], "problem=neuron needs a unit"),
    ([*FILE_MODEL, "problem=neuron", "problem.unit=fc2:1", "problem.band=[0,1]"],
     "problem.input_range=[lo,hi] (or model.input_range) is required"),
    (["problem=neuron", "problem.unit=fc2", "problem.band=[0,1]"], "is not 'layer:unit'"),
    (["problem=neuron", "problem.unit=classifier.fc3:1", "problem.band=[0,1]"], "unknown layer 'classifier.fc3'"),
    (["problem=neuron", "problem.unit=classifier.fc2:1", "problem.band=[2,1]"], "z1 <= z2"),
    (["problem=neuron", "problem.unit=classifier.fc2:1", "problem.band=[1,2]", "problem.generator=gan"],
     "problem.generator='gan' is unknown"),
    (["model=file", "model.cls=net.py:Net", "model.state_dict=whole.pt", "problem=neuron",
      "problem.unit=fc2:1", "problem.band=[0,1]", "model.input_range=[0,1]",
      "problem.input_shape=[1,16,16]"], "never unpickles"),
    (["problem=python"], "problem.factory"),
    (["resume=no/such/run"], "resume=no/such/run"),
])
def test_bad_input_is_one_line_before_any_run_directory(user_dir, args, message):
    out = _cli([*args, "hydra.run.dir=run"], user_dir)
    assert out.returncode == 2, out.stderr[-3000:]
    assert not (user_dir / "run").exists()
    assert "Traceback" not in out.stderr and message in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("feassample: "), out.stderr
