"""The digits model zoo: data, committed weights, checksums, generator, own-weights loading.

Everything here is checked independently of the training code: accuracies come from a fresh
forward pass, checksums from ``hashlib`` directly, the split from the raw scikit-learn arrays.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from feassample.models import (WEIGHTS_DIR, DigitsClassifier, DigitsGenerator, DigitsVAE,
                               WeightsChecksumError, digits_data, load_classifier,
                               load_generator, load_state_dict_file, load_vae)
from feassample.models.digits import _split_indices

LAYERS = ["features.conv1", "features.relu1", "features.pool1", "features.conv2",
          "features.relu2", "features.pool2", "classifier.fc1", "classifier.relu3",
          "classifier.fc2"]
SPLIT_FINGERPRINT = "816c645765dbf2ef"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test may write to (or read from) the user's real cache."""
    monkeypatch.setenv("FEASSAMPLE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def test_split():
    return digits_data("test")


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def _manifest() -> dict:
    return json.loads((WEIGHTS_DIR / "manifest.json").read_text())


def _copy_weights(dst: Path, names=("digits_cnn", "digits_vae")) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(WEIGHTS_DIR / "manifest.json", dst / "manifest.json")
    for name in names:
        shutil.copy(WEIGHTS_DIR / f"{name}.pt", dst / f"{name}.pt")
    return dst


# -- data ---------------------------------------------------------------------------------------
def test_data_shapes_dtypes_and_ranges():
    sizes = {"train": 1438, "test": 359, "all": 1797}
    for split, n in sizes.items():
        x, y = digits_data(split)
        assert x.shape == (n, 1, 16, 16) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert float(x.max()) > 0.99  # really scaled to [0, 1], not left in 0..16 or squashed
        assert set(y.tolist()) == set(range(10))
    x8, _ = digits_data("all", size=8)
    from sklearn.datasets import load_digits
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)
    assert torch.equal(x8[:, 0], raw / 16)
    # bilinear upsampling, align_corners=False: interior pixels average their 8x8 neighbours
    x16, _ = digits_data("all", size=16)
    ref = F.interpolate(raw.unsqueeze(1) / 16, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(x16, ref, atol=1e-6)
    with pytest.raises(ValueError, match="split"):
        digits_data("validation")


def test_split_is_deterministic_disjoint_complete_and_stratified():
    xa, ya = digits_data("all")
    train_idx, test_idx = _split_indices(ya)
    again = _split_indices(ya)
    assert torch.equal(train_idx, again[0]) and torch.equal(test_idx, again[1])
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(len(ya)))
    x_tr, y_tr = digits_data("train")
    x_te, y_te = digits_data("test")
    assert torch.equal(x_tr, xa[train_idx]) and torch.equal(y_tr, ya[train_idx])
    assert torch.equal(x_te, xa[test_idx]) and torch.equal(y_te, ya[test_idx])
    x_te2, y_te2 = digits_data("test")
    assert torch.equal(x_te, x_te2) and torch.equal(y_te, y_te2)
    counts, test_counts = torch.bincount(ya, minlength=10), torch.bincount(y_te, minlength=10)
    for c in range(10):
        assert int(test_counts[c]) == round(0.2 * int(counts[c]))
    # the split is pinned: the same 359 test indices on every machine and torch version (the
    # split the committed weights were trained and measured on)
    assert hashlib.sha256(str(test_idx.tolist()).encode()).hexdigest()[:16] == SPLIT_FINGERPRINT


# -- classifier ---------------------------------------------------------------------------------
def test_committed_classifier_accuracy(classifier, test_split):
    x, y = test_split
    assert not classifier.training
    with torch.no_grad():
        logits = classifier(x)
    assert logits.shape == (len(x), 10)
    acc = float((logits.argmax(1) == y).float().mean())
    assert acc >= 0.95, f"test accuracy {acc:.4f}"
    # the manifest's number is the one we measure now
    assert acc == pytest.approx(_manifest()["models"]["digits_cnn"]["test_accuracy"], abs=1e-4)


def test_named_layers_exist_and_work(classifier):
    modules = dict(classifier.named_modules())
    for name in LAYERS:
        assert name in modules, name
    assert isinstance(modules["features.conv1"], torch.nn.Conv2d)
    assert isinstance(modules["classifier.fc2"], torch.nn.Linear)
    assert modules["classifier.fc2"].out_features == 10
    # a hook on a named layer sees its activation (the shapes the docs promise)
    seen = {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.shape))
               for n in ("features.pool2", "classifier.relu3")]
    classifier(torch.zeros(3, 1, 16, 16))
    for h in handles:
        h.remove()
    assert seen == {"features.pool2": (3, 32, 4, 4), "classifier.relu3": (3, 64)}


def test_loaders_leave_parameters_trainable_and_return_eval_mode():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for model in (load_classifier(), load_vae(), load_generator()):
        assert not model.training
        assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.rand(3), expected)  # loading does not advance the caller's RNG


# -- weights and checksums ----------------------------------------------------------------------
def test_manifest_checksums_match_committed_files():
    manifest = _manifest()
    assert set(manifest["models"]) >= {"digits_cnn", "digits_vae"}
    for name, entry in manifest["models"].items():
        path = WEIGHTS_DIR / entry["file"]
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"] < 1_000_000, name
        assert entry["command"].startswith(("python -m feassample.cli.train_zoo",
                                             "python -m feassample.models.biased"))


