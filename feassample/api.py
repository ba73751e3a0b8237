"""``fs.sample``: the core sampler plus run directories (written as the run goes) and resume."""
from __future__ import annotations

import json
import logging
import operator
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .core.driver import Checkpoint
from .core.problem import FeasibleSet
from .core.result import SampleSet
from .core.sampling import SamplerConfig
from .core.sampling import sample as core_sample
from .rundir.fingerprint import differences, fingerprint
from .rundir.lock import RunLock
from .rundir.storage import (RunWriter, checkpoint_record, clear_run, has_checkpoint, holds_run,
                             load_checkpoint)

log = logging.getLogger(__name__)


def _saved_config(saved: dict, n: int) -> SamplerConfig:
    """The ``SamplerConfig`` a run directory was written with (``n`` replaced)."""
    rec = dict(saved["sampler"])
    return SamplerConfig(method=rec["method"], n=max(n, rec.get("k", 1)), k=rec["k"], seed=rec["seed"],
                         objective=rec.get("objective", "sum_squared"),
                         diversity_weight=rec.get("diversity_weight", 1.0),
                         normalize=rec.get("normalize", True),
                         objective_options=rec.get("objective_options"),
                         seeding=rec.get("seeding") or {}, options=rec.get("options") or {},
                         device=rec.get("device"), dtype=rec.get("dtype", "float32"))


def _whole(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def shard_plan(n: int, seed: int, shard: int, shards: int) -> tuple[int, int]:
    """``(n_i, seed_i)`` of shard ``shard`` of ``shards``: the ``n`` samples split as evenly as
    possible (the first ``n % shards`` shards take one more), and an independent seed for each
    shard drawn from ``numpy.random.SeedSequence([seed, shard, shards])`` (``shards = 1`` keeps
    ``seed``, so one shard is the unsharded run)."""
    n, seed, shard, shards = (_whole(k, v) for k, v in
                              (("n", n), ("seed", seed), ("shard", shard), ("shards", shards)))
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1} (shards={shards}), got {shard}")
    if n < shards:
        raise ValueError(f"n={n} samples cannot be split into {shards} shards")
    base, extra = divmod(n, shards)
    n_i = base + (1 if shard < extra else 0)
    if shards == 1:
        return n_i, seed
    state = np.random.SeedSequence([seed, shard, shards]).generate_state(1, dtype=np.uint32)[0]
    return n_i, int(state >> 1)


