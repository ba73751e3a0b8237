"""The inverse set of a ResNet-18 channel, sampled through the decorrelated Fourier
parametrization.

With no ``--weights`` the network is randomly initialized (seeded), its state_dict saved to a
temporary file and loaded back through ``feassample.models.load_model``, the same path as real
weights: the pictures then show what a random network's channel responds to, nothing learned.
With the ImageNet weights already on your disk (nothing is downloaded), the same command samples
the trained channel; its preprocessing (ImageNet mean/std, inputs in [0, 1]) comes from
torchvision's ``ResNet18_Weights`` metadata:

    pip install 'feassample[vision]'
    python examples/torchvision_resnet.py                       # random init, 64x64, 40 samples
    python examples/torchvision_resnet.py --weights ~/resnet18-f37072fd.pth --size 224 --n 100

The band is the unit's 90th to 99th percentile over images drawn from the parametrization's prior
(``--z1/--z2`` to set it). Writes ``<out>/grid.png`` (samples titled with their activation, and
the histogram of the certified activations against the band) and ``<out>/samples.pt``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Optional

import torch

import feassample as fs
from feassample.models import load_model
from feassample.models.params import FourierImage
from feassample.viz import image_grid


def random_init_weights(arch: str, folder: Path, seed: int = 0) -> Path:
    """A state_dict of a randomly initialized ``arch`` saved in ``folder`` (no download)."""
    import torchvision

    torch.manual_seed(seed)
    path = folder / f"{arch}_random_init.pt"
    torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), path)
    return path


def prior_band(problem: fs.NeuronInverseSet, draws: int = 256, seed: int = 0,
               quantiles=(0.90, 0.99)) -> tuple[float, float]:
    """The unit's activation quantiles over images from the generator's prior."""
    codes = problem.generator.init_codes(draws, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        values = torch.cat([problem.measure(problem.decode(c)).values[:, 0]
                            for c in codes.split(32)])
    lo, hi = torch.quantile(values.double(), torch.tensor(quantiles, dtype=torch.float64))
    return float(lo), float(hi)


def main(arch: str = "resnet18", weights: Optional[str] = None, unit: str = "layer4:17",
         size: int = 64, n: int = 40, k: int = 10, seed: int = 0,
         band: Optional[tuple[float, float]] = None, out: Path = Path("outputs/torchvision_resnet"),
         prior_draws: int = 256, quantiles: tuple[float, float] = (0.90, 0.99)):
    """Sample the inverse set and write the grid; returns ``(problem, samples, picture path)``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = weights or random_init_weights(arch, Path(tmp), seed)
        model = load_model("torchvision", arch=arch, weights=path)
    pre = model.preprocessing
    print(f"{arch}: preprocessing from {pre.source}: inputs in {pre.input_range}, "
          f"mean {pre.mean}, std {pre.std}")
    image = FourierImage((3, size, size), output_range=pre.input_range)
    # A provisional band, to measure the unit on the prior; then the real one.
    probe = fs.NeuronInverseSet(model, unit=unit, z1=-float("inf"), z2=float("inf"), generator=image)
    z1, z2 = band or prior_band(probe, prior_draws, seed, quantiles)
    problem = fs.NeuronInverseSet(model, unit=unit, z1=z1, z2=z2, generator=image)
    samples = fs.sample(problem, n=n, k=k, seed=seed)
    print(f"{unit} in [{z1:.4g}, {z2:.4g}]: {samples.summary()}")
    samples.save(out / "samples.pt")
    picture = image_grid(problem, samples, out / "grid.png", ncols=min(10, max(1, n)),
                         nrows=max(1, min(4, (n + 9) // 10)))
    print(f"wrote {picture}")
    return problem, samples, picture


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18", help="a torchvision classification model")
    parser.add_argument("--weights", default=None,
                        help="a local state_dict file (default: random init, saved and reloaded)")
    parser.add_argument("--unit", default="layer4:17", help="'layer:channel' or 'layer:c:y:x'")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--n", type=int, default=40, help="samples")
    parser.add_argument("--k", type=int, default=10, help="samples per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--z1", type=float, default=None)
    parser.add_argument("--z2", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("outputs/torchvision_resnet"))
    args = parser.parse_args()
    if (args.z1 is None) != (args.z2 is None):
        parser.error("--z1 and --z2 go together")
    torch.set_num_threads(1)
    main(args.arch, args.weights, args.unit, args.size, args.n, args.k, args.seed,
         (args.z1, args.z2) if args.z1 is not None else None, args.out)
