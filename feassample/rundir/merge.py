"""The union of a sharded job's runs as one certified ``SampleSet``.

A job split with ``fs.sample(..., shard=i, shards=m)`` (CLI: ``shard=i shards=m``; on Slurm
``feassample -m shards=8 'shard=range(8)' hydra/launcher=submitit_slurm``) writes ``m`` run
directories whose samples come from independent seeds. Their union is one valid sample of the
requested size: each shard samples the same law (same problem, same method and settings) and the
shards are independent. The merge checks that, and every shard's certificate, before it
concatenates anything:

* every shard ``0..m-1`` is present exactly once, with the same ``shards``, ``n_total``,
  ``base_seed``, problem description and sampler settings (seed and n aside);
* every returned row of every shard is certified (``feasible``), and each shard's status is
  ``success`` (``allow_partial=True`` accepts ``partial`` shards);
* every shard's ``samples.pt`` matches the SHA-256 saved with it (a cut, flipped or copied file
  is refused, naming it), and no row appears twice across (or within) the shards;
* the codes are certified again by an independent pass of the problem: the one given, or the
  problem rebuilt from an app run's saved config (``recheck=False`` skips this), and the saved
  inputs ``x`` are the problem's decoding of the codes;
* with the problem known (given or rebuilt), even with ``recheck=False``, every code lies in the
  problem's box or code domain (a finite ``log_prior``).

Nothing in a shard is code: the CLI rebuilds only built-in problem kinds from plain values, and a
user's own factory comes from its command line (``feassample.cli.merge``), never from a shard.

The command line is ``feassample-merge`` (``feassample.cli.merge``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch

from ..core.result import META, TENSORS, SampleSet
from .integrity import inside

log = logging.getLogger(__name__)


class ProblemUnknown(ValueError):
    """The shards' problem cannot be rebuilt without code that a data file would name."""


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """The run directories (holding ``samples/``) given, or found below the given folders."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "samples" / META).is_file():
            runs.append(path)
        elif path.is_dir():
            runs.extend(sorted(p.parent.parent for p in path.rglob(f"samples/{META}")))
        else:
            raise FileNotFoundError(f"{path} is not a folder")
    if not runs:
        raise FileNotFoundError(f"no run directories (with samples/) under {[str(p) for p in paths]}")
    return runs


def _settings(config: dict) -> dict:
    sampler = dict(config.get("sampler") or {})
    for key in ("seed", "n"):
        sampler.pop(key, None)
    return sampler


def _refuse_duplicates(runs: Sequence[Path], ordered: Sequence[SampleSet]) -> None:
    """Refuse a row (code) present in two shards, naming them. The shards sample with
    independent seeds, so a shared row means copied data; repeats inside one shard are the
    method's own (resampled particles) and reported by its diagnostics."""
    per_shard = [torch.unique(s.codes.flatten(1), dim=0) for s in ordered]
    codes = torch.cat(per_shard)
    if not len(codes):
        return
    unique, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    if len(unique) == len(codes):
        return
    owner = torch.cat([torch.full((len(u),), i) for i, u in enumerate(per_shard)])
    dup = int(torch.nonzero(counts > 1)[0])
    where = sorted({str(runs[int(i)]) for i in owner[inverse == dup]})
    raise ValueError(f"{len(codes) - len(unique)} row(s) appear in more than one shard (e.g. a row in "
                     f"{' and '.join(where)}): a shard's samples copied into another; refusing to merge")


def _holding(owners: Sequence[str], bad) -> str:
    """``in RUN, RUN2`` for the shards holding the rows flagged in ``bad`` ``(N,)``."""
    return "in " + ", ".join(sorted({owners[int(i)] for i in torch.nonzero(bad).flatten()}))


def _refuse_outside(problem, codes, owners: Sequence[str]) -> None:
    """Refuse codes outside the problem's box or code domain (an infinite ``log_prior``)."""
    with torch.no_grad():
        inside_domain = torch.isfinite(problem.log_prior(codes.to(getattr(problem, "dtype", codes.dtype))))
    if not bool(inside_domain.all()):
        raise ValueError(f"{int((~inside_domain).sum())} merged row(s) ({_holding(owners, ~inside_domain)}) "
                         f"have codes outside the domain of "
                         f"{problem.describe()} (box {getattr(problem, 'box', None)}): refusing to merge")


def _refuse_other_inputs(problem, codes, x, owners: Sequence[str]) -> None:
    """Refuse saved inputs ``x`` that are not the problem's decoding of the saved codes (up to
    the rounding of another device: 1e-2 relative)."""
    with torch.no_grad():
        decoded = problem.decode(codes.to(getattr(problem, "dtype", codes.dtype))).double().cpu()
    xs = x.double()
    if xs.shape != decoded.shape:
        raise ValueError(f"the merged inputs have shape {tuple(xs.shape[1:])}, the problem decodes "
                         f"{tuple(decoded.shape[1:])}: refusing to merge")
    bad = ~(torch.isfinite(xs) & ((xs - decoded).abs() <= 1e-2 * (1 + decoded.abs()))).flatten(1).all(dim=1)
    if bool(bad.any()):
        raise ValueError(f"{int(bad.sum())} merged row(s) ({_holding(owners, bad)}) hold inputs x that "
                         "are not the decoding of "
                         "their codes: refusing to merge")


