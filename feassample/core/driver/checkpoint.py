"""Checkpoints: where a run is kept as it goes (``Store``, implemented by
``feassample.rundir.storage.RunWriter``), a saved run to continue (``Checkpoint``), and the
``Saver`` that streams a phase's rows and state to the store between steps."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Protocol


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


#: the least wall seconds between two saves of a phase that keeps rows (and between two saves of
#: any phase whose ``checkpoint_every_s`` is lower): a fast sampler's step takes milliseconds, and a
#: save (a shard, the state, their manifest lines, each fsynced) would cost more than the step. A
#: kill loses at most this much work: the resumed run repeats it from the last saved state and
#: produces the same rows (every draw comes from the state's generator).
ROWS_EVERY_S = 0.5


class Saver:
    """Streams a phase's new rows and its state to a ``Store`` between steps.

    A save writes the new rows (a shard) and then the state that counts them, so the store
    always holds a state and the rows it counts. It happens when forced (the phase's first state,
    its end, a signal, a restart of its rows) and otherwise at most every ``max(ROWS_EVERY_S, phase.checkpoint_every_s)``
    seconds (``ROWS_EVERY_S`` alone for phases with rows).

    It keeps what the driver needs to know between two saves (whether the phase's rows have been
    written once, when the last checkpoint was written): the driver's own bookkeeping, never
    stored on the sampler."""

    def __init__(self, store: Optional[Store]) -> None:
        self.store = store
        self._shaped: set = set()
        self._last: dict = {}
        self._seen: dict = {}  # each phase's row count at the last step

    def __call__(self, phase, state, stats: dict, force: bool = False) -> None:
        store = self.store
        if store is None:
            return
        buffer = phase.samples(state)
        # a sampler that starts its rows over (budget="auto") empties its buffer in the step that
        # decides it: saved at once, before new rows can follow, so the cut below keeps no old row
        restarted = buffer is not None and buffer.count < self._seen.get(phase.name, 0)
        self._seen[phase.name] = 0 if buffer is None else buffer.count
        now = time.monotonic()
        every = ROWS_EVERY_S if buffer is not None else max(ROWS_EVERY_S, phase.checkpoint_every_s)
        if not (force or restarted) and now - self._last.get(phase.name, -math.inf) < every:
            return
        kept = {k: v for k, v in stats.items() if k != "why"}
        if buffer is not None and buffer.count < store.written:
            # the sampler started its rows over (budget="auto"): the state that counts them is
            # saved first, then the shards are cut to it, so a kill in between resumes consistently
            store.save_state(phase.name, state.state_dict(), kept, buffer.count)
            store.trim(buffer.count)
        if buffer is not None and (buffer.count > store.written or phase.name not in self._shaped):
            # the first write of a phase's rows may be empty: it records their shapes for a resume
            store.append(buffer.rows(store.written, buffer.count))
            self._shaped.add(phase.name)
        store.save_state(phase.name, state.state_dict(), kept, None if buffer is None else buffer.count)
        self._last[phase.name] = now


__all__ = ["Store", "Checkpoint", "Saver", "ROWS_EVERY_S"]
