"""``fs.sample``: the core sampler plus run directories (written as the run goes) and resume."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Optional

from .core.driver import Checkpoint
from .core.driver.signals import Interrupt
from .core.problem import FeasibleSet
from .core.result import SampleSet
from .core.sampling import SamplerConfig
from .core.sampling import run as run_settings
from .rundir.integrity import run_dir_path
from .rundir.lock import RunLock
from .rundir.resume import check_resumable, check_same_problem, resumed_config
from .rundir.shards import asked_shard, resumed_shard, shard_plan
from .rundir.storage import (RunWriter, checkpoint_record, clear_run, drop_checkpoint, holds_run,
                             load_checkpoint, save_samples)

log = logging.getLogger(__name__)

#: keywords that are no setting of the run (not recorded, not checked)
RUN_ONLY = ("progress",)


def sample(problem: FeasibleSet, n: int = 500, k: Optional[int] = None, *, seed: Optional[int] = None,
           run_dir: Optional[str | Path] = None, resume: Optional[str | Path] = None,
           config: Optional[SamplerConfig] = None, callbacks: Iterable = (),
           shard: Optional[int] = None, shards: Optional[int] = None, overwrite: bool = False,
           resume_unchecked: bool = False, keep_checkpoint: bool = True, **settings) -> SampleSet:
    """Sample ``n`` certified points of a feasible set: the one entry point.

    Args:
        problem: the feasible set.
        n, k, seed: samples wanted, walkers per round (default 10), the run's seed (default 0); a
            resume keeps the saved ``k`` and ``seed`` and refuses others, naming them.
        run_dir: write the run as it goes (accepted samples after every round, the sampler state)
            and the final ``SampleSet`` into ``run_dir/samples``. The directory is locked for the
            run (a second writer is refused with the holder's PID) and belongs to one run: a
            directory that already holds one is refused unless ``overwrite=True`` (which removes
            the run's own files only). An empty name or a file is refused, no link inside it is
            followed and every file it holds carries a SHA-256 in its manifest
            (``feassample.rundir.integrity``); the final samples are written under a signal
            guard, complete or not at all.
        resume: a run directory written with ``run_dir``: continue from its saved state to ``n``
            samples; the problem must have the same fingerprint (``feassample.rundir.fingerprint``)
            and the settings that change the law (``feassample.rundir.resume.LAW``) must be the
            saved ones; the run keeps writing into the same directory. Or a ``Checkpoint`` (a
            phase name, a state dict and rows, e.g. kept by a callback), with the same settings.
        shard, shards: run shard ``shard`` (0-based) of ``shards`` independent jobs whose union
            is one sample of ``n``: this job samples its share of ``n`` with its own seed
            (``feassample.rundir.shards.shard_plan``); merge the jobs' run directories with
            ``feassample-merge``.
        keep_checkpoint: ``False``: once a run with ``run_dir`` has succeeded and its samples are
            saved, remove its checkpoint files (the ones its manifest lists; a partial, infeasible
            or interrupted run keeps them, so a resume can continue).
        resume_unchecked: resume even where the fingerprint differs from the saved run's or cannot
            digest what the problem reads (a constraint reading an object without readable
            state): the explicit escape, logged; the code shape and bands are still checked.
        config: a full ``SamplerConfig``; keyword ``settings`` override it (``method="joint"``,
            ``objective="none"``, ``lr=0.1``, ``dtype="float64"``, ``options={...}``,
            ``initial_codes``...; flat keywords are routed by ``SamplerConfig.build``); the
            settings are built once per call.
        callbacks: callables ``(phase, state, info)`` run after each step.
        progress: show a tqdm progress bar.

    Returns:
        A ``SampleSet`` whose ``feasible`` comes from ``problem.check`` (a fresh pass), with the
        stable fields ``status``, ``message``, ``n_evals``, ``max_violation``, ``log_prob``,
        ``log_prob_se`` and ``diagnostics`` (``feassample.core.result.SampleSet``).
    """
    for name, where in (("run_dir", run_dir), ("resume", resume)):
        if where is not None and not isinstance(where, (str, os.PathLike, Checkpoint)):
            raise TypeError(f"{name} must be a directory path (a str or pathlib.Path), got {where!r}")
    if not isinstance(keep_checkpoint, bool):
        raise TypeError(f"keep_checkpoint must be True or False, got {keep_checkpoint!r}")
    if not isinstance(resume_unchecked, bool):
        raise TypeError(f"resume_unchecked must be True or False, got {resume_unchecked!r}")
    asked = {name: v for name, v in (("k", k), ("seed", seed)) if v is not None}  # a resume checks these
    k, seed = 10 if k is None else k, 0 if seed is None else seed
    plan = asked_shard(n, seed, k, shard, shards)
    if plan is not None:
        n, seed = plan.n, plan.seed
    run_only = {key: settings.pop(key) for key in RUN_ONLY if key in settings}
    checkpoint = None
    if isinstance(resume, Checkpoint):  # a state kept by a callback, not a directory
        checkpoint, resume = resume, None
    if run_dir is not None:
        run_dir = run_dir_path(run_dir)
    if resume is not None:
        check_resumable(resume)
        resume = Path(resume)
        run_dir = run_dir or resume
    lock = RunLock(run_dir) if run_dir is not None else None
    store, dropped = None, False
    try:
        if resume is not None:
            checkpoint, saved = load_checkpoint(resume)
            plan = resumed_shard(resume, saved, plan)
            if plan is not None:
                n = plan.n
                if asked.get("seed") == plan.base_seed:  # the job's seed: this shard's is derived
                    asked["seed"] = plan.seed
            check_same_problem(resume, saved, problem, unchecked=resume_unchecked)
            cfg = resumed_config(resume, saved, n, config, {**asked, **settings})
            if checkpoint is None:
                log.info("%s was killed before its first state: running it again", resume)
            else:
                log.info("resuming %s from the %s phase", resume, checkpoint.phase)
        else:
            if run_dir is not None and holds_run(run_dir):
                if not overwrite:
                    raise ValueError(f"run_dir={str(run_dir)!r} already holds a run: continue it with "
                                     f"resume={str(run_dir)!r}, choose a new directory, or pass overwrite=True")
                clear_run(run_dir)
            cfg = SamplerConfig.build(config, n=n, k=k, seed=seed, **settings)
        if run_dir is not None:
            record = checkpoint_record(problem, cfg)
            if plan is not None:
                record["shard"] = plan.record()
            written = 0 if checkpoint is None or checkpoint.rows is None else int(checkpoint.rows["codes"].shape[0])
            store = RunWriter(run_dir, record, written=written)
        result = run_settings(problem, cfg, callbacks=callbacks, store=store, resume=checkpoint,
                              **run_only)
        with Interrupt() as guard:  # a signal now waits for the samples to be complete on disk
            if plan is not None:
                result.stats["shard"] = plan.record()
                result.config["shard"] = plan.record()
            if run_dir is not None:
                save_samples(run_dir, result)
                if not keep_checkpoint and result.status == "success":
                    freed, dropped = drop_checkpoint(run_dir), True
                    result.stats["checkpoint"] = f"removed ({freed} bytes)"
                    log.info("keep_checkpoint=False: removed the checkpoint of %s (%d bytes)", run_dir, freed)
        if guard.signal is not None:
            log.warning("%s received while the samples were saved: they are complete in %s",
                        guard.signal, Path(run_dir) / "samples" if run_dir is not None else "memory")
        return result
    finally:
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()
        if dropped:  # the released lock is the checkpoint folder's last file of ours
            folder = Path(run_dir) / "checkpoint"
            try:
                if (folder / "lock").is_file() and not (folder / "lock").is_symlink():
                    (folder / "lock").unlink()
                folder.rmdir()
            except OSError:  # the user's own files are there: the folder stays
                pass


def overlap(a: FeasibleSet, b: FeasibleSet, n: int = 500, *, seed: int = 0, method: str = "auto",
            min_inside: int = 50, **settings):
    """``P(B | A)`` under the prior: an ``analysis.Overlap`` with ``log_prob``, ``log_prob_se``
    and the ``method`` used.

    ``A`` is sampled once (``fs.sample(a, n, seed=seed, method="smc")``). ``method="fraction"``:
    the share ``f`` of A's rows inside B (``b.check``), ``log f`` with SE ``sqrt((1 - f) / (f
    n_eff))`` over A's effective size: no further model evaluation but B's certificate.
    ``"difference"``: also sample ``fs.Intersection([a, b])`` (seed ``seed + 1``) and take
    ``log P(A and B) - log P(A)``, the two independent runs' SEs in quadrature: the way for a B
    that is rare inside A. ``"auto"``: the fraction when at least ``min_inside`` of A's rows are
    inside B, else the difference. ``settings`` go to both ``fs.sample`` calls."""
    from .analysis import overlap_from_difference, overlap_from_fraction
    from .problems import Intersection

    if method not in ("auto", "fraction", "difference"):
        raise ValueError(f"method must be 'auto', 'fraction' or 'difference', got {method!r}")
    for name, p in (("a", a), ("b", b)):
        if not isinstance(p, FeasibleSet):
            raise TypeError(f"{name} must be a FeasibleSet (a problem), got {type(p).__name__}")
    if not (isinstance(min_inside, int) and min_inside >= 1):
        raise ValueError(f"min_inside must be an int >= 1, got {min_inside!r}")
    if tuple(a.code_shape) != tuple(b.code_shape):
        raise ValueError(f"b: its codes have shape {tuple(b.code_shape)}, a's {tuple(a.code_shape)}: "
                         "A and B must share one code space")
    settings.setdefault("method", "smc")
    settings.setdefault("progress", False)
    sa = sample(a, n=n, seed=seed, **settings)
    if sa.status != "success":
        raise ValueError(f"a: the run on A did not succeed ({sa.message}): P(B | A) needs A's sample")
    if method != "difference":
        got = overlap_from_fraction(sa, b)
        if method == "fraction" or (got.inside or 0) >= min_inside:
            return got
    sab = sample(Intersection([a, b]), n=n, seed=seed + 1, **settings)
    if sab.status != "success":
        raise ValueError(f"b: the run on A and B did not succeed ({sab.message})")
    return overlap_from_difference(sa, sab)


__all__ = ["sample", "overlap", "shard_plan"]
