"""``feassample-merge``: the union of a sharded job's runs as one certified ``SampleSet``
(``feassample.rundir.merge``), certified again with the problem rebuilt from the app's config.

    feassample-merge multirun/DATE/TIME --out merged/
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..rundir.merge import merge_shards


def _rebuild_problem(config: dict):
    app_cfg = config.get("app")
    if not app_cfg:
        return None
    from omegaconf import OmegaConf

    from .build import build_problem
    return build_problem(OmegaConf.create(app_cfg), Path.cwd())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="feassample-merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="the shards' run directories, or folders holding them")
    parser.add_argument("--out", required=True, help="folder for the merged SampleSet")
    parser.add_argument("--no-recheck", action="store_true",
                        help="do not certify the merged codes again with the rebuilt problem")
    parser.add_argument("--allow-partial", action="store_true", help="accept shards with status partial")
    args = parser.parse_args(argv)
    try:
        merged = merge_shards(args.paths, recheck=not args.no_recheck, allow_partial=args.allow_partial,
                              rebuild=_rebuild_problem)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"feassample-merge: {err}\n")
    merged.save(args.out)
    print(f"{merged.stats['message']}{' (certified again)' if merged.stats['recertified'] else ''}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
