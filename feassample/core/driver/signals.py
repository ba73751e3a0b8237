"""SIGINT/SIGTERM during a run: a flag the driver reads between rounds.

While a run is in progress in the main thread, SIGINT (Ctrl-C) and SIGTERM (what Slurm sends on
time-out and preemption) only set a flag; the driver finishes the round in progress, writes the
checkpoint, and returns with status ``"interrupted"`` (a resume then continues bit-identically).
A second SIGINT during the same run raises ``KeyboardInterrupt`` at once.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Optional

log = logging.getLogger("feassample.core.driver")


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


__all__ = ["Interrupt"]
