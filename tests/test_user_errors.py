"""Errors from the user's side: every bad input is refused before any work with one line naming
the argument, valid numpy / 0-d tensor scalars are accepted, and config values never run code
(issue 12: "Errors from the user's side", "Config values never run arbitrary code")."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import feassample as fs
from feassample.core.sampling import SamplerConfig, memory_estimate
from feassample.models import digits, load_classifier
from feassample.models.files import load_object

ROOT = Path(__file__).resolve().parents[1]
BOX = dict(box=(0.0, 1.0))


def _run(problem, **kw):
    return fs.sample(problem, n=6, k=2, seed=0, **kw)


# -- constraint functions ------------------------------------------------------------------
@pytest.mark.parametrize("h, match", [
    (lambda x: [x.sum(1)], r"constraints must return a tensor \(B, m\) = \(16, 1\), got a list \(torch.stack"),
    (lambda x: 3.0, r"constraints must return a tensor .* got a float"),
    (lambda x: x.sum(1)[:1], r"constraints returned shape \(1,\), expected \(16, 1\)"),
])
def test_a_constraint_that_returns_no_batch_of_values_is_named(h, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _run(fs.from_functions(h, 0.5, 0.7, (2,), **BOX))


@pytest.mark.parametrize("h", [lambda x: x.sum(1).detach(), lambda x: x.argmax(1).to(x.dtype)],
                         ids=["detach", "argmax"])
def test_a_constraint_without_gradient_is_refused_not_reported_infeasible(h):
    # before: status "infeasible ... band may be unreachable" after the whole seed phase. The
    # methods that follow gradients (cover, walk, joint, langevin...) refuse it before any work
    with pytest.raises(ValueError, match=r"no gradient with respect to the codes \(detach/argmax\?\)"):
        _run(fs.from_functions(h, 0.5, 0.7, (2,), **BOX), method="cover")


def test_a_gradient_free_method_still_takes_a_constraint_without_gradient():
    p = fs.from_functions(lambda x: x.sum(1).detach(), 0.5, 1.5, (2,), **BOX)
    s = _run(p, method="rejection")
    sums = s.x.double().sum(1)  # an independent check of the band, not the sampler's own values
    assert len(s) == 6 and bool(((sums >= 0.5) & (sums <= 1.5)).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_values_in_another_dtype_than_the_run_are_refused_naming_both(dtype):
    # before: "Index put requires the source and destination dtypes match" from deep inside
    name = str(dtype).replace("torch.", "")
    p = fs.from_functions(lambda x: x.to(dtype).sum(1), 0.5, 0.7, (2,), **BOX)
    with pytest.raises(TypeError, match=f"constraint values are {name} but the run's dtype is float32"):
        _run(p)


def test_float64_values_run_in_a_float64_run():
    p = fs.from_functions(lambda x: x.double().sum(1), 0.5, 0.7, (2,), **BOX)
    s = _run(p, dtype="float64")
    assert bool(s.feasible.all()) and bool(((s.x.sum(1) >= 0.5) & (s.x.sum(1) <= 0.7)).all())


# -- shapes --------------------------------------------------------------------------------
def test_an_int_code_shape_means_a_vector():
    p = fs.from_functions(lambda x: x.sum(1), 0.5, 0.7, 2, **BOX)
    assert p.code_shape == (2,) and p.input_shape == (2,)
    s = _run(p)
    assert s.codes.shape == (6, 2) and bool(((s.x.sum(1) >= 0.5) & (s.x.sum(1) <= 0.7)).all())


@pytest.mark.parametrize("shape", ["ab", (2.5,), (True,), (0,), ()])
def test_a_code_shape_that_is_not_a_shape_is_refused(shape):
    with pytest.raises(ValueError, match="code_shape must be"):
        fs.from_functions(lambda x: x.sum(1), 0.5, 0.7, shape)


class _NoBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x.flatten(1)).sum(0)  # reduces over the batch


def test_a_layer_output_without_batch_dimension_is_refused():
    with pytest.raises(ValueError, match=r"layer 'output' returned shape \(4,\) .* no batch dimension"):
        fs.NeuronInverseSet(_NoBatch(), layer="output", unit=0, z1=-1.0, z2=1.0,
                            input_shape=(1, 4, 4), input_range=(0.0, 1.0))


class _Gen(nn.Module):
    code_shape = (3,)  # wrong: the first layer takes 5

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 16)

    def forward(self, z):
        return torch.sigmoid(self.fc(z)).reshape(-1, 1, 4, 4)


def test_a_generator_whose_code_shape_is_wrong_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    with pytest.raises(ValueError, match=r"generator cannot decode codes of code_shape \(3,\)"):
        fs.NeuronInverseSet(model, layer="1", unit=0, z1=-1.0, z2=1.0, generator=_Gen(),
                            input_shape=(1, 4, 4))


def test_a_decoder_that_fails_is_named_by_the_core_probe():
    p = fs.from_functions(lambda x: x.sum(1), -1.0, 1.0, (3,), decode=lambda c: c @ torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"decoding 16 codes of code_shape \(3,\) failed"):
        _run(p)


# -- scalars and weights ---------------------------------------------------------------------
@pytest.mark.parametrize("z1", [np.float32(0.3), np.float64(0.3), torch.tensor(0.3)], ids=str)
def test_numpy_and_tensor_band_ends_are_accepted(z1):
    w = torch.tensor([1.0, -2.0, 0.5])
    p = fs.LogisticHalfspace(w, None, z1, torch.tensor(0.9))
    assert p.z1 == pytest.approx(0.3, abs=1e-7) and p.z2 == pytest.approx(0.9, abs=1e-7)
    s = _run(p)
    t = s.x.double() @ w.double() + p.c
    assert bool(((torch.sigmoid(t) >= p.z1 - 1e-9) & (torch.sigmoid(t) <= p.z2 + 1e-9)).all())


@pytest.mark.parametrize("z1", [np.float32(0.5), torch.tensor(0.5)], ids=str)
def test_numpy_and_tensor_band_ends_are_accepted_by_neurons_and_functions(z1):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    q = fs.NeuronInverseSet(model, layer="1", unit=0, z1=z1, z2=torch.tensor(2.0),
                            input_shape=(1, 4, 4), input_range=(0.0, 1.0))
    assert q.bands.lo == (0.5,) and q.bands.hi == (2.0,)
    p = fs.from_functions(lambda x: x.sum(1), z1, np.float64(0.7), 2, **BOX)
    assert p.bands.lo == (0.5,) and p.bands.hi == (0.7,)
    with pytest.raises(ValueError, match="z1 must be a number"):
        fs.NeuronInverseSet(model, layer="1", unit=0, z1=torch.tensor(1 + 1j), z2=2.0,
                            input_shape=(1, 4, 4), input_range=(0.0, 1.0))


@pytest.mark.parametrize("w", [torch.tensor([1.0 + 1j, 2.0]), np.array([1.0 + 0.5j, 2.0]), [1.0, 2j]],
                         ids=["tensor", "numpy", "list"])
def test_complex_weights_are_refused(w):
    # before: the real part was kept silently (torch.as_tensor of a complex tensor to float64)
    with pytest.raises(ValueError, match="w must be real"):
        fs.LogisticHalfspace(w, 0.0, 0.3, 0.9)


# -- memory --------------------------------------------------------------------------------
def test_memory_estimate_is_the_buffers_bytes():
    p = fs.LogisticHalfspace(torch.ones(784), None, 0.3, 0.9)
    cfg = SamplerConfig(n=1000, k=10)
    assert memory_estimate(p, cfg) == 2 * 1000 * (784 + 784 + 1) * 4
    assert memory_estimate(p, SamplerConfig(n=1000, k=10, dtype="float64"), checkpoint=True) \
        == 3 * 1000 * (784 + 784 + 1) * 8


def test_a_request_beyond_memory_is_refused_with_the_estimate_and_the_way_out():
    # before: "DefaultCPUAllocator: can't allocate 313600000000 bytes" after the seed phase
    p = fs.LogisticHalfspace(torch.ones(784), None, 0.3, 0.9)
    t0 = time.perf_counter()
    with pytest.raises(MemoryError, match=r"n=1000000000 samples .* need about .* GiB .* fewer samples "
                                          r"\(n <= \d+\) or split the run .* shard=i, shards=\d+"):
        fs.sample(p, n=10**9, k=10)
    assert time.perf_counter() - t0 < 5.0  # refused before any work


# -- the app's settings ----------------------------------------------------------------------
def _compose(overrides):
    from hydra import compose, initialize_config_dir
    from feassample.cli import app
    with initialize_config_dir(config_dir=str(app.config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _cli(args, cwd):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "feassample", *args, f"hydra.run.dir={cwd}/out"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_threads_zero_is_refused(tmp_path):
    res = _cli(["threads=0", "sampler.n=20", "sampler.k=2"], tmp_path)
    assert res.returncode != 0 and "threads must be an integer >= 1" in res.stderr
    assert not (tmp_path / "out" / "samples").exists()


@pytest.mark.parametrize("args", [
    ["problem=python", "problem.factory=os:system", "+problem.kwargs.command=touch {marker}"],
    ["problem=neuron", "model=file", "model.cls=os:system", "model.state_dict=nothing.pt",
     "+model.kwargs.command=touch {marker}"],
], ids=["problem.factory", "model.cls"])
def test_a_config_value_naming_a_shell_function_runs_nothing(tmp_path, args):
    marker = tmp_path / "ran"
    res = _cli([a.format(marker=marker) for a in args], tmp_path)
    assert not marker.exists(), "os.system ran from a config value"
    assert res.returncode != 0 and "names the standard library's 'os'" in res.stderr, res.stderr[-2000:]


def test_module_specs_take_only_classes_of_the_expected_kind():
    assert load_object("torch.nn:Linear", kind=nn.Module, what="model.cls") is nn.Linear
    assert load_object("feassample.problems.logistic:LogisticHalfspace", kind=fs.FeasibleSet) \
        is fs.LogisticHalfspace
    with pytest.raises(TypeError, match=r"model.cls='torch:load' names function 'load', not a subclass"):
        load_object("torch:load", kind=nn.Module, what="model.cls")
    with pytest.raises(TypeError, match="not a subclass of feassample's FeasibleSet"):
        load_object("torch.nn:Linear", kind=fs.FeasibleSet, what="problem.factory")
    with pytest.raises(TypeError, match="names the standard library's 'subprocess' .not imported.: not a subclass"):
        load_object("subprocess:run", kind=nn.Module, what="model.cls")


def test_a_factory_from_a_file_you_name_still_runs(tmp_path):
    from feassample.cli import app
    cfg = _compose(["problem=python", f"problem.factory={ROOT}/examples/custom_problem.py:annulus"])
    assert isinstance(app.build_problem(cfg, tmp_path), fs.FeasibleSet)


@pytest.mark.parametrize("override", ["problem._target_=os.system", "model._target_=os.system"])
def test_a_foreign_target_is_refused_before_hydra_calls_it(override):
    from feassample.cli import app
    extra = ["problem=neuron", "model=digits"] if override.startswith("model") else []
    cfg = _compose([*extra, override])
    with pytest.raises(ValueError, match=r"_target_='os.system' is not one of feassample's builders"):
        app.check_code_specs(cfg)


# -- zoo manifests ---------------------------------------------------------------------------
def test_a_manifest_entry_outside_the_weights_folder_is_refused(tmp_path):
    folder, outside = tmp_path / "weights", tmp_path / "outside"
    folder.mkdir(), outside.mkdir()
    entry = dict(digits.read_manifest(digits.WEIGHTS_DIR)["models"]["digits_cnn"])
    shutil.copy(digits.WEIGHTS_DIR / entry["file"], outside / "x.pt")
    entry["file"] = "../outside/x.pt"
    assert entry["sha256"] == hashlib.sha256((outside / "x.pt").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "models": {"digits_cnn": entry}}))
    # before: the checksum matched, so the file outside the folder was loaded
    with pytest.raises(ValueError, match=r"'digits_cnn' names the file '../outside/x.pt', which is not inside"):
        load_classifier("digits_cnn", weights_dir=folder)


def test_the_default_smc_takes_a_constraint_without_gradient_without_its_pairs_move():
    p = fs.from_functions(lambda x: x.sum(1).detach(), 0.5, 1.5, (2,), **BOX)
    s = _run(p)
    sums = s.x.double().sum(1)
    assert s.stats["method"] == "smc" and s.stats["pairs"] is False
    assert len(s) == 6 and bool(((sums >= 0.5) & (sums <= 1.5)).all())