def test_corrupted_copy_is_refused(tmp_path):
    good = _copy_weights(tmp_path / "good")
    assert isinstance(load_classifier(weights_dir=good), DigitsClassifier)
    bad = _copy_weights(tmp_path / "bad")
    for name, loader in (("digits_cnn", load_classifier), ("digits_vae", load_vae)):
        path = bad / f"{name}.pt"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of the tensors
        path.write_bytes(bytes(data))
        with pytest.raises(WeightsChecksumError, match="checksum mismatch"):
            loader(weights_dir=bad)
    with pytest.raises(WeightsChecksumError, match="checksum mismatch"):
        load_generator(weights_dir=bad)
    assert not (tmp_path / "cache").exists()  # refused, not silently retrained


def test_unlisted_weights_are_refused(tmp_path):
    d = _copy_weights(tmp_path / "w")
    (d / "manifest.json").write_text(json.dumps({"format": 1, "models": {}}))
    with pytest.raises(WeightsChecksumError, match="no entry"):
        load_classifier(weights_dir=d)


def test_missing_file_falls_back_to_the_cache(tmp_path):
    # a cache that already holds the weights: loading must use it instead of retraining
    _copy_weights(tmp_path / "cache" / "weights")
    empty = tmp_path / "empty"
    empty.mkdir()
    model = load_classifier(weights_dir=empty)
    ref = load_classifier()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 ref.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_classifier("not_a_model", weights_dir=empty)


# -- VAE and generator --------------------------------------------------------------------------
def test_vae_reconstructs_test_digits(test_split):
    vae = load_vae()
    assert isinstance(vae, DigitsVAE)
    x, _ = test_split
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        recon = vae.decode(mu)
    assert mu.shape == logvar.shape == (len(x), vae.code_dim) == (len(x), 8)
    assert recon.shape == x.shape
    mse = float(F.mse_loss(recon, x))
    baseline = float(F.mse_loss(x.mean(0, keepdim=True).expand_as(x), x))
    assert mse < 0.01 and mse < 0.2 * baseline, (mse, baseline)


def test_generator_maps_normal_codes_to_images():
    gen = load_generator()
    assert isinstance(gen, DigitsGenerator)
    assert gen.code_shape == (8,) and gen.output_shape == (1, 16, 16)
    z = torch.randn(32, *gen.code_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = gen(z)
        x64 = gen(z.double())
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert x64.dtype == torch.float64 and torch.allclose(x64.float(), x, atol=1e-6)
    assert float(x.std(0).mean()) > 0.05  # different codes give different images
    # the generator is the VAE's decoder, and it is differentiable in the code
    z.requires_grad_(True)
    gen(z).sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_decoded_samples_look_like_digits(classifier):
    gen = load_generator()
    z = torch.randn(500, *gen.code_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        p = F.softmax(classifier(gen(z)), dim=1)
    conf = float(p.max(1).values.mean())
    assert conf > 0.7, f"mean max-softmax {conf:.3f}"
    # not one blob repeated: most classes are produced
    assert len(set(p.argmax(1).tolist())) >= 8
    # noise is not classified as confidently: the test can tell digits from garbage
    noise = torch.rand(500, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        noise_conf = float(F.softmax(classifier(noise), 1).max(1).values.mean())
    assert noise_conf < conf


# -- your own weights ---------------------------------------------------------------------------
def test_load_state_dict_file_round_trips(tmp_path):
    torch.manual_seed(123)
    src = DigitsClassifier()
    path = tmp_path / "mine.pt"
    torch.save(src.state_dict(), path)
    dst = load_state_dict_file(DigitsClassifier(), path)
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(4, 1, 16, 16)
    assert torch.equal(src(x), dst(x))
    # checkpoint dicts, and an optional checksum
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": src.state_dict()}, ckpt)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    again = load_state_dict_file(DigitsClassifier(), ckpt, sha256=digest)
    assert torch.equal(again(x), src(x))
    with pytest.raises(WeightsChecksumError):
        load_state_dict_file(DigitsClassifier(), ckpt, sha256="0" * 64)
    # a state_dict of another architecture is refused by load_state_dict (strict)
    with pytest.raises(RuntimeError):
        load_state_dict_file(DigitsVAE(), path)
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(DigitsClassifier(), tmp_path / "nope.pt")


def test_load_state_dict_file_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_state_dict_file(DigitsClassifier(), path)


# -- reproducibility (slow: retrains both models, about a minute) --------------------------------
@pytest.mark.slow
def test_retraining_reproduces_the_committed_weights(tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("retrains both models (about a minute): run with -m slow")
    out = tmp_path / "w"
    subprocess.run([sys.executable, "-m", "feassample.cli.train_zoo", "--out", str(out),
                    "--quiet"], check=True, timeout=900)
    new = json.loads((out / "manifest.json").read_text())["models"]
    old = _manifest()["models"]
    for name in ("digits_cnn", "digits_vae"):
        assert hashlib.sha256((out / f"{name}.pt").read_bytes()).hexdigest() == new[name]["sha256"]
    assert new["digits_cnn"]["test_accuracy"] >= 0.97
    # the models train_zoo builds (the manifest also lists the biased classifier, built elsewhere)
    same_build = all(new[n]["torch"] == old[n]["torch"] and
                     new[n]["cpu_capability"] == old[n]["cpu_capability"] for n in ("digits_cnn", "digits_vae"))
    if not same_build:
        pytest.skip("bitwise reproducibility is only promised for the same torch build and CPU "
                    f"capability ({old['digits_cnn']['torch']}, "
                    f"{old['digits_cnn']['cpu_capability']}); accuracy was checked")
    for name in ("digits_cnn", "digits_vae"):
        assert new[name]["sha256"] == old[name]["sha256"], name
