"""Models by name and format, unit strings, preprocessing and image parametrizations.

Every weight file here is saved from a random initialization (nothing is downloaded); each
sample is re-checked by an independent forward pass of the original module.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import feassample as fs
from feassample.models import load_model, load_state_dict
from feassample.models.formats import UnsafeModelFile, file_format
from feassample.models.params import FourierImage, PixelImage
from feassample.problems import parse_unit

from vision_support import import_vision


class SmallCNN(nn.Module):
    """conv (3 -> 4 channels) -> ReLU -> spatial mean -> fc (4 -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


def conv_out(net: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.conv2d(x, net.conv.weight, net.conv.bias, padding=1)


def one_line(err: BaseException) -> bool:
    """The error prints as one line, with no chained traceback under it."""
    return "\n" not in str(err) and (err.__cause__ is None and (err.__suppress_context__ or err.__context__ is None))


# -- unit strings ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec,expected", [
    ("fc:243", ("fc", 243)), ("layer4:17", ("layer4", 17)),
    ("layer4:17:3:3", ("layer4", (17, 3, 3))), ("features.8:0", ("features.8", 0)),
])
def test_unit_strings_parse_as_lucent_writes_them(spec, expected):
    assert parse_unit(spec) == expected


@pytest.mark.parametrize("unit,read", [
    ("conv:2", lambda net, x: conv_out(net, x)[:, 2].mean(dim=(1, 2))),
    ("conv:1:3:4", lambda net, x: conv_out(net, x)[:, 1, 3, 4]),
    ("fc:1", lambda net, x: net(x)[:, 1]),
    ("output:0", lambda net, x: net(x)[:, 0]),
])
def test_a_unit_string_reads_the_unit_it_names(cnn, unit, read):
    q = fs.NeuronInverseSet(cnn, unit=unit, z1=-math.inf, z2=math.inf, input_shape=(3, 6, 6),
                            input_range=(0.0, 1.0))
    x = torch.rand(5, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(q.measure(x).values[:, 0], read(cnn, x), atol=1e-6)


def test_unit_string_as_layer_argument_and_old_forms_agree(cnn):
    x = torch.rand(4, 3, 6, 6)
    forms = [dict(layer="conv:2"), dict(unit="conv:2"), dict(layer="conv", unit="conv:2"),
             dict(layer="conv", unit=2), dict(layer="conv", unit=(2,))]
    values = []
    for form in forms:
        q = fs.NeuronInverseSet(cnn, **form, z1=0.0, z2=1.0, input_shape=(3, 6, 6), input_range=(0, 1))
        with torch.no_grad():
            values.append(q.measure(x).values)
    assert all(torch.equal(v, values[0]) for v in values)


@pytest.mark.parametrize("kwargs,match", [
    (dict(unit="conv-2"), r"not 'layer:unit'"),
    (dict(unit="conv:a"), r"not 'layer:unit'"),
    (dict(unit="cnv:2"), r"unknown layer 'cnv'. Did you mean 'conv'"),
    (dict(unit="conv:7"), r"out of range .* valid channels are 0..3"),
    (dict(unit="conv:1:9:0"), r"output shape \(4, 6, 6\)"),
    (dict(unit="fc:3"), r"out of range .* 3 units"),
    (dict(layer="fc", unit="conv:1"), r"names layer 'conv' but layer='fc'"),
    (dict(layer="fc"), r"unit is required"),
    (dict(), r"layer is required"),
])
def test_bad_unit_strings_fail_in_one_line_naming_the_problem(cnn, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        fs.NeuronInverseSet(cnn, **kwargs, z1=0.0, z2=1.0, input_shape=(3, 6, 6), input_range=(0, 1))
    assert "\n" not in str(info.value)


def test_an_intersection_of_unit_strings_samples_both_bands(cnn):
    r = fs.neuron_intersection(cnn, {"conv:2": (0.05, 0.15), "fc:0": (-math.inf, math.inf)},
                               input_shape=(3, 6, 6), input_range=(0.0, 1.0))
    assert isinstance(r, fs.Intersection) and len(r.bands.lo) == 2
    same = fs.neuron_intersection(cnn, [("conv:2", 0.05, 0.15), ("fc:0", -math.inf, math.inf)],
                                  input_shape=(3, 6, 6), input_range=(0.0, 1.0))
    assert [m.layer for m in same.members] == ["conv", "fc"]
    s = fs.sample(r, n=12, k=4, seed=0)
    assert s.status == "success"
    with torch.no_grad():
        v = conv_out(cnn, s.x)[:, 2].mean(dim=(1, 2))
    assert bool(((v >= 0.05) & (v <= 0.15)).all())
    with pytest.raises(ValueError, match=r"units\[0\] must be"):
        fs.neuron_intersection(cnn, ["conv:2"], input_shape=(3, 6, 6), input_range=(0, 1))


# -- errors before work ------------------------------------------------------------------------
def test_input_range_is_required_in_input_space_without_metadata(cnn):
    with pytest.raises(ValueError, match=r"^input_range=\(lo, hi\) is required") as info:
        fs.NeuronInverseSet(cnn, unit="conv:0", z1=0.0, z2=1.0, input_shape=(3, 6, 6))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"^input_shape is required"):
        fs.NeuronInverseSet(cnn, unit="conv:0", z1=0.0, z2=1.0, input_range=(0, 1))


def test_the_digits_zoo_classifier_carries_its_input_range():
    from feassample.models import DigitsClassifier
    q = fs.NeuronInverseSet(DigitsClassifier(), unit="classifier.fc2:3", z1=0.0, z2=1.0)
    assert q.input_range == (0.0, 1.0) and q.input_shape == (1, 16, 16) and q.box == (0.0, 1.0)


def test_a_float64_model_samples_with_the_default_float32_codes(cnn):
    net = cnn.double()
    q = fs.NeuronInverseSet(net, unit="conv:2", z1=0.05, z2=0.15, input_shape=(3, 6, 6),
                            input_range=(0.0, 1.0))
    s = fs.sample(q, n=10, k=5, seed=0)
    assert s.status == "success" and s.x.dtype == torch.float32
    with torch.no_grad():
        v = conv_out(net, s.x.double())[:, 2].mean(dim=(1, 2))
    assert bool(((v >= 0.05) & (v <= 0.15)).all())


def test_preprocessing_metadata_normalizes_inputs_before_the_model(cnn):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    cnn.preprocessing = fs.Preprocessing(input_range=(0.0, 1.0), mean=mean, std=std,
                                         input_shape=(3, 6, 6), source="test")
    q = fs.NeuronInverseSet(cnn, unit="conv:1", z1=0.1, z2=0.3)
    assert q.input_shape == (3, 6, 6) and q.box == (0.0, 1.0)
    s = fs.sample(q, n=10, k=5, seed=0)
    assert s.status == "success" and float(s.x.min()) >= 0.0 and float(s.x.max()) <= 1.0
    normalized = (s.x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        v = conv_out(cnn, normalized)[:, 1].mean(dim=(1, 2))
    assert bool(((v >= 0.1) & (v <= 0.3)).all())
    with pytest.raises(ValueError, match="has 1 channels but the normalization"):
        fs.NeuronInverseSet(cnn, unit="conv:1", z1=0.1, z2=0.3, input_shape=(1, 6, 6))


# -- formats -----------------------------------------------------------------------------------
def export(net: nn.Module, path: Path, shape=(3, 6, 6)) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(net, (torch.rand(2, *shape),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def test_an_exported_program_keeps_its_layer_names_and_is_sampled(cnn, tmp_path):
    path = export(cnn, tmp_path / "net.pt2")
    assert file_format(path) == "exported"
    model = load_model("exported", path=path, input_range=(0.0, 1.0))
    assert {"conv", "fc"} <= {n for n, _ in model.named_modules()}
    q = fs.NeuronInverseSet(model, unit="conv:2", z1=0.05, z2=0.15, input_shape=(3, 6, 6))
    s = fs.sample(q, n=10, k=5, seed=0)
    assert s.status == "success"
    with torch.no_grad():  # the original module, not the loaded program
        v = conv_out(cnn, s.x)[:, 2].mean(dim=(1, 2))
    assert bool(((v >= 0.05) & (v <= 0.15)).all())


def test_a_torchscript_archive_is_read_at_its_output(cnn, tmp_path):
    path = tmp_path / "net.ts"
    torch.jit.script(cnn).save(str(path))
    assert file_format(path) == "torchscript"
    model = load_model("torchscript", path=path, input_range=(0.0, 1.0))
    with torch.no_grad():
        typical = cnn(torch.rand(200, 3, 6, 6))[:, 1]
    z1, z2 = float(typical.quantile(0.6)), float(typical.quantile(0.9))
    q = fs.NeuronInverseSet(model, unit="output:1", z1=z1, z2=z2, input_shape=(3, 6, 6))
    s = fs.sample(q, n=10, k=5, seed=0)
    assert s.status == "success"
    with torch.no_grad():
        v = cnn(s.x)[:, 1]
    assert bool(((v >= z1) & (v <= z2)).all())
    with pytest.raises(ValueError, match="TorchScript module, which runs no Python hooks") as info:
        fs.NeuronInverseSet(model, unit="conv:1", z1=0.0, z2=1.0, input_shape=(3, 6, 6))
    assert one_line(info.value)


def test_a_pickled_module_is_refused_in_one_line_naming_the_safe_formats(cnn, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(cnn, path)
    attempts = [dict(kind="exported", path=path), dict(kind="torchscript", path=path),
                dict(kind="file", cls=f"{__file__}:SmallCNN", weights=path)]
    for kwargs in attempts:
        with pytest.raises(UnsafeModelFile, match="never unpickles") as info:
            load_model(**kwargs)
        assert one_line(info.value) and "torch.export" in str(info.value) and "TorchScript" in str(info.value)


def test_a_state_dict_file_loads_into_a_class_from_a_file(cnn, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(cnn.state_dict(), path)
    model = load_model("file", cls=f"{__file__}:SmallCNN", weights=path, input_range=(0, 1))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), cnn.state_dict().values()))
    assert model.preprocessing.input_range == (0.0, 1.0)
    with pytest.raises(ValueError, match="is a torch.export program, not a state_dict"):
        load_state_dict(export(cnn, tmp_path / "net.pt2"))
    with pytest.raises(FileNotFoundError, match="weights file"):
        load_state_dict(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown model kind 'onnx'"):
        load_model("onnx", path=path)


# -- torchvision and timm (optional extras) ----------------------------------------------------
def test_a_torchvision_model_by_name_with_local_weights_and_its_metadata(tmp_path):
    tv = import_vision("torchvision")
    torch.manual_seed(0)
    reference = tv.models.resnet18(weights=None).eval()  # random init: nothing is downloaded
    torch.save(reference.state_dict(), tmp_path / "resnet18.pt")
    model = load_model("torchvision", arch="resnet18", weights=tmp_path / "resnet18.pt")
    pre = model.preprocessing
    # The published ImageNet statistics, as torchvision's ImageClassification preset states them.
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx((0.229, 0.224, 0.225))
    assert pre.input_range == (0.0, 1.0) and pre.input_shape == (3, 224, 224)
    assert "ResNet18_Weights.IMAGENET1K_V1" in pre.source
    q = fs.NeuronInverseSet(model, unit="layer4:17", z1=-math.inf, z2=math.inf, input_shape=(3, 32, 32))
    x = torch.rand(2, 3, 32, 32)
    normalized = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        body = nn.Sequential(*list(reference.children())[:-2])  # conv1 ... layer4
        expected = body(normalized)[:, 17].mean(dim=(1, 2))
        assert torch.allclose(q.measure(x).values[:, 0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="Did you mean 'resnet18'"):
        load_model("torchvision", arch="resnet81", weights=tmp_path / "resnet18.pt")
    with pytest.raises(ValueError, match="do not fit this architecture"):
        load_model("torchvision", arch="resnet34", weights=tmp_path / "resnet18.pt")


def test_a_timm_model_by_name_takes_its_pretrained_cfg(tmp_path):
    timm = import_vision("timm")
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False).eval()  # random init
    torch.save(reference.state_dict(), tmp_path / "sd.pt")
    model = load_model("timm", arch="resnet18", weights=tmp_path / "sd.pt")
    cfg = reference.pretrained_cfg
    assert model.preprocessing.mean == tuple(cfg["mean"]) and model.preprocessing.std == tuple(cfg["std"])
    assert model.preprocessing.input_shape == tuple(cfg["input_size"])
    q = fs.NeuronInverseSet(model, unit="fc:243", z1=-math.inf, z2=math.inf, input_shape=(3, 32, 32))
    x = torch.rand(2, 3, 32, 32)
    normalized = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(q.measure(x).values[:, 0], reference(normalized)[:, 243], atol=1e-5)


# -- image parametrizations -------------------------------------------------------------------
def test_fourier_codes_give_unit_variance_pixels_with_a_one_over_f_spectrum():
    g = FourierImage((3, 32, 48))
    assert g.code_shape == (3, 32, 25, 2)
    codes = g.init_codes(400, torch.Generator().manual_seed(0))
    assert abs(float(codes.mean())) < 0.01 and abs(float(codes.std()) - 1) < 0.01
    spatial = g.spatial(codes)
    assert float(spatial.var()) == pytest.approx(1.0, abs=0.03)
    # Power of the spatial field, measured by an FFT of our own output: 1/f amplitude means the
    # power falls by 4 each time the frequency doubles.
    power = torch.fft.fft2(spatial).abs().pow(2).mean(dim=(0, 1))
    f = (torch.fft.fftfreq(32)[:, None] ** 2 + torch.fft.fftfreq(48)[None, :] ** 2).sqrt()
    rings = [power[(f >= a) & (f < 1.4 * a)].mean() for a in (0.05, 0.1, 0.2)]
    assert 3.0 < float(rings[0] / rings[1]) < 5.0 and 3.0 < float(rings[1] / rings[2]) < 5.0
    x = g(codes)
    assert x.shape == (400, 3, 32, 48) and float(x.min()) > 0.0 and float(x.max()) < 1.0


def test_pixel_image_squashes_each_code_into_the_range():
    g = PixelImage((1, 4, 4), output_range=(-1.0, 1.0))
    c = torch.randn(3, 1, 4, 4)
    assert torch.allclose(g(c), -1 + 2 * torch.sigmoid(c))
    with pytest.raises(ValueError, match="output_range"):
        PixelImage((1, 4, 4), output_range=(1.0, 1.0))


def test_a_parametrization_is_a_generator_whose_prior_starts_the_sampler(cnn):
    g = FourierImage((3, 8, 8))
    with torch.no_grad():  # a band the prior reaches: the unit's 60th to 90th percentile on it
        typical = conv_out(cnn, g(g.init_codes(500, torch.Generator().manual_seed(1))))[:, 2].mean(dim=(1, 2))
    z1, z2 = float(typical.quantile(0.6)), float(typical.quantile(0.9))
    q = fs.NeuronInverseSet(cnn, unit="conv:2", z1=z1, z2=z2, generator=g)
    assert q.input_range == (0.0, 1.0) and q.code_shape == g.code_shape  # from the generator
    first = q.init_codes(4, torch.Generator().manual_seed(3), dtype=torch.float32)
    assert torch.equal(first, g.init_codes(4, torch.Generator().manual_seed(3)))
    s = fs.sample(q, n=8, k=4, seed=0)
    assert s.status == "success" and s.codes.shape == (8, 3, 8, 5, 2)
    with torch.no_grad():
        v = conv_out(cnn, g(s.codes))[:, 2].mean(dim=(1, 2))
    assert bool(((v >= z1) & (v <= z2)).all())


# -- the example on a real architecture ----------------------------------------------------------
def test_the_resnet_example_samples_a_channel_through_the_fourier_parametrization(tmp_path):
    import_vision("torchvision")
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "torchvision_resnet", Path(__file__).resolve().parents[2] / "examples" / "torchvision_resnet.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    problem, samples, picture = example.main(size=16, n=6, k=3, out=tmp_path, prior_draws=64,
                                               quantiles=(0.5, 0.9))  # a band seeded fast
    assert samples.status == "success" and len(samples) == 6 and picture.is_file()
    assert samples.x.shape == (6, 3, 16, 16) and isinstance(problem.generator, FourierImage)
    # Independent check: torchvision's own resnet18 with the same (seeded, random) weights,
    # normalized by hand with the ImageNet statistics, run up to layer4.
    tv = import_vision("torchvision")
    torch.manual_seed(0)
    reference = tv.models.resnet18(weights=None).eval()
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        body = nn.Sequential(*list(reference.children())[:-2])
        act = body((samples.x - mean) / std)[:, 17].mean(dim=(1, 2))
    assert bool(((act >= problem.z1 - 1e-5) & (act <= problem.z2 + 1e-5)).all())
    assert problem.z1 < problem.z2


def test_transforms_make_the_band_hold_under_every_view(cnn):
    from feassample.models.params import Rescale, Shift, jitter_and_scale
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(Shift(1, -2)(x)[:, :, 1, 0], x[:, :, 0, 2])
    assert torch.allclose(Rescale(1.0)(x), x, atol=1e-6)
    views = jitter_and_scale(pixels=1, scales=(1.2,))
    assert len(views) == 6
    q = fs.NeuronInverseSet(cnn, unit="conv:1:3:4", z1=0.05, z2=0.3, input_shape=(3, 8, 8),
                            input_range=(0.0, 1.0), transforms=views)
    assert q.bands.m == 6
    values, _ = q.check(x)
    for t, view in enumerate(views):  # the certificate's columns are the views, in order
        assert torch.allclose(values[:, t], conv_out(cnn, view(x))[:, 1, 3, 4], atol=1e-6)
    # The default method (cover) currently fails on m >= 2 two-sided bands of a local unit with a
    # singular Gram matrix in its block directions (a core issue, reported); the walk samples it.
    s = fs.sample(q, n=8, k=4, seed=0, method="walk")
    assert s.status == "success" and s.values.shape == (8, 6)
    with torch.no_grad():  # every view of every sample, by hand
        for view in views:
            v = conv_out(cnn, view(s.x))[:, 1, 3, 4]
            assert bool(((v >= 0.05) & (v <= 0.3)).all())
    with pytest.raises(ValueError, match="transforms must keep the input shape"):
        fs.NeuronInverseSet(cnn, unit="conv:1", z1=0.0, z2=1.0, input_shape=(3, 8, 8),
                            input_range=(0.0, 1.0), transforms=[lambda t: t[..., :4]])
