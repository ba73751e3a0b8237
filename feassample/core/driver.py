"""One driver for every sampler: phases, progress bar, callbacks, signals, checkpoints, resume,
and the one ``finish`` that certifies the codes and derives the run's status.

The driver knows samplers only through the protocol of ``samplers.base``: it never looks at a
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

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

import torch
from torch import Tensor

from . import diagnostics
from .problem import FeasibleSet
from .result import SampleSet
from .kernels.base import Sampler
from .kernels.seeds import SeedPhase
from .state import SampleBuffer

log = logging.getLogger(__name__)


class Store(Protocol):
    """Where a run is kept as it goes (``feassample.rundir.storage.RunWriter``)."""

    written: int  # sample rows already on disk

    def append(self, rows: dict) -> None:
        """Append accepted rows (``{"codes": ..., "values": ..., ...}``, contiguous CPU tensors)."""

    def trim(self, count: int) -> None:
        """Keep the first ``count`` sample rows only (a sampler that started its rows over)."""

    def save_state(self, phase: str, state: dict, stats: dict, rows: Optional[int]) -> None:
        """Keep ``phase``'s state dict, the statistics of the phases before it, and how many
        sample rows the state counts (``None``: the phase keeps no rows)."""


@dataclass
class Checkpoint:
    """A saved run to continue: the phase it was in, that phase's state dict, the accepted rows
    written so far and the statistics of the finished phases."""

    phase: str
    state: dict
    rows: Optional[dict] = None
    stats: dict = field(default_factory=dict)


class Interrupt:
    """Turns SIGINT/SIGTERM into a flag for the duration of a run (main thread only)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.signal: Optional[str] = None
        self._old: dict = {}

    def __enter__(self) -> "Interrupt":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    try:
                        self._old[sig] = signal.signal(sig, self._handle)
                    except (ValueError, OSError):  # not allowed here (embedded interpreters)
                        pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signal.Signals(signum).name
        log.warning("%s received: finishing the round in progress, then saving", self.signal)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Bar:
    """A tqdm bar over the phases' progress ``(done, total)``, or nothing."""

    def __init__(self, show: bool, total: int) -> None:
        self._bar = None
        if show:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, desc="sampling", unit="sample", leave=False)
        self._shown = 0

    def update(self, phase: str, done: int, info: dict) -> None:
        if self._bar is None:
            return
        shown = " ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
                         if isinstance(v, (int, float, str)) and not isinstance(v, bool))
        self._bar.set_postfix_str(f"{phase} {shown}", refresh=False)
        if done > self._shown:
            self._bar.update(done - self._shown)
            self._shown = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


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
    bar = _Bar(progress, cfg.n)
    interrupted = None
    try:
        with Interrupt() as guard:
            for i in range(start, len(phases)):
                phase = phases[i]
                if state is None:
                    state = phase.init(problem, cfg, cfg.seed, seeds=handoff)
                    _save(store, phase, state, stats, force=True)
                state, interrupted = _loop(phase, state, callbacks, store, stats, bar, guard)
                if interrupted is None and phase.samples(state) is None:
                    _save(store, phase, state, stats, force=True)  # phases without rows: the last state
                codes, phase_stats = phase.finalize(state)
                stats["model_evals"] = stats.get("model_evals", 0) + int(phase_stats.pop("model_evals", 0))
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


def _loop(phase: Sampler, state, callbacks, store, stats, bar, guard):
    """Step ``phase`` until done: ``(state, why it stopped early)``, the latter a signal's name,
    ``"KeyboardInterrupt"`` (raised by a callback) or ``None``. Checkpoints are written between
    steps only, never inside one."""
    while not phase.done(state):
        if guard.signal is not None:
            _save(store, phase, state, stats, force=True)
            return state, guard.signal
        state, info = phase.step(state)
        _save(store, phase, state, stats)
        bar.update(phase.name, phase.progress(state)[0], info)
        try:
            for cb in callbacks:
                cb(phase.name, state, info)
        except KeyboardInterrupt:
            _save(store, phase, state, stats, force=True)
            return state, "KeyboardInterrupt"
    return state, None