def merge_shards(paths: Sequence[str | Path], problem=None, *, recheck: bool = True,
                 allow_partial: bool = False,
                 rebuild: Optional[Callable[[dict], object]] = None) -> SampleSet:
    """Check and concatenate the shards found in ``paths`` (see the module docstring).

    ``problem`` certifies the merged codes again; without it, ``rebuild(config)`` makes it from
    the first shard's saved config (the CLI passes its problem builder)."""
    runs = find_runs(paths)
    for run in runs:  # a linked samples/ (or file in it) is another folder's data
        inside(run, "samples", folder=True)
        inside(run, "samples", TENSORS)
        inside(run, "samples", META)
    parts = [(run, SampleSet.load(run / "samples", require_digest=True)) for run in runs]
    first = parts[0][1].config
    if "shard" not in first:
        raise ValueError(f"{runs[0]} was not run as a shard (no shard=/shards= in its config)")
    plan = first["shard"]
    shards = int(plan["shards"])
    seen: dict[int, Path] = {}
    for run, s in parts:
        info = s.config.get("shard")
        if info is None:
            raise ValueError(f"{run} was not run as a shard (no shard=/shards= in its config)")
        for key in ("shards", "n_total", "base_seed"):
            if info[key] != plan[key]:
                raise ValueError(f"{run} is shard {info['shard']} of another job: {key}={info[key]}, "
                                 f"not {plan[key]} as in {runs[0]}")
        if s.config.get("problem") != first.get("problem"):
            raise ValueError(f"{run} sampled another problem than {runs[0]}")
        if _settings(s.config) != _settings(first):
            raise ValueError(f"{run} used other sampler settings than {runs[0]}")
        i = int(info["shard"])
        if i in seen:
            raise ValueError(f"shard {i} appears twice: {seen[i]} and {run}")
        seen[i] = run
        if not bool(s.feasible.all()):
            raise ValueError(f"{run} (shard {i}) holds {int((~s.feasible).sum())} uncertified row(s)")
        if s.status != "success" and not (allow_partial and s.status == "partial"):
            raise ValueError(f"{run} (shard {i}) ended with status {s.status!r}: resume it "
                             f"(resume={run}) before merging")
    missing = sorted(set(range(shards)) - set(seen))
    if missing:
        raise ValueError(f"shard(s) {missing} of {shards} are missing")
    ordered = [s for _, s in sorted(parts, key=lambda rs: int(rs[1].config["shard"]["shard"]))]
    _refuse_duplicates([seen[i] for i in range(shards)], ordered)
    codes = torch.cat([s.codes for s in ordered])
    owners = [str(seen[i]) for i in range(shards) for _ in range(len(ordered[i]))]
    x = torch.cat([s.x for s in ordered])
    values = torch.cat([s.values for s in ordered])
    feasible = torch.cat([s.feasible for s in ordered])
    stats = {"status": "success" if len(codes) >= int(plan["n_total"]) else "partial",
             "message": f"{len(codes)} samples merged from {shards} shards, all certified",
             "shards": shards, "n_requested": int(plan["n_total"]),
             "evals": {"model": sum(s.n_evals for s in ordered)},
             "wall_s": sum(float(s.stats.get("wall_s", 0.0)) for s in ordered),
             "shard_status": [s.status for s in ordered], "recertified": False}
    estimates = [(s.stats.get("log_prob"), s.stats.get("log_prob_se")) for s in ordered]
    if all(isinstance(lp, (int, float)) and isinstance(se, (int, float)) and math.isfinite(lp) and se > 0
           for lp, se in estimates):
        # independent estimates of one log P(set) (each shard its own seed): their inverse-variance
        # weighted mean, with its standard error
        weights = [1.0 / se ** 2 for _, se in estimates]
        stats["log_prob"] = math.fsum(w * lp for w, (lp, _) in zip(weights, estimates)) / math.fsum(weights)
        stats["log_prob_se"] = 1.0 / math.sqrt(math.fsum(weights))
        stats["shard_log_prob"] = [lp for lp, _ in estimates]
    if problem is None and rebuild is not None:
        try:
            problem = rebuild(first)
        except ProblemUnknown:
            if recheck:
                raise
            log.warning("the shards' problem is not rebuilt (it needs your code): the codes are not "
                        "checked against its domain")
    if problem is not None:
        _refuse_outside(problem, codes, owners)
    if recheck:
        if problem is None:
            raise ValueError("cannot certify again: these runs carry no app config; pass problem= "
                             "(Python) or recheck=False / --no-recheck")
        _refuse_other_inputs(problem, codes, x, owners)
        with torch.no_grad():
            again, ok = problem.check(codes.to(getattr(problem, "dtype", codes.dtype)))
        if not bool(ok.all()):
            raise ValueError(f"{int((~ok).sum())} merged row(s) ({_holding(owners, ~ok)}) fail an "
                             "independent certificate "
                             f"of {problem.describe()}: refusing to merge")
        values, stats["recertified"] = again.to(values.dtype), True
    stats["domain_checked"] = problem is not None
    config = {k: v for k, v in first.items() if k != "shard"}
    config["merged_from"] = [str(seen[i]) for i in range(shards)]
    return SampleSet(x, codes, values, feasible, stats, config)
