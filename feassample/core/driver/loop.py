"""One driver for every sampler: phases, progress bar, callbacks, signals, checkpoints, resume,
and the one ``finish`` that certifies the codes and derives the run's status.

The driver knows samplers only through the protocol of ``core.kernels.base``: it never looks at a
state's class. A run is a sequence of phases: the shared seed phase (for methods with
``needs_seeds``), then the method. After each step it streams the sampler's new accepted rows and
its state to a ``Store`` (``feassample.rundir.storage.RunWriter`` implements it), then calls the callbacks
``(phase, state, info)``.

Signals: while a run is in progress in the main thread, SIGINT (Ctrl-C) and SIGTERM (what Slurm
sends on time-out and preemption) only set a flag; the driver finishes the round in progress,
writes the checkpoint, and returns with status ``"interrupted"`` (a resume then continues
bit-identically). A second SIGINT during the same run raises ``KeyboardInterrupt`` at once.
"""
from __future__ import annotations

import time
from typing import Iterable, Optional

from torch import Tensor

from ..kernels.base import Sampler
from ..kernels.seeds import SeedPhase
from ..problem import FeasibleSet
from ..result import SampleSet
from ..state import SampleBuffer
from .checkpoint import Checkpoint, Saver, Store
from .finish import finish
from .progress import Bar
from .signals import Interrupt

#: what a phase's ``finalize`` may count, and its key in the run's one nested count
#: ``stats["evals"]``: ``model`` (the method's model evaluations, one per code evaluated:
#: ``SampleSet.n_evals``), ``check`` (certificate passes), ``diagnostic`` (the diagnostics'
#: forward passes), ``vjp`` (vector-Jacobian products beyond the forward passes)
COUNTS = {"model_evals": "model", "check_evals": "check", "diagnostic_evals": "diagnostic",
          "vjp_evals": "vjp"}


def count_evals(stats: dict, phase_stats: dict) -> None:
    """Move a phase's evaluation counters out of ``phase_stats`` into ``stats["evals"]``."""
    evals = stats.setdefault("evals", {"model": 0})
    for key, name in COUNTS.items():
        if key in phase_stats:
            evals[name] = evals.get(name, 0) + int(phase_stats.pop(key))


def run(problem: FeasibleSet, cfg, sampler: Sampler, *, callbacks: Iterable = (),
        store: Optional[Store] = None, resume: Optional[Checkpoint] = None,
        progress: bool = False) -> SampleSet:
    """Run ``sampler`` (after the seed phase when it ``needs_seeds``) on ``problem`` under the run
    settings ``cfg`` (a ``SamplerConfig``) and return the certified ``SampleSet``."""
    t0 = time.perf_counter()
    callbacks = list(callbacks)
    phases: list[Sampler] = ([SeedPhase(cfg.seeding)] if sampler.needs_seeds else []) + [sampler]
    names = [p.name for p in phases]
    stats: dict = {"method": sampler.name, "n_requested": cfg.n, "k": cfg.k}
    start, state, handoff = 0, None, None
    if resume is not None:
        if resume.phase not in names:
            raise ValueError(f"the saved run was in phase {resume.phase!r}, which method "
                             f"{sampler.name!r} does not have (its phases: {names})")
        start = names.index(resume.phase)
        stats.update(resume.stats)
        stats.update(method=sampler.name, n_requested=cfg.n, k=cfg.k, resumed=True)
        buffer = None
        if resume.rows is not None:
            buffer = SampleBuffer.from_rows(resume.rows, cfg.n)
        state = phases[start].load_state(problem, cfg, resume.state, buffer)
        if buffer is not None:
            buffer.resize(max(cfg.n, buffer.count))
    bar = Bar(progress, cfg.n)
    save = Saver(store)
    interrupted = None
    try:
        with Interrupt() as guard:
            for i in range(start, len(phases)):
                phase = phases[i]
                if state is None:
                    state = phase.init(problem, cfg, cfg.seed, seeds=handoff)
                    save(phase, state, stats, force=True)
                state, interrupted = _loop(phase, state, callbacks, save, stats, bar, guard)
                if interrupted is None:
                    save(phase, state, stats, force=True)  # the phase's last rows and state
                codes, phase_stats = phase.finalize(state)
                count_evals(stats, phase_stats)
                stats.update(phase_stats)
                if interrupted is not None or i == len(phases) - 1:
                    break
                handoff = phase.handoff(state)
                if handoff is None:  # no usable seed: return the closest iterates
                    break
                stats.pop("why", None)
                state = None
    finally:
        bar.close()
    if interrupted is not None:
        stats["interrupted_by"] = interrupted
    return finish(problem, codes, stats, cfg, t0, interrupted=interrupted is not None,
                  walkers=_column(phase.samples(state), codes, "walker"),
                  ancestors=_column(phase.samples(state), codes, "ancestor"))


def _column(buffer: Optional[SampleBuffer], codes: Tensor, name: str) -> Optional[Tensor]:
    """Column ``name`` (``walker``, ``ancestor``) of each returned row, when the sampler records
    it and returned its rows."""
    if buffer is None or name not in buffer.extra or buffer.count != codes.shape[0] or buffer.count == 0:
        return None
    return buffer.extra[name][: buffer.count]


def _loop(phase: Sampler, state, callbacks, save: Saver, stats, bar, guard):
    """Step ``phase`` until done: ``(state, why it stopped early)``, the latter a signal's name,
    ``"KeyboardInterrupt"`` (raised by a callback) or ``None``. Checkpoints are written between
    steps only, never inside one."""
    while not phase.done(state):
        if guard.signal is not None:
            save(phase, state, stats, force=True)
            return state, guard.signal
        state, info = phase.step(state)
        save(phase, state, stats)
        bar.update(phase.name, phase.progress(state)[0], info)
        try:
            for cb in callbacks:
                cb(phase.name, state, info)
        except KeyboardInterrupt:
            save(phase, state, stats, force=True)
            return state, "KeyboardInterrupt"
    return state, None


__all__ = ["run", "count_evals", "COUNTS"]
