"""Neuron inverse sets on real modules, checked by independent forward passes (no hooks)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import feassample as fs
from feassample.core.problem import SharedForward


class TupleNet(nn.Module):
    """A small CNN whose forward returns a tuple with a dict inside: only hooked layers matter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10), nn.Tanh(), nn.Linear(10, 3))

    def forward(self, x):
        h = self.act(self.conv1(x))
        return self.fc(h), {"hidden": h}


def manual(net: TupleNet, x: torch.Tensor) -> dict:
    """The layers' outputs computed by hand from the parameters, without hooks or forward()."""
    conv = torch.nn.functional.conv2d(x, net.conv1.weight, net.conv1.bias, padding=1)
    h = torch.tanh(torch.relu(conv).flatten(1) @ net.fc[1].weight.T + net.fc[1].bias)
    return {"conv1": conv, "fc.3": h @ net.fc[3].weight.T + net.fc[3].bias}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def net() -> TupleNet:
    torch.manual_seed(0)
    return TupleNet()


def test_a_model_returning_a_tuple_is_sampled_inside_the_band(net):
    q = fs.NeuronInverseSet(net, "fc.3", 1, 0.0, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0), encoder="fc.1")
    s = fs.sample(q, n=60, k=10, seed=0)
    assert s.status == "success" and len(s) == 60
    f = manual(net, s.x)["fc.3"][:, 1]
    assert bool(((f >= 0.0) & (f <= 0.1)).all())
    assert bool(((s.x >= 0) & (s.x <= 1)).all())


