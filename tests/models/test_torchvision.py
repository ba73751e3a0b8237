"""torchvision imported for real (no test shim) and a ResNet-18 unit sampled end to end, from
Python and from the CLI. Weights are torchvision's random init saved by the test: nothing is
downloaded."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import feassample as fs
from feassample.models import load_model, vision

from vision_support import import_vision

ROOT = Path(__file__).resolve().parents[2]
MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def _layer4_channel(reference: nn.Module, x: torch.Tensor, channel: int) -> torch.Tensor:
    """torchvision's own resnet18 run by hand up to layer4: the mean of one channel, (B,)."""
    with torch.no_grad():
        body = nn.Sequential(*list(reference.children())[:-2])
        return body((x - MEAN) / STD)[:, channel].mean(dim=(1, 2))


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    tv = import_vision("torchvision")
    torch.manual_seed(0)
    reference = tv.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.mark.slow  # ~25 s of interpreter start on 2 busy cores; the CLI test below also runs fresh
def test_torchvision_imports_in_a_fresh_interpreter_after_feassample_models():
    import_vision("torchvision")
    # A bare `import torchvision` after `import feassample.models`, in a process that never saw a
    # shim: this is what failed with "operator torchvision::nms does not exist" on a CPU torch.
    code = ("import feassample.models, torchvision, torch; "
            "m = torchvision.models.resnet18(weights=None).eval(); "
            "print(tuple(m(torch.zeros(1, 3, 32, 32)).shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 1000)"


def test_declaring_the_missing_ops_is_idempotent_and_leaves_defined_ones_alone():
    import_vision("torchvision")
    assert vision.declare_missing_ops() == []  # both exist now: declared or loaded, never twice
    assert hasattr(torch.ops.torchvision, "nms") and hasattr(torch.ops.torchvision, "qnms")


def test_a_resnet18_unit_is_sampled_from_python_and_every_sample_is_in_its_band(resnet18):
    reference, path = resnet18
    model = load_model("torchvision", arch="resnet18", weights=path)
    probe = torch.rand(256, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    values = _layer4_channel(reference, probe, 17)
    z1, z2 = float(values.quantile(0.5)), float(values.max()) + 1.0
    problem = fs.NeuronInverseSet(model, unit="layer4:17", z1=z1, z2=z2, input_shape=(3, 16, 16))
    samples = fs.sample(problem, n=4, k=2, seed=0, progress=False)
    assert samples.status == "success" and len(samples) == 4
    act = _layer4_channel(reference, samples.x, 17)
    assert bool(((act >= z1 - 1e-5) & (act <= z2 + 1e-5)).all()), act


def test_a_resnet18_unit_is_sampled_from_the_cli(resnet18, tmp_path):
    reference, path = resnet18
    run_dir = tmp_path / "run"
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    out = subprocess.run(
        [sys.executable, "-m", "feassample", "model=torchvision", "model.arch=resnet18",
         f"model.weights={path}", "problem=neuron", "problem.generator=null", "problem.encoder=null",
         "problem.input_shape=[3,16,16]", "problem.units.0.unit=layer4:17",
         f"problem.units.0.band=[0.0,{math.inf}]", "sampler.n=4", "sampler.k=2", "progress=false",
         "reference_draws=0", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "success"
    x = torch.load(run_dir / "samples" / "samples.pt", weights_only=True)
    x = x["x"] if isinstance(x, dict) else x
    assert x.shape[0] == 4 and tuple(x.shape[1:]) == (3, 16, 16)
    assert bool((_layer4_channel(reference, x, 17) >= -1e-5).all())
