"""Train the digits model zoo deterministically on CPU and record it in a manifest.

    python -m feassample.cli.train_zoo --out feassample/models/weights \\
        [--which classifier,vae] [--picture docs/img/zoo_vae_samples.png]

Everything is seeded (model initialisation, data order, augmentation, the VAE's noise), runs
with ``torch.use_deterministic_algorithms(True)`` and 2 CPU threads, so the same torch build
on the same kind of CPU writes byte-identical weight files. Takes well under a minute on 2
cores. The manifest (``manifest.json`` in ``--out``) gets, per model: the file, its SHA-256 and
size, the architecture and its config, test metrics, training seconds, the torch version, the
CPU capability and the command.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .digits import (MANIFEST, DigitsClassifier, DigitsVAE, digits_data, read_manifest,
                     sha256_file)

SEED = 0
THREADS = 1
#: model name -> what trains it
NAMES = {"classifier": "digits_cnn", "vae": "digits_vae"}
KIND_OF = {v: k for k, v in NAMES.items()}

CLASSIFIER_EPOCHS = 30
VAE_EPOCHS = 150
VAE_BETA = 0.5
VAE_WARMUP = 0.2   # fraction of the epochs over which the KL weight ramps 0 -> VAE_BETA


# -- deterministic context ----------------------------------------------------------------------
@contextlib.contextmanager
def deterministic(threads: int = THREADS):
    """Deterministic CPU algorithms and a fixed thread count, restored afterwards; the global
    RNG is forked so that training does not disturb the caller's random stream."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def _batches(n: int, batch_size: int, g: torch.Generator) -> Iterable[Tensor]:
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def random_shift(x: Tensor, max_shift: int, g: torch.Generator) -> Tensor:
    """Each image shifted by its own random integer offset in [-max_shift, max_shift] along
    both axes, filling with zeros (the background)."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * s + 1, (b,), generator=g)
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, :, None]    # (b, h, 1)
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, :]    # (b, 1, w)
    bi = torch.arange(b)[:, None, None]
    return padded[bi, 0, rows, cols].unsqueeze(1)


def _cosine(step: int, total: int, lr: float) -> float:
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / total))


# -- classifier ---------------------------------------------------------------------------------
def train_classifier(epochs: int = CLASSIFIER_EPOCHS, batch_size: int = 64, lr: float = 3e-3,
                     max_shift: int = 1, seed: int = SEED, verbose: bool = True,
                     augment: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                     label: str = "classifier") -> tuple[DigitsClassifier, dict]:
    """Train ``DigitsClassifier`` on the train split; returns it (eval mode) and its metrics.

    ``augment(batch, indices)`` edits each shifted batch (e.g. stamps a square on the 8s for
    the biased model of ``feassample.models.biased``).
    """
    x, y = digits_data("train")
    xt, yt = digits_data("test")
    t0 = time.perf_counter()
    with deterministic():
        torch.manual_seed(seed)
        model = DigitsClassifier()
        g = torch.Generator().manual_seed(seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
        steps = epochs * math.ceil(len(x) / batch_size)
        step = 0
        for epoch in range(epochs):
            model.train()
            total = 0.0
            for idx in _batches(len(x), batch_size, g):
                for group in opt.param_groups:
                    group["lr"] = _cosine(step, steps, lr)
                xb = random_shift(x[idx], max_shift, g)
                if augment is not None:
                    xb = augment(xb, idx)
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                step += 1
            if verbose and (epoch + 1) % 10 == 0:
                print(f"  {label} epoch {epoch + 1:3d}/{epochs}: train loss "
                      f"{total / len(x):.4f}", flush=True)
        model.eval()
        seconds = time.perf_counter() - t0
        metrics = evaluate_classifier(model, xt, yt)
        metrics["train_accuracy"] = evaluate_classifier(model, x, y)["test_accuracy"]
    metrics.update(train_seconds=round(seconds, 2), epochs=epochs, batch_size=batch_size, lr=lr,
                   augmentation=f"random integer shifts in [-{max_shift}, {max_shift}] px",
                   optimizer="Adam(weight_decay=1e-4), cosine learning rate")
    return model, metrics


@torch.no_grad()
def evaluate_classifier(model: nn.Module, x: Tensor, y: Tensor) -> dict:
    logits = model(x)
    return {"test_accuracy": round(float((logits.argmax(1) == y).float().mean()), 5),
            "test_loss": round(float(F.cross_entropy(logits, y)), 5)}


# -- VAE ----------------------------------------------------------------------------------------
def vae_terms(vae: DigitsVAE, x: Tensor, g: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
    """Per-image Bernoulli reconstruction loss (summed over pixels, with one reparametrised
    code) and KL(q(z|x) || N(0, I)); both (B,)."""
    mu, logvar = vae.encode(x)
    eps = torch.randn(mu.shape, generator=g) if g is not None else torch.zeros_like(mu)
    z = mu + eps * torch.exp(0.5 * logvar)
    rec = F.binary_cross_entropy_with_logits(vae.decoder.logits(z), x, reduction="none")
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
    return rec.flatten(1).sum(1), kl


def train_vae(epochs: int = VAE_EPOCHS, batch_size: int = 64, lr: float = 2e-3,
              beta: float = VAE_BETA, warmup: float = VAE_WARMUP, code_dim: int = 8,
              seed: int = SEED, verbose: bool = True,
              data: Optional[tuple[Tensor, Tensor]] = None, label: str = "vae"
              ) -> tuple[DigitsVAE, dict]:
    """Train ``DigitsVAE`` (Bernoulli likelihood, KL weight ramped 0 -> ``beta`` over the first
    ``warmup`` fraction of the epochs); returns it (eval mode) and its test metrics.

    ``data``: ``(train images, test images)`` instead of the zoo's digits (the biased model)."""
    x, xt = data if data is not None else (digits_data("train")[0], digits_data("test")[0])
    t0 = time.perf_counter()
    with deterministic():
        torch.manual_seed(seed)
        vae = DigitsVAE(code_dim=code_dim)
        g = torch.Generator().manual_seed(seed + 2)
        opt = torch.optim.Adam(vae.parameters(), lr=lr)
        per_epoch = math.ceil(len(x) / batch_size)
        steps = epochs * per_epoch
        ramp = max(1, int(warmup * steps))
        step = 0
        for epoch in range(epochs):
            vae.train()
            tot_rec = tot_kl = 0.0
            for idx in _batches(len(x), batch_size, g):
                for group in opt.param_groups:
                    group["lr"] = _cosine(step, steps, lr)
                weight = beta * min(1.0, step / ramp)
                rec, kl = vae_terms(vae, x[idx], g)
                loss = (rec + weight * kl).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_rec += float(rec.detach().sum())
                tot_kl += float(kl.detach().sum())
                step += 1
            if verbose and (epoch + 1) % 25 == 0:
                print(f"  {label} epoch {epoch + 1:3d}/{epochs}: train rec {tot_rec / len(x):.2f} "
                      f"kl {tot_kl / len(x):.2f}", flush=True)
        vae.eval()
        seconds = time.perf_counter() - t0
        metrics = evaluate_vae(vae, xt, seed=seed)
    metrics.update(train_seconds=round(seconds, 2), epochs=epochs, batch_size=batch_size, lr=lr,
                   beta=beta, kl_warmup_fraction=warmup,
                   optimizer="Adam, cosine learning rate", likelihood="Bernoulli (BCE) per pixel")
    return vae, metrics