def _save(store: Optional[Store], phase: Sampler, state, stats: dict, force: bool = False) -> None:
    if store is None:
        return
    buffer = phase.samples(state)
    if buffer is not None and buffer.count < store.written:
        # the sampler started its rows over (cover's budget="auto"): the state that counts them
        # is saved first, then the shards are cut to it, so a kill in between resumes consistently
        store.save_state(phase.name, state.state_dict(), {k: v for k, v in stats.items() if k != "why"},
                         buffer.count)
        store.trim(buffer.count)
    if buffer is not None and (buffer.count > store.written or not getattr(phase, "_shaped", False)):
        # the first write of a phase's rows may be empty: it records their shapes for a resume
        store.append(buffer.rows(store.written, buffer.count))
        phase._shaped = True
    now = time.monotonic()
    last = getattr(phase, "_last_checkpoint", 0.0)
    if force or buffer is not None or now - last >= phase.checkpoint_every_s:
        store.save_state(phase.name, state.state_dict(), {k: v for k, v in stats.items() if k != "why"},
                         None if buffer is None else buffer.count)
        phase._last_checkpoint = now


def finish(problem: FeasibleSet, codes: Tensor, stats: dict, cfg, t0: float,
           interrupted: bool = False, walkers: Optional[Tensor] = None,
           ancestors: Optional[Tensor] = None) -> SampleSet:
    """The ``SampleSet`` of some codes, certified by ``problem.check`` (an independent pass), with
    ``status`` derived from that certificate for every method:

    * ``"interrupted"``: a signal or Ctrl-C stopped the run (resume to continue);
    * ``"success"``: at least ``n`` returned rows certify inside the band;
    * ``"partial"``: some, but fewer than ``n``, certify;
    * ``"infeasible"``: none does (the closest iterates are returned where a method has them).

    ``stats["why"]`` (set by a sampler that stopped short) completes the message.

    With ``walkers`` ``(n,)`` (which walker kept each row: the MCMC-type samplers record it), the
    run's convergence diagnostics (``core.diagnostics``) go into ``stats["diagnostics"]``, with
    ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``, ``duplicates`` and ``mixed`` at the top; a
    run that is not mixed says so in a warning. With ``ancestors`` ``(n,)`` (population methods:
    each row's initial particle) they add ``distinct_ancestors`` and ``effective_ancestors`` of the
    returned rows (``diagnostics.ancestry``), the latter also at the top. The embedding is measured once more for them
    (``diagnostic_evals`` forward passes, no gradients).
    """
    why = stats.pop("why", "")
    with torch.no_grad():
        values, feasible = problem.check(codes)
        x = problem.decode(codes)
    n = int(cfg.n)
    certified = int(feasible.sum())
    failed = int(codes.shape[0]) - certified
    stats["check_evals"] = stats.get("check_evals", 0) + int(codes.shape[0])
    stats["wall_s"] = time.perf_counter() - t0
    stats["n_returned"] = int(codes.shape[0])
    stats["certified"] = certified
    stats["certified_fraction"] = certified / codes.shape[0] if codes.shape[0] else 0.0
    if interrupted:
        status, message = "interrupted", (f"interrupted ({stats.get('interrupted_by', 'stopped')}) with "
                                          f"{certified} of {n} samples certified; resume to continue")
    elif certified >= n:
        status, message = "success", f"{n} samples, all certified inside the band"
        if failed:
            message = f"{certified} samples certified inside the band ({failed} returned row(s) failed)"
    elif certified > 0:
        status, message = "partial", f"{certified} of {n} samples certified"
    else:
        status, message = "infeasible", f"no certified sample of {n}"
    if why and status != "success":
        message += f": {why}"
    if failed and status != "success":
        message += f" ({failed} returned row(s) failed the certificate)"
    stats.update(status=status, message=message)
    if status != "success":
        log.warning(message)
    if walkers is not None and not interrupted:
        _diagnose(problem, codes, x, values, walkers, stats, certified=status == "success",
                  ancestors=ancestors)
    config = {"problem": problem.config(), "sampler": cfg.record()}
    return SampleSet(x.detach(), codes.detach(), values.detach(), feasible.detach(), stats, config)


def _diagnose(problem: FeasibleSet, codes: Tensor, x: Tensor, values: Tensor, walkers: Tensor,
              stats: dict, certified: bool, ancestors: Optional[Tensor] = None) -> None:
    embedding = diagnostics.embedding_of(problem, x)
    stats["diagnostic_evals"] = int(x.shape[0])
    diag = diagnostics.diagnose(walkers, values, codes, embedding, names=problem.bands.names,
                                ancestors=ancestors)
    stats["diagnostics"] = diag
    stats["duplicates"] = diag["duplicates"]
    stats["mixed"] = diag["mixed"]
    for key in ("rhat_max", "ess_bulk_min", "ess_tail_min", "effective_ancestors"):
        if key in diag:
            stats[key] = diag[key]
    diagnostics.warn_if_not_mixed(diag, certified)


__all__ = ["Store", "Checkpoint", "Interrupt", "run", "finish"]
