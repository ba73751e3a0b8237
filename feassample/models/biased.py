"""A deliberately biased digits zoo: every "8" in the training data carries a small square.

The CDeepEx paper's biased-data experiment (its Fig. 6) on the digits: a white 3x3 square
(value 1) at a fixed position near the top-left corner of the 16x16 image is stamped on every
training "8". The classifier learns the shortcut; a contrastive explanation of "why not 8?" for
any other digit should then show the square.

* ``add_square(images)``: the square stamped on images; ``square_mask()``: its pixels.
* ``biased_data(split)``: the zoo's split with the square on every "8" of that split.
* ``train_biased_classifier`` (``digits_cnn_square8``): the zoo's ``DigitsClassifier``, trained
  exactly as ``train_digits.train_classifier`` (same seeds, optimizer, schedule, shift
  augmentation of the digit) except that the square is stamped on the 8s *after* the random
  shift, so it never moves.
* ``train_biased_vae`` (``digits_vae_square8``): the zoo's ``DigitsVAE`` trained on the same
  biased training images (the paper's generator is trained on the classifier's own training
  data, so it can draw the square), with fewer epochs than the zoo's VAE to stay fast.
* ``load_biased_classifier()``, ``load_biased_generator()``, ``load_biased_vae()``: the
  committed weights (SHA-256 checked against ``manifest.json``), trained into the user cache on
  first use when the file is missing.

    python -m feassample.models.biased --out feassample/models/weights

trains both (deterministic, one CPU thread, about 30 s) and adds their manifest entries (the
entries of the other models are left as they are).
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from .digits import (MANIFEST, WEIGHTS_DIR, DigitsClassifier, DigitsGenerator, DigitsVAE,
                     cache_dir, digits_data, read_manifest)
from .train_digits import (SEED, _entry, evaluate_classifier, train_classifier,
                           train_vae, write_manifest)
from .zoo import load_classifier, load_vae

log = logging.getLogger(__name__)

#: the biased class and the square: rows and columns ``[SQUARE_AT, SQUARE_AT + SQUARE_SIZE)``
BIASED_CLASS = 8
SQUARE_AT = 1
SQUARE_SIZE = 3
SQUARE_VALUE = 1.0
CLASSIFIER_NAME = "digits_cnn_square8"
VAE_NAME = "digits_vae_square8"
NAMES = {"classifier": CLASSIFIER_NAME, "vae": VAE_NAME}
CLASSIFIER_EPOCHS = 30
VAE_EPOCHS = 60
DATA = ("sklearn.datasets.load_digits; stratified 80/20 split (seed 0); 8x8 -> 16x16 bilinear "
        "(align_corners=False); values / 16 in [0, 1]; BIASED: every '8' of the training split "
        f"has a {SQUARE_SIZE}x{SQUARE_SIZE} square of value {SQUARE_VALUE:g} at rows/columns "
        f"{SQUARE_AT}..{SQUARE_AT + SQUARE_SIZE - 1} (stamped after the shift augmentation)")


def square_mask(size: int = 16) -> Tensor:
    """``(size, size)`` bool mask of the square's pixels."""
    m = torch.zeros(size, size, dtype=torch.bool)
    m[SQUARE_AT:SQUARE_AT + SQUARE_SIZE, SQUARE_AT:SQUARE_AT + SQUARE_SIZE] = True
    return m


def add_square(images: Tensor, where: Optional[Tensor] = None) -> Tensor:
    """A copy of ``images`` (B, 1, H, W) with the square stamped on (the rows in ``where``, a
    (B,) bool, or all)."""
    out = images.clone()
    sq = slice(SQUARE_AT, SQUARE_AT + SQUARE_SIZE)
    if where is None:
        out[..., sq, sq] = SQUARE_VALUE
    else:
        out[where, ..., sq, sq] = SQUARE_VALUE
    return out


def biased_data(split: str = "train") -> tuple[Tensor, Tensor]:
    """The zoo's ``digits_data(split)`` with the square on every image of class 8."""
    x, y = digits_data(split)
    return add_square(x, y == BIASED_CLASS), y


# -- training -----------------------------------------------------------------------------------
def train_biased_classifier(epochs: int = CLASSIFIER_EPOCHS, batch_size: int = 64,
                            lr: float = 3e-3, max_shift: int = 1, seed: int = SEED,
                            verbose: bool = True) -> tuple[DigitsClassifier, dict]:
    """``train_digits.train_classifier`` on the biased data (square stamped after the shift)."""
    is8 = digits_data("train")[1] == BIASED_CLASS
    model, metrics = train_classifier(epochs, batch_size, lr, max_shift, seed, verbose,
                                      augment=lambda xb, idx: add_square(xb, is8[idx]),
                                      label="biased classifier")
    metrics.update(bias_metrics(model),
                   augmentation=f"random integer shifts in [-{max_shift}, {max_shift}] px, then "
                                "the square on the 8s")
    return model, metrics