@torch.no_grad()
def evaluate_vae(vae: DigitsVAE, x: Tensor, samples: int = 16, seed: int = SEED) -> dict:
    """Test metrics per image: the negative ELBO (nats, beta = 1, ``samples`` codes), its KL and
    reconstruction parts, and the mean squared error of the mean-code reconstruction."""
    g = torch.Generator().manual_seed(seed + 3)
    recs = []
    for _ in range(samples):
        rec, kl = vae_terms(vae, x, g)
        recs.append(rec)
    rec = torch.stack(recs).mean(0)
    mse = F.mse_loss(vae(x)[0], x)
    return {"test_neg_elbo": round(float((rec + kl).mean()), 3),
            "test_reconstruction_bce": round(float(rec.mean()), 3),
            "test_kl": round(float(kl.mean()), 3),
            "test_reconstruction_mse": round(float(mse), 6)}


@torch.no_grad()
def sample_confidence(vae: DigitsVAE, classifier: nn.Module, n: int = 1000, seed: int = SEED
                      ) -> dict:
    """How digit-like prior samples look to the classifier: mean max-softmax and class spread."""
    g = torch.Generator().manual_seed(seed + 4)
    z = torch.randn(n, vae.code_dim, generator=g)
    p = F.softmax(classifier(vae.decode(z)), dim=1)
    counts = torch.bincount(p.argmax(1), minlength=10)
    return {"prior_sample_confidence": round(float(p.max(1).values.mean()), 4),
            "prior_sample_class_counts": counts.tolist()}


