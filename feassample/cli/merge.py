"""``feassample-merge``: the union of a sharded job's runs as one certified ``SampleSet``
(``feassample.rundir.merge``), certified again with the problem rebuilt from the app's config.

    feassample-merge multirun/DATE/TIME --out merged/
    feassample-merge multirun/DATE/TIME --out merged/ --problem-factory my_problem.py:make

Nothing in a shard is code: the problem is rebuilt only for the built-in kinds (``BUILT_IN``)
from plain values; a shard whose config names your own code (``problem=python``, ``model=file``)
is certified again only with that code named on this command line (``--problem-factory``,
``--model-cls``), never with the file or class a shard names.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..rundir.merge import ProblemUnknown, merge_shards

#: problem kinds a shard's config rebuilds from its plain values alone
BUILT_IN = ("logistic", "neuron", "intersection")
#: model loaders a shard's config may name: weights read with ``weights_only=True``, no program
#: (``file`` takes --model-cls; TorchScript and exported programs are code, never run from a shard)
BUILT_IN_MODELS = ("digits", "torchvision", "timm")


def _refuse_interpolation(value, where: str) -> None:
    """A saved config holds resolved plain values: an ``${...}`` there was put by hand."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_interpolation(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_interpolation(item, f"{where}[{i}]")
    elif isinstance(value, str) and "${" in value:
        raise ValueError(f"the shards' config {where}={value!r} is an interpolation, not a plain value: "
                         "refusing to rebuild the problem from it")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise ValueError(f"the shards' config {where} is not a plain value")


def rebuild_problem(config: dict, problem_factory: Optional[str] = None,
                    model_cls: Optional[str] = None):
    """The problem of a shard's saved app config (``None`` without one): a built-in kind from
    plain values, or your code as named by ``problem_factory`` / ``model_cls`` (from the command
    line); ``ProblemUnknown`` when the shard needs code that was not named there."""
    app = config.get("app")
    if not app:
        return None
    if not isinstance(app, dict) or not isinstance(app.get("problem"), dict):
        raise ValueError("the shards' config has no problem section: cannot rebuild the problem")
    _refuse_interpolation(app, "app")
    from omegaconf import OmegaConf

    from .build import build_problem
    from .targets import model_target, problem_target
    cfg = OmegaConf.create(app)
    option = problem_target(cfg.problem).option  # any other _target_ is refused, never imported
    if option == "python":
        if problem_factory is None:
            raise ProblemUnknown(
                f"the shards ran problem=python (problem.factory={cfg.problem.get('factory')!r} in their "
                "config): feassample-merge runs no code named by a data file; name your factory with "
                "--problem-factory path/to/file.py:function, or merge with --no-recheck")
        cfg.problem.factory = problem_factory
    elif option not in BUILT_IN:
        raise ProblemUnknown(f"problem={option} is not rebuilt by feassample-merge; merge with --no-recheck")
    if option in ("neuron", "intersection"):
        if "model" not in cfg:
            raise ValueError(f"the shards' config (problem={option}) has no model section")
        model = model_target(cfg.model).option
        if model == "file":
            if model_cls is None:
                raise ProblemUnknown(
                    f"the shards ran model=file (model.cls={cfg.model.get('cls')!r} in their config): "
                    "feassample-merge runs no code named by a data file; name your class with "
                    "--model-cls path/to/net.py:Net, or merge with --no-recheck")
            cfg.model.cls = model_cls
        elif model not in BUILT_IN_MODELS:
            raise ProblemUnknown(f"model={model} is a program (code), not rebuilt from a shard's config; "
                                 "merge with --no-recheck, or merge in Python with problem=")
    return build_problem(cfg, Path.cwd())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="feassample-merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="the shards' run directories, or folders holding them")
    parser.add_argument("--out", required=True, help="folder for the merged SampleSet")
    parser.add_argument("--no-recheck", action="store_true",
                        help="do not certify the merged codes again (digests, duplicates and the "
                             "problem's domain are still checked)")
    parser.add_argument("--allow-partial", action="store_true", help="accept shards with status partial")
    parser.add_argument("--problem-factory", metavar="FILE.py:FUNCTION",
                        help="your factory for shards run with problem=python (never the one a shard names)")
    parser.add_argument("--model-cls", metavar="FILE.py:CLASS",
                        help="your model class for shards run with model=file (never the one a shard names)")
    args = parser.parse_args(argv)
    try:
        merged = merge_shards(args.paths, recheck=not args.no_recheck, allow_partial=args.allow_partial,
                              rebuild=lambda config: rebuild_problem(config, args.problem_factory,
                                                                     args.model_cls))
        merged.save(args.out)
    except (ValueError, FileNotFoundError, TypeError) as err:
        parser.exit(2, f"feassample-merge: {err}\n")
    print(f"{merged.stats['message']}{' (certified again)' if merged.stats['recertified'] else ''}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
