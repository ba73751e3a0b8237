"""Checkpoints: where a run is kept as it goes (``Store``, implemented by
``feassample.rundir.storage.RunWriter``), a saved run to continue (``Checkpoint``), and the
``Saver`` that streams a phase's rows and state to the store between steps."""
from __future__ import annotations

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


class Saver:
    """Streams a phase's new rows and its state to a ``Store`` between steps.

    It keeps what the driver needs to know between two saves (whether the phase's rows have been
    written once, when the last checkpoint was written): the driver's own bookkeeping, never
    stored on the sampler."""

    def __init__(self, store: Optional[Store]) -> None:
        self.store = store
        self._shaped: set = set()
        self._last: dict = {}

    def __call__(self, phase, state, stats: dict, force: bool = False) -> None:
        store = self.store
        if store is None:
            return
        buffer = phase.samples(state)
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
        now = time.monotonic()
        if force or buffer is not None or now - self._last.get(phase.name, 0.0) >= phase.checkpoint_every_s:
            store.save_state(phase.name, state.state_dict(), kept, None if buffer is None else buffer.count)
            self._last[phase.name] = now


__all__ = ["Store", "Checkpoint", "Saver"]
