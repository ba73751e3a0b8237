"""Command line of the zoo's training tool (app layer: it draws through the viz layer).

    python -m feassample.cli.train_zoo --out feassample/models/weights \\
        [--which classifier,vae] [--picture docs/img/zoo_vae_samples.png]

See ``feassample.models.train_digits`` for what is trained and how.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..models.digits import MANIFEST
from ..models.train_digits import train_and_save
from ..viz import save_vae_picture


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feassample.cli.train_zoo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the .pt files and manifest.json")
    parser.add_argument("--which", default="classifier,vae",
                        help="comma-separated subset of: classifier, vae (default: both)")
    parser.add_argument("--picture", default=None,
                        help="also save the VAE samples/reconstructions grid to this PNG")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    which = tuple(w.strip() for w in args.which.split(",") if w.strip())
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "feassample.cli.train_zoo", *argv_list])
    t0 = time.perf_counter()
    picture = None if args.picture is None else (lambda vae: save_vae_picture(vae, args.picture))
    train_and_save(args.out, which, picture=picture, command=command, verbose=not args.quiet)
    if not args.quiet:
        print(f"total {time.perf_counter() - t0:.1f} s; wrote {Path(args.out) / MANIFEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