def sample(problem: FeasibleSet, n: int = 500, k: int = 10, *, seed: int = 0,
           run_dir: Optional[str | Path] = None, resume: Optional[str | Path] = None,
           config: Optional[SamplerConfig] = None, callbacks: Iterable = (),
           shard: Optional[int] = None, shards: Optional[int] = None, overwrite: bool = False,
           **settings) -> SampleSet:
    """Sample ``n`` certified points of a feasible set (see ``feassample.core.sampling.sample``).

    Args:
        problem: the feasible set.
        n, k, seed: samples wanted, walkers per round, the run's seed.
        run_dir: write the run as it goes (accepted samples after every round, the sampler state)
            and the final ``SampleSet`` into ``run_dir/samples``. The directory is locked for the
            run (a second writer is refused with the holder's PID) and belongs to one run: a
            directory that already holds one is refused unless ``overwrite=True``.
        resume: a run directory written with ``run_dir``: continue from its saved state to ``n``
            samples; the problem must have the same fingerprint (``feassample.rundir.fingerprint``)
            and the settings that change the law (``LAW``) must be the saved ones; the run keeps
            writing into the same directory. Or a ``Checkpoint`` (a
            phase name, a state dict and rows, e.g. kept by a callback), with the same settings.
        shard, shards: run shard ``shard`` (0-based) of ``shards`` independent jobs whose union
            is one sample of ``n``: this job samples its share of ``n`` with its own seed
            (``shard_plan``); merge the jobs' run directories with ``feassample-merge``.
        config, callbacks, settings: as for the core ``sample`` (``method``, ``objective``, ``lr``,
            ``dtype``, ``progress``, ``options``...).
    """
    sharding = None
    if shard is not None or shards is not None:
        if shard is None or shards is None:
            raise ValueError("give both shard= and shards= (this job's index and the number of jobs)")
        n_total, base_seed = n, seed
        n, seed = shard_plan(n, seed, shard, shards)
        sharding = {"shard": int(shard), "shards": int(shards), "n_total": int(n_total),
                    "base_seed": int(base_seed), "seed": seed}
        if k > n:
            raise ValueError(f"shard {shard} of {shards} gets n={n} samples, fewer than k={k} walkers: "
                             "lower k or shards")
    checkpoint = None
    if isinstance(resume, Checkpoint):  # a state kept by a callback, not a directory
        checkpoint, resume = resume, None
    if resume is not None:
        resume = Path(resume)
        if not has_checkpoint(resume):
            raise FileNotFoundError(f"resume={str(resume)!r}: no checkpoint there "
                                    f"(expected {resume / 'checkpoint'} written by run_dir=...)")
        run_dir = run_dir or resume
    lock = RunLock(run_dir) if run_dir is not None else None
    try:
        if resume is not None:
            checkpoint, saved = load_checkpoint(resume)
            if sharding is not None or "shard" in saved:
                plan = saved.get("shard")
                if plan is None or (sharding is not None and (shard, shards) != (plan["shard"], plan["shards"])):
                    was = "not a shard" if plan is None else f"shard {plan['shard']} of {plan['shards']}"
                    raise ValueError(f"resume={str(resume)!r} was {was}"
                                     f"{'' if sharding is None else f', not shard {shard} of {shards}'}")
                sharding = dict(plan)
                n = shard_plan(plan["n_total"], plan["base_seed"], plan["shard"], plan["shards"])[0]
            _same_problem(resume, saved, problem)
            base = _saved_config(saved, n)
            method = settings.get("method")
            if method is not None and method != base.method_name:
                raise ValueError(f"resume={str(resume)!r} is a run of method {base.method_name!r}, not "
                                 f"{method!r}: resume it with its own method, or start a new run_dir")
            config = SamplerConfig.build(config or base, n=base.n if n < base.k else n)
            _same_settings(resume, saved, SamplerConfig.build(config, **{
                key: v for key, v in settings.items() if key not in ("progress", "initial_codes")}))
            k, seed = config.k, config.seed
            log.info("resuming %s from the %s phase", resume, checkpoint.phase)
        elif run_dir is not None and holds_run(run_dir):
            if not overwrite:
                raise ValueError(f"run_dir={str(run_dir)!r} already holds a run: continue it with "
                                 f"resume={str(run_dir)!r}, choose a new directory, or pass overwrite=True")
            clear_run(run_dir)
        store = None
        if run_dir is not None:
            record = checkpoint_record(problem, SamplerConfig.build(config, n=n, k=k, seed=seed, **{
                key: v for key, v in settings.items() if key not in ("progress", "initial_codes")}))
            if sharding is not None:
                record["shard"] = sharding
            written = 0 if checkpoint is None or checkpoint.rows is None else int(checkpoint.rows["codes"].shape[0])
            store = RunWriter(run_dir, record, written=written)
        result = core_sample(problem, n=n, k=k, seed=seed, config=config, callbacks=callbacks,
                             store=store, resume=checkpoint, **settings)
        if sharding is not None:
            result.stats["shard"] = sharding
            result.config["shard"] = sharding
        if run_dir is not None:
            result.save(Path(run_dir) / "samples")
        return result
    finally:
        if lock is not None:
            lock.release()


#: settings that change the law of a run (or its samples): a resume must keep them
LAW = ("method", "k", "seed", "objective", "diversity_weight", "normalize", "objective_options",
       "seeding", "options", "dtype")


def _same_problem(resume: Path, saved: dict, problem: FeasibleSet) -> None:
    """Refuse to resume a run directory with another problem, naming what differs."""
    if saved["problem"].get("code_shape") != list(problem.code_shape) or \
            saved["problem"].get("bands") != problem.config().get("bands"):
        raise ValueError(f"resume={str(resume)!r} was a run of another problem "
                         f"({saved['problem'].get('problem')} with bands "
                         f"{saved['problem'].get('bands')}); refusing to mix samples")
    if "fingerprint" in saved:
        differ = differences(saved["fingerprint"], fingerprint(problem))
        if differ:
            raise ValueError(f"resume={str(resume)!r} was a run of another problem: its "
                             f"{', '.join(differ)} differ(s) from the saved run's; refusing to mix samples")


def _same_settings(resume: Path, saved: dict, now: SamplerConfig) -> None:
    """Refuse to resume with settings that change the law, naming them."""
    record = json.loads(json.dumps(now.record(), default=str))
    old = saved.get("sampler", {})
    differ = [key for key in LAW if key in old and record.get(key) != old.get(key)]
    if differ:
        shown = "; ".join(f"{key}: saved {old.get(key)!r}, now {record.get(key)!r}" for key in differ)
        raise ValueError(f"resume={str(resume)!r} was run with other settings ({shown}): resume with "
                         "the saved settings, or start a new run_dir")
