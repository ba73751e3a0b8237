"""The zoo's trained models: the committed weights in ``feassample/models/weights`` (checked
against the SHA-256 in ``manifest.json``), trained on first use into the user cache when a file
is missing.

Apart from ``digits.py`` (data and architectures) because training (``train_digits.py``) needs
those architectures: ``digits <- train_digits <- zoo`` has no import cycle.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import train_digits
from .digits import (MANIFEST, WEIGHTS_DIR, DigitsClassifier, DigitsGenerator, DigitsVAE,
                     PathLike, WeightsChecksumError, cache_dir, read_manifest, sha256_file)

log = logging.getLogger(__name__)


def _verified_state_dict(weights_dir: Path, name: str) -> tuple[dict, dict]:
    """``(state_dict, manifest entry)`` of ``name`` in ``weights_dir``, checksum verified
    before anything is unpickled."""
    entry = read_manifest(weights_dir)["models"].get(name)
    if entry is None:
        raise WeightsChecksumError(f"no entry for {name!r} in {weights_dir / MANIFEST}: cannot "
                                   "verify the weights file (use load_state_dict_file for your "
                                   "own weights)")
    path = weights_dir / entry.get("file", f"{name}.pt")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise WeightsChecksumError(
            f"checksum mismatch for {path}: SHA-256 is {actual}, but {weights_dir / MANIFEST} "
            f"records {entry['sha256']} for {name!r}. The file is corrupted or was replaced; "
            "delete it to retrain it into the cache, or restore the original.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, entry


def _resolve(name: str, weights_dir: Optional[PathLike]) -> Path:
    """The folder holding ``name``'s weights: ``weights_dir`` (default: the package's) when
    the file is there, else the user cache, training it there first when it is missing."""
    primary = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    entry = read_manifest(primary)["models"].get(name, {})
    if (primary / entry.get("file", f"{name}.pt")).is_file():
        return primary
    cache = cache_dir()
    entry = read_manifest(cache)["models"].get(name, {})
    if (cache / entry.get("file", f"{name}.pt")).is_file():
        log.info("weights %r not in %s; using the cached copy in %s", name, primary, cache)
        return cache
    which = train_digits.KIND_OF.get(name)
    if which is None:
        raise FileNotFoundError(f"no weights file for {name!r} in {primary} or {cache}, and "
                                f"only {sorted(train_digits.KIND_OF)} can be trained on first use")
    log.warning("weights %r missing from %s: training them now into %s (about a minute on "
                "CPU; done once)", name, primary, cache)
    manifest = train_digits.train_and_save(cache, which=(which,), verbose=False)
    entry = manifest["models"][name]
    log.warning("trained %r into %s in %.1f s (sha256 %s)", name, cache, entry["train_seconds"],
                entry["sha256"])
    return cache


def _load(name: str, weights_dir: Optional[PathLike], kind: str) -> tuple[nn.Module, dict]:
    folder = _resolve(name, weights_dir)
    state, entry = _verified_state_dict(folder, name)
    arch = entry.get("arch")
    config = dict(entry.get("config", {}))
    expected = "DigitsClassifier" if kind == "classifier" else "DigitsVAE"
    if arch not in (None, expected):
        raise ValueError(f"{name!r} is a {arch}, not a {expected}")
    # the throwaway random initialisation must not advance the caller's random stream
    with torch.random.fork_rng(devices=[]):
        model: nn.Module = (DigitsClassifier if kind == "classifier" else DigitsVAE)(**config)
    model.load_state_dict(state)
    model.eval()
    log.debug("loaded %r from %s", name, folder)
    return model, entry


def load_classifier(name: str = "digits_cnn", weights_dir: Optional[PathLike] = None
                    ) -> DigitsClassifier:
    """The trained digits CNN in eval mode (parameters keep ``requires_grad``; the caller
    decides). ``weights_dir`` overrides the package's weights folder (it must hold the file and
    a ``manifest.json`` with its SHA-256). Raises ``WeightsChecksumError`` on a mismatch."""
    return _load(name, weights_dir, "classifier")[0]  # type: ignore[return-value]


def load_vae(name: str = "digits_vae", weights_dir: Optional[PathLike] = None) -> DigitsVAE:
    """The trained digits VAE in eval mode (see ``load_classifier``)."""
    return _load(name, weights_dir, "vae")[0]  # type: ignore[return-value]


def load_generator(name: str = "digits_vae", weights_dir: Optional[PathLike] = None
                   ) -> DigitsGenerator:
    """The trained VAE's decoder as a ``DigitsGenerator`` in eval mode: codes
    (B, code_dim) ~ N(0, I) -> images (B, 1, 16, 16) in [0, 1]."""
    return DigitsGenerator(load_vae(name, weights_dir).decoder).eval()
