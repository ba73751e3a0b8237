"""The app's model configs for models by name and format (model=exported, torchscript,
torchvision), with units as "layer:n" strings. Weights are saved from random initialization."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import feassample as fs
from feassample.cli import app, build

from vision_support import import_vision

ROOT = Path(__file__).resolve().parents[2]
CONF = Path(app.config_dir())


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


INPUT_SPACE = ["problem=neuron", "problem.generator=null", "problem.encoder=null",
               "problem.input_shape=[3,6,6]", "sampler.n=10", "sampler.k=5", "progress=false"]


def test_an_exported_program_runs_from_the_cli_with_a_unit_string(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = Net().eval()
    program = torch.export.export(net, (torch.rand(2, 3, 6, 6),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    monkeypatch.chdir(tmp_path)  # a relative model.path resolves against the launch directory
    cfg = _compose(["model=exported", "model.path=net.pt2", "model.input_range=[0,1]",
                    *INPUT_SPACE, "problem.units.0.unit=conv:2", "problem.units.0.band=[0.05,0.15]"])
    metrics = app.run(cfg, tmp_path / "run", tmp_path)
    assert metrics["status"] == "success"
    s = fs.SampleSet.load(tmp_path / "run" / "samples")
    with torch.no_grad():  # the original module, not the program
        v = nn.functional.conv2d(s.x, net.conv.weight, net.conv.bias, padding=1)[:, 2].mean(dim=(1, 2))
    assert bool(((v >= 0.05) & (v <= 0.15)).all())


def test_a_torchscript_archive_from_the_cli_reads_its_output(tmp_path):
    torch.manual_seed(0)
    net = Net().eval()
    torch.jit.script(net).save(str(tmp_path / "net.ts"))
    cfg = _compose(["model=torchscript", f"model.path={tmp_path}/net.ts", "model.input_range=[0,1]",
                    *INPUT_SPACE, "problem.units.0.unit=output:1", "problem.units.0.band=[-1e9,1e9]"])
    problem = build.build_problem(cfg, ROOT)
    assert problem.layer == "output" and problem.unit == 1
    x = torch.rand(3, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(problem.measure(x).values[:, 0], net(x)[:, 1], atol=1e-6)


def test_model_templates_name_what_is_missing():
    for name, key in (("exported", "model.path"), ("torchvision", "model.arch")):
        with pytest.raises(ValueError, match=f"model={name} needs {key}="):
            build.build_model(_compose([f"model={name}"]), ROOT)


def test_a_torchvision_model_by_name_from_the_cli(tmp_path):
    tv = import_vision("torchvision")
    torch.manual_seed(0)
    torch.save(tv.models.resnet18(weights=None).state_dict(), tmp_path / "sd.pt")  # random init
    cfg = _compose(["model=torchvision", "model.arch=resnet18", f"model.weights={tmp_path}/sd.pt",
                    *INPUT_SPACE[:3], "problem.input_shape=[3,32,32]",
                    "problem.units.0.unit=layer4:17", f"problem.units.0.band=[{-math.inf},{math.inf}]"])
    problem = build.build_problem(cfg, ROOT)
    assert problem.layer == "layer4" and problem.unit == 17
    assert problem.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))
