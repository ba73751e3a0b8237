"""A small model zoo on the UCI handwritten digits that ship inside scikit-learn (no downloads).

* ``digits_data``: the 1,797 8x8 digits, split 80/20 (stratified, fixed seed), upsampled to
  16x16 with bilinear interpolation and scaled to [0, 1].
* ``DigitsClassifier``: a small CNN, (B, 1, 16, 16) in [0, 1] -> (B, 10) logits, with the layer
  names ``features.conv1 ... classifier.fc2`` (see ``docs/zoo.md``).
* ``DigitsVAE``: a VAE whose ``decoder`` is the generator ``G`` of the inverse-set paper;
  ``DigitsGenerator`` wraps the decoder alone (``code_shape``, ``output_shape``).
* ``load_classifier`` / ``load_vae`` / ``load_generator`` live in ``zoo.py`` (they may train
  on first use, and training needs these architectures: keeping them apart breaks the cycle).
* ``load_state_dict_file``: your own weights from a state_dict file (``weights_only=True``).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..problems.preprocessing import Preprocessing


PathLike = Union[str, os.PathLike]

#: where the committed weights and their manifest live
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
#: the seed of the train/test split (and of training, see ``train_digits``)
SPLIT_SEED = 0
TEST_FRACTION = 0.2
IMAGE_SIZE = 16
NUM_CLASSES = 10


class WeightsChecksumError(RuntimeError):
    """A weights file does not match the SHA-256 recorded for it (corrupted or replaced)."""


# -- data ---------------------------------------------------------------------------------------
def _split_indices(labels: Tensor, test_fraction: float = TEST_FRACTION,
                   seed: int = SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """Deterministic stratified split: per class, a seeded permutation; the first
    ``round(test_fraction * count)`` indices of each class go to the test split."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = int(round(test_fraction * idx.numel()))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def digits_data(split: str = "train", size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor]:
    """The UCI handwritten digits of scikit-learn as ``(images, labels)``.

    Args:
        split: ``"train"`` (1,438 images), ``"test"`` (359) or ``"all"`` (1,797). The split is
            stratified by class, 80/20, with a fixed seed: the same on every call and machine.
        size: side of the output images; the 8x8 originals are resized with bilinear
            interpolation (``align_corners=False``). ``size=8`` returns the originals.

    Returns:
        ``images`` (N, 1, size, size) float32 in [0, 1] (the 0..16 values divided by 16) and
        ``labels`` (N,) int64 in 0..9, in the order of ``load_digits``.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if int(size) < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("digits_data needs scikit-learn (it ships the UCI digits data set): "
                          "pip install scikit-learn") from exc
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    if split != "all":
        train_idx, test_idx = _split_indices(labels)
        idx = train_idx if split == "train" else test_idx
        images, labels = images[idx], labels[idx]
    if int(size) != images.shape[-1]:
        images = F.interpolate(images, size=(int(size), int(size)), mode="bilinear",
                               align_corners=False)
    return images.clamp_(0.0, 1.0).contiguous(), labels


# -- models -------------------------------------------------------------------------------------
class DigitsClassifier(nn.Module):
    """A small CNN on (B, 1, 16, 16) images in [0, 1]; returns (B, 10) logits (no softmax).

    ``named_modules()`` yields ``features.conv1``, ``features.relu1``, ``features.pool1``,
    ``features.conv2``, ``features.relu2``, ``features.pool2``, ``classifier.flatten``,
    ``classifier.fc1``, ``classifier.relu3``, ``classifier.fc2``.
    """

    def __init__(self, width1: int = 16, width2: int = 32, hidden: int = 64,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, width1, 3, padding=1)),      # 16x16
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),                          # 8x8
            ("conv2", nn.Conv2d(width1, width2, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),                          # 4x4
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(width2 * 4 * 4, hidden)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(hidden, num_classes)),
        ]))
        self.input_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
        # Read by NeuronInverseSet: pixels in [0, 1], no normalization.
        self.preprocessing = Preprocessing(input_range=(0.0, 1.0), input_shape=self.input_shape,
                                           source="feassample digits zoo")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class DigitsEncoder(nn.Module):
    """(B, 1, 16, 16) -> (mu, logvar), each (B, code_dim): two stride-2 convolutions, then two
    linear heads on the 4x4x32 features."""

    def __init__(self, code_dim: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 16, 4, stride=2, padding=1)),   # 8x8
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(16, 32, 4, stride=2, padding=1)),  # 4x4
            ("relu2", nn.ReLU()),
            ("flatten", nn.Flatten()),
        ]))
        self.mu = nn.Linear(32 * 4 * 4, code_dim)
        self.logvar = nn.Linear(32 * 4 * 4, code_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class DigitsDecoder(nn.Module):
    """(B, code_dim) -> (B, 1, 16, 16) in [0, 1]: an MLP to 4x4x32 features, then two 2x
    transposed convolutions and a sigmoid."""

    def __init__(self, code_dim: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.code_dim, self.hidden = int(code_dim), int(hidden)
        self.fc = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(code_dim, hidden)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(hidden, 32 * 4 * 4)),
            ("relu2", nn.ReLU()),
        ]))
        self.deconv = nn.Sequential(OrderedDict([
            ("unflatten", nn.Unflatten(1, (32, 4, 4))),
            ("deconv1", nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1)),  # 8x8
            ("relu3", nn.ReLU()),
            ("deconv2", nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1)),   # 16x16 logits
        ]))

    def logits(self, z: Tensor) -> Tensor:
        """Pre-sigmoid pixel logits (B, 1, 16, 16) (the Bernoulli parameters of training)."""
        return self.deconv(self.fc(z))

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(z))


class DigitsVAE(nn.Module):
    """A variational autoencoder of the 16x16 digits with a ``code_dim``-dimensional code.

    ``encode(x) -> (mu, logvar)``, ``decode(z) -> images in [0, 1]``; ``forward(x)`` returns
    ``(reconstruction, mu, logvar)`` using the mean code (no sampling; training samples
    explicitly). The prior is ``z ~ N(0, I)``.
    """

    def __init__(self, code_dim: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.code_dim = int(code_dim)
        self.encoder = DigitsEncoder(code_dim)
        self.decoder = DigitsDecoder(code_dim, hidden)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar


class DigitsGenerator(nn.Module):
    """The VAE's decoder alone, as a generator ``G``: codes (B, code_dim) -> (B, 1, 16, 16).

    Attributes:
        decoder: the wrapped ``DigitsDecoder`` (shared, not copied).
        code_shape: ``(code_dim,)``; codes are meant to be drawn from ``N(0, I)``.
        output_shape: ``(1, 16, 16)``; outputs lie in [0, 1].

    Codes of another floating dtype are cast to the parameters' dtype and the output cast back.
    """

    def __init__(self, decoder: DigitsDecoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.code_shape = (int(decoder.code_dim),)
        self.output_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
        self.output_range = (0.0, 1.0)

    def forward(self, z: Tensor) -> Tensor:
        dtype = next(self.decoder.parameters()).dtype
        out = self.decoder(z.to(dtype))
        return out.to(z.dtype) if z.is_floating_point() else out


# -- weights ------------------------------------------------------------------------------------
def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where weights trained on first use go: ``$FEASSAMPLE_CACHE/weights`` or
    ``~/.cache/feassample/weights``."""
    root = os.environ.get("FEASSAMPLE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                               "feassample")
    return Path(root) / "weights"


def read_manifest(weights_dir: PathLike) -> dict:
    """The manifest of a weights folder (``{"models": {}}`` when there is none)."""
    path = Path(weights_dir) / MANIFEST
    if not path.is_file():
        return {"format": 1, "models": {}}
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    manifest.setdefault("models", {})
    folder = Path(weights_dir).resolve()
    for name, entry in manifest["models"].items():
        file = entry.get("file", f"{name}.pt") if isinstance(entry, dict) else None
        # an entry names a file IN this folder: "../outside/x.pt", an absolute path or a symlink
        # that leads out of the folder would load weights nobody checked in here
        if not isinstance(file, str) or not file or Path(file).is_absolute() or \
                not (folder / file).resolve().is_relative_to(folder):
            raise ValueError(f"{path}: the entry {name!r} names the file {file!r}, which is not "
                             f"inside {folder}; refusing to load weights from outside the weights folder")
    return manifest


def load_state_dict_file(model: nn.Module, path: PathLike, *, strict: bool = True,
                         sha256: Optional[str] = None) -> nn.Module:
    """Load your own weights into ``model`` from a state_dict file and return the model.

    The file is read with ``torch.load(..., map_location="cpu", weights_only=True)`` (tensors
    and plain containers only; no arbitrary code). It may hold the state_dict itself or a
    checkpoint dict with a ``"state_dict"`` or ``"model_state_dict"`` entry. With ``sha256``
    the file is checked first (``WeightsChecksumError`` on a mismatch). The model's mode and
    ``requires_grad`` flags are left as they are.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state_dict file at {path}")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256.lower():
            raise WeightsChecksumError(f"checksum mismatch for {path}: SHA-256 is {actual}, "
                                       f"expected {sha256}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise TypeError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    model.load_state_dict(obj, strict=strict)
    return model