# -- saving -------------------------------------------------------------------------------------
def _entry(name: str, model: nn.Module, arch: str, config: dict, metrics: dict, out: Path,
           command: str) -> dict:
    path = out / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return {"file": path.name, "arch": arch, "config": config, "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "data": "sklearn.datasets.load_digits; stratified 80/20 split (seed 0); 8x8 -> 16x16 "
                    "bilinear (align_corners=False); values / 16 in [0, 1]",
            "seed": SEED, "threads": THREADS, **metrics,
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "python": platform.python_version(), "command": command}


def train_and_save(out: os.PathLike | str, which: Sequence[str] = ("classifier", "vae"),
                   picture: Optional[Callable[[nn.Module], Path]] = None, command: Optional[str] = None,
                   verbose: bool = True) -> dict:
    """Train the models named in ``which`` (``"classifier"``, ``"vae"``), write
    ``<out>/<name>.pt`` and update ``<out>/manifest.json``; returns the manifest.

    ``picture``: called with the trained VAE to draw it (``feassample.cli.train_zoo`` passes the
    viz layer's ``save_vae_picture``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(which) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown model kind(s) {sorted(unknown)}; choose from {sorted(NAMES)}")
    command = command or ("feassample.models.train_digits.train_and_save("
                          f"{str(out)!r}, which={tuple(which)!r})")
    manifest = read_manifest(out)
    manifest["format"] = 1
    classifier = None
    if "classifier" in which:
        classifier, m = train_classifier(verbose=verbose)
        if verbose:
            print(f"classifier: test accuracy {m['test_accuracy']:.4f} (train "
                  f"{m['train_accuracy']:.4f}), {m['train_seconds']:.1f} s", flush=True)
        manifest["models"][NAMES["classifier"]] = _entry(
            NAMES["classifier"], classifier, "DigitsClassifier", {}, m, out, command)
    if "vae" in which:
        vae, m = train_vae(verbose=verbose)
        if classifier is not None:
            m.update(sample_confidence(vae, classifier))
        if verbose:
            print(f"vae: test -ELBO {m['test_neg_elbo']:.2f} nats/image (reconstruction BCE "
                  f"{m['test_reconstruction_bce']:.2f} + KL {m['test_kl']:.2f}), reconstruction "
                  f"MSE {m['test_reconstruction_mse']:.5f}, {m['train_seconds']:.1f} s", flush=True)
            if "prior_sample_confidence" in m:
                print(f"vae: prior samples, classifier mean max-softmax "
                      f"{m['prior_sample_confidence']:.3f}, predicted classes "
                      f"{m['prior_sample_class_counts']}", flush=True)
        manifest["models"][NAMES["vae"]] = _entry(
            NAMES["vae"], vae, "DigitsVAE", {"code_dim": vae.code_dim, "hidden": vae.decoder.hidden}, m, out, command)
        if picture is not None:
            path = picture(vae)
            if verbose:
                print(f"picture: {path}", flush=True)
    return write_manifest(out, manifest)


def write_manifest(out: Path, manifest: dict) -> dict:
    """Write ``manifest.json`` into ``out`` atomically (a temporary file, then a rename)."""
    tmp = out / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out / MANIFEST)
    return manifest