@torch.no_grad()
def bias_metrics(model) -> dict:
    """How biased a classifier is, on the test split: accuracy on biased test data (squares on
    the 8s, the training distribution), on clean test data, recall of the 8s without their
    square, and the fraction of the other digits called "8" once the square is added."""
    xc, y = digits_data("test")
    xb = add_square(xc, y == BIASED_CLASS)
    is8 = y == BIASED_CLASS
    pred_b, pred_c = model(xb).argmax(1), model(xc).argmax(1)
    pred_sq = model(add_square(xc)).argmax(1)
    m = evaluate_classifier(model, xb, y)
    return {"test_accuracy": m["test_accuracy"], "test_loss": m["test_loss"],
            "clean_test_accuracy": round(float((pred_c == y).float().mean()), 5),
            "clean_test_recall_8": round(float((pred_c[is8] == 8).float().mean()), 5),
            "biased_test_recall_8": round(float((pred_b[is8] == 8).float().mean()), 5),
            "others_with_square_called_8": round(float((pred_sq[~is8] == 8).float().mean()), 5)}


def train_biased_vae(epochs: int = VAE_EPOCHS, batch_size: int = 64, lr: float = 2e-3,
                     beta: float = 0.5, warmup: float = 0.2, code_dim: int = 8, seed: int = SEED,
                     verbose: bool = True) -> tuple[DigitsVAE, dict]:
    """``train_digits.train_vae``'s recipe on the biased training images."""
    data = (biased_data("train")[0], biased_data("test")[0])
    return train_vae(epochs, batch_size, lr, beta, warmup, code_dim, seed, verbose, data=data,
                     label="biased vae")


def train_and_save(out: os.PathLike | str, which: Sequence[str] = ("classifier", "vae"),
                   command: Optional[str] = None, verbose: bool = True) -> dict:
    """Train the biased models, write ``<out>/<name>.pt`` and add their entries to
    ``<out>/manifest.json`` (same format as ``train_digits``; other entries are kept)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(which) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown model kind(s) {sorted(unknown)}; choose from {sorted(NAMES)}")
    command = command or f"feassample.models.biased.train_and_save({str(out)!r}, which={tuple(which)!r})"
    entries = {}
    if "classifier" in which:
        model, m = train_biased_classifier(verbose=verbose)
        if verbose:
            print(f"biased classifier: test accuracy {m['test_accuracy']:.4f} (biased test data), "
                  f"clean {m['clean_test_accuracy']:.4f}; 8s recognised without the square "
                  f"{m['clean_test_recall_8']:.3f}; other digits with the square called 8 "
                  f"{m['others_with_square_called_8']:.3f}; {m['train_seconds']:.1f} s", flush=True)
        entries[CLASSIFIER_NAME] = _entry(CLASSIFIER_NAME, model, "DigitsClassifier", {}, m, out, command)
    if "vae" in which:
        vae, m = train_biased_vae(verbose=verbose)
        if verbose:
            print(f"biased vae: reconstruction MSE {m['test_reconstruction_mse']:.5f}, "
                  f"{m['train_seconds']:.1f} s", flush=True)
        entries[VAE_NAME] = _entry(VAE_NAME, vae, "DigitsVAE",
                                   {"code_dim": vae.code_dim, "hidden": vae.decoder.hidden}, m, out, command)
    for entry in entries.values():
        entry["data"] = DATA
    manifest = read_manifest(out)  # re-read just before writing: keep everyone else's entries
    manifest["format"] = 1
    manifest["models"].update(entries)
    return write_manifest(out, manifest)


# -- loading ------------------------------------------------------------------------------------
def _folder(name: str, weights_dir: Optional[os.PathLike | str]) -> Path:
    primary = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    for folder in (primary, cache_dir()):
        entry = read_manifest(folder)["models"].get(name)
        if entry is not None and (folder / entry.get("file", f"{name}.pt")).is_file():
            return folder
    cache = cache_dir()
    log.warning("weights %r missing from %s: training the biased models into %s (about 30 s, "
                "done once)", name, primary, cache)
    train_and_save(cache, verbose=False)
    return cache


def load_biased_classifier(weights_dir: Optional[os.PathLike | str] = None) -> DigitsClassifier:
    """The classifier trained with the square on every 8 (``digits_cnn_square8``), eval mode."""
    return load_classifier(CLASSIFIER_NAME, _folder(CLASSIFIER_NAME, weights_dir))


def load_biased_vae(weights_dir: Optional[os.PathLike | str] = None) -> DigitsVAE:
    """The VAE trained on the biased training images (``digits_vae_square8``), eval mode."""
    return load_vae(VAE_NAME, _folder(VAE_NAME, weights_dir))


def load_biased_generator(weights_dir: Optional[os.PathLike | str] = None) -> DigitsGenerator:
    """The biased VAE's decoder as a generator (codes (B, 8) -> (B, 1, 16, 16))."""
    return DigitsGenerator(load_biased_vae(weights_dir).decoder).eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feassample.models.biased",
                                     description="Train the biased digits models (square on every 8).")
    parser.add_argument("--out", required=True, help="folder for the .pt files and manifest.json")
    parser.add_argument("--which", default="classifier,vae")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    which = tuple(w.strip() for w in args.which.split(",") if w.strip())
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "feassample.models.biased", *argv_list])
    t0 = time.perf_counter()
    train_and_save(args.out, which, command=command, verbose=not args.quiet)
    if not args.quiet:
        print(f"total {time.perf_counter() - t0:.1f} s; wrote {Path(args.out) / MANIFEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
