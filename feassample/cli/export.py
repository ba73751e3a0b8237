"""Export a run's samples to ArviZ's netCDF (``SampleSet.to_inference_data``, docs/analysis.md).

    feassample-export outputs/2026-12-02/10-00-00              # writes .../samples.nc
    python -m feassample.cli.export RUN --out run.nc --projections 4

Needs ArviZ 0.x and h5netcdf (``pip install "feassample[arviz]"``).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..core.result import SampleSet


def export(run: str | Path, out: str | Path | None = None, projections: int = 4) -> Path:
    """Write the ``InferenceData`` of ``run`` (a run directory with ``samples/``, or a saved
    ``SampleSet`` folder) to ``out`` (default ``RUN/samples.nc``); the path written."""
    run = Path(run)
    folder = run / "samples" if (run / "samples").is_dir() else run
    samples = SampleSet.load(folder)
    target = Path(out) if out is not None else run / "samples.nc"
    if target.is_symlink():
        raise ValueError(f"{target} is a symbolic link: the export would write through it; remove it "
                         "or name another --out")
    data = samples.to_inference_data(projections=projections)
    # written aside, then renamed over the target: a link made meanwhile is replaced, not followed
    aside = target.with_name(f".{target.name}.writing")
    data.to_netcdf(str(aside))
    os.replace(aside, target)
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="feassample-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory (with samples/) or a saved SampleSet folder")
    parser.add_argument("--out", default=None, help="the netCDF file (default RUN/samples.nc)")
    parser.add_argument("--projections", type=int, default=4,
                        help="random projections of the codes added as posterior 'proj' (default 4)")
    args = parser.parse_args(argv)
    try:
        path = export(args.run, args.out, args.projections)
    except (FileNotFoundError, ValueError, ImportError) as err:
        parser.exit(2, f"feassample-export: {str(err).splitlines()[0]}\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