@pytest.mark.parametrize("unit,read,band", [
    ((2,), lambda out: out[:, 2].mean(dim=(1, 2)), (0.2, 0.3)),
    ((1, 3, 4), lambda out: out[:, 1, 3, 4], (0.5, 0.8)),
])
def test_conv_units_by_channel_mean_and_by_position(net, unit, read, band):
    q = fs.NeuronInverseSet(net, "conv1", unit, *band, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    s = fs.sample(q, n=40, k=8, seed=0)
    assert s.status == "success"
    f = read(manual(net, s.x)["conv1"])
    assert bool(((f >= band[0]) & (f <= band[1])).all())


def test_an_int_unit_on_a_conv_layer_names_a_channel(net):
    q = fs.NeuronInverseSet(net, "conv1", 2, 0.2, 0.3, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    s = fs.sample(q, n=30, k=6, seed=0)
    f = manual(net, s.x)["conv1"][:, 2].mean(dim=(1, 2))
    assert s.status == "success" and bool(((f >= 0.2) & (f <= 0.3)).all())
    with pytest.raises(ValueError, match="an int names a channel, valid channels are 0..3"):
        fs.NeuronInverseSet(net, "conv1", 4, 0.0, 1.0, input_shape=(1, 8, 8), input_range=(0.0, 1.0))


def test_an_intersection_on_one_model_satisfies_every_band_with_one_forward_per_step(net):
    calls = {"n": 0}
    # count the sampling passes (with gradients); certification passes run without them
    net.conv1.register_forward_hook(
        lambda *a: calls.__setitem__("n", calls["n"] + int(torch.is_grad_enabled())))
    qa = fs.NeuronInverseSet(net, "fc.3", 1, 0.0, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    qb = fs.NeuronInverseSet(net, "conv1", (2,), 0.2, 0.3, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    both = fs.Intersection([qa, qb])
    calls["n"] = 0
    s = fs.sample(both, n=40, k=8, seed=0, method="walk")  # the walk: one evaluation per step
    assert s.status == "success"
    out = manual(net, s.x)
    fa, fb = out["fc.3"][:, 1], out["conv1"][:, 2].mean(dim=(1, 2))
    assert bool(((fa >= 0.0) & (fa <= 0.1) & (fb >= 0.2) & (fb <= 0.3)).all())
    steps = s.stats["seed_steps"] + s.stats["rounds"]
    # one model call per step for both members (and the seed phase's final refresh)
    assert calls["n"] <= steps + 1


class SumDiffNet(nn.Module):
    """x (B, 2) -> (x0 + x1, x0 - x1) and a hidden tanh(x); counts its own calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += int(torch.is_grad_enabled())  # sampling passes; certification runs without
        return torch.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], dim=1), torch.tanh(x)


class OutputBand(SharedForward, fs.FeasibleSet):
    """A third-party problem (not a NeuronInverseSet): output ``unit`` of a model in a band,
    sharing the model's forward pass through the public protocol only."""

    def __init__(self, model, unit, lo, hi):
        self.model, self.unit = model, unit
        self.bands = fs.Bands((lo,), (hi,), names=(f"out[{unit}]",))
        self.code_shape = self.input_shape = (2,)
        self.box = (-1.0, 1.0)

    def forward_key(self):
        return ("SumDiffNet", id(self.model))

    def forward_needs(self):
        return ("out", "hidden")

    def run_forward(self, x, needs):
        out, hidden = self.model(x)
        seen = {"out": out, "hidden": hidden}
        return {name: seen[name] for name in needs}

    def measure_from(self, seen, x):
        return fs.Measurement(seen["out"][:, self.unit:self.unit + 1], seen["hidden"])


def test_a_third_party_problem_shares_one_forward_pass_in_an_intersection():
    model = SumDiffNet()
    both = fs.Intersection([OutputBand(model, 0, 0.0, 0.2), OutputBand(model, 1, -0.1, 0.1)])
    x = torch.rand(5, 2)
    model.calls = 0
    m = both.measure(x)
    assert model.calls == 1
    assert torch.equal(m.values, torch.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], dim=1))
    other = SumDiffNet()   # another model: another key, its own pass
    apart = fs.Intersection([OutputBand(model, 0, 0.0, 0.2), OutputBand(other, 1, -0.1, 0.1)])
    model.calls = other.calls = 0
    apart.measure(x)
    assert (model.calls, other.calls) == (1, 1)

    model.calls = 0
    s = fs.sample(both, n=40, k=8, seed=0, method="walk")
    assert s.status == "success"
    sums, diffs = s.x[:, 0] + s.x[:, 1], s.x[:, 0] - s.x[:, 1]   # by hand, not by the model
    assert bool(((sums >= 0.0) & (sums <= 0.2) & (diffs.abs() <= 0.1)).all())
    steps = s.stats["seed_steps"] + s.stats["rounds"]
    # the same budget as the neuron intersection above: one call per step for both members
    assert model.calls <= steps + 1


def test_an_intersection_across_two_models(net):
    torch.manual_seed(1)
    other = TupleNet()
    qa = fs.NeuronInverseSet(net, "fc.3", 0, -0.1, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    qb = fs.NeuronInverseSet(other, "fc.3", 2, -0.1, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    s = fs.sample(fs.Intersection([qa, qb]), n=30, k=6, seed=0)
    assert s.status == "success"
    fa, fb = manual(net, s.x)["fc.3"][:, 0], manual(other, s.x)["fc.3"][:, 2]
    assert bool(((fa.abs() <= 0.1) & (fb.abs() <= 0.1)).all())


@pytest.mark.parametrize("kwargs,match", [
    (dict(layer="fc.9"), r"unknown layer 'fc.9'. Did you mean 'fc.3'.*Valid layers: conv1"),
    (dict(layer="conv"), "Did you mean 'conv1'"),
    (dict(unit=5), r"out of range .* 3 units"),
    (dict(unit=(1,)), "fully connected"),
    (dict(layer="conv1", unit=(1, 9, 0)), r"output shape \(4, 8, 8\)"),
    (dict(input_shape=(1, 9, 9)), "cannot run on inputs of shape"),
    (dict(z1=1.0, z2=0.0), "z1 must be <= z2"),
    (dict(input_range=(1.0, 0.0)), "input_range"),
])
def test_bad_layers_units_and_shapes_give_helpful_errors(net, kwargs, match):
    args = dict(model=net, layer="fc.3", unit=1, z1=0.0, z2=0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fs.NeuronInverseSet(**args)


def test_a_generator_whose_output_does_not_fit_the_model_is_refused(net):
    gen = nn.Sequential(nn.Linear(3, 49), nn.Unflatten(1, (1, 7, 7)), nn.Sigmoid())
    with pytest.raises(ValueError, match="generator maps codes"):
        fs.NeuronInverseSet(net, "fc.3", 1, 0.0, 0.1, input_shape=(1, 8, 8), generator=gen,
                            code_shape=(3,))


def test_sampling_through_a_generator_with_codes_as_embedding(net):
    torch.manual_seed(2)
    gen = nn.Sequential(nn.Linear(3, 64), nn.Unflatten(1, (1, 8, 8)), nn.Sigmoid())
    q = fs.NeuronInverseSet(net, "fc.3", 1, -0.05, 0.05, input_shape=(1, 8, 8), generator=gen,
                            code_shape=(3,))
    s = fs.sample(q, n=30, k=6, seed=0)
    assert s.status == "success" and s.codes.shape == (30, 3) and s.x.shape == (30, 1, 8, 8)
    with torch.no_grad():
        f = manual(net, gen(s.codes))["fc.3"][:, 1]
    assert bool((f.abs() <= 0.05).all())


def test_parameters_are_unchanged_and_never_receive_gradients(net):
    before = copy.deepcopy(net.state_dict())
    q = fs.NeuronInverseSet(net, "fc.3", 1, 0.0, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0), encoder="fc.1")
    fs.sample(q, n=30, k=6, seed=0)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(p.grad is None for p in net.parameters())


def test_a_model_loaded_from_a_state_dict_file_works(net, tmp_path):
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    fresh = TupleNet()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    q = fs.NeuronInverseSet(fresh, "fc.3", 1, 0.0, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    s = fs.sample(q, n=20, k=5, seed=0)
    f = manual(net, s.x)["fc.3"][:, 1]   # the original model agrees
    assert s.status == "success" and bool(((f >= 0) & (f <= 0.1)).all())


def test_float64_models_sample_in_float64(net):
    net = net.double()
    q = fs.NeuronInverseSet(net, "fc.3", 1, 0.0, 0.1, input_shape=(1, 8, 8), input_range=(0.0, 1.0))
    s = fs.sample(q, n=20, k=5, seed=0, dtype="float64")
    assert s.x.dtype == torch.float64 and s.status == "success"
    f = manual(net, s.x)["fc.3"][:, 1]
    assert bool(((f >= 0) & (f <= 0.1)).all())


def test_a_layer_the_forward_pass_never_uses_is_reported():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(RuntimeError, match="produced no output"):
        fs.NeuronInverseSet(Unused(), "spare", 0, 0.0, 1.0, input_shape=(4,), input_range=(0.0, 1.0))
