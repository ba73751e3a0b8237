"""One writer per run directory: an exclusive ``flock`` on ``RUN/checkpoint/lock``."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .storage import CHECKPOINT


class RunDirectoryBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive advisory lock (``flock``) on ``RUN/checkpoint/lock``, held for a run; the
    file names the holder (PID, host, start time) for the error a second writer gets. The lock
    goes with the process: a killed run leaves no stale lock."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        folder = self.run_dir / CHECKPOINT
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 4096, 0).decode(errors="replace").strip() or "{}"
            os.close(self._fd)
            try:
                info = json.loads(holder)
            except json.JSONDecodeError:
                info = {}
            raise RunDirectoryBusy(
                f"{self.run_dir} is in use by PID {info.get('pid', '?')} on {info.get('host', '?')} "
                f"(since {info.get('started', '?')}): wait for that run, or use another run_dir") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
