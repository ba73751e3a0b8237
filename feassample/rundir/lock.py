"""One writer per run directory: an exclusive ``flock`` on ``RUN/checkpoint/lock`` (opened with
``O_NOFOLLOW``: a link there is refused, never truncated through)."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path

from .integrity import CHECKPOINT, UnsafeRunDirectory, inside


class RunDirectoryBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive advisory lock (``flock``) on ``RUN/checkpoint/lock``, held for a run; the
    file names the holder (PID, host, start time) for the error a second writer gets. The lock
    goes with the process: a killed run leaves no stale lock."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = inside(self.run_dir, CHECKPOINT, "lock", create=True)
        try:  # never through a link: its target would be truncated and overwritten
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafeRunDirectory(f"{self.path} is a symbolic link: feassample follows no link "
                                         "inside a run directory (remove it, or use another run_dir)") from None
            raise
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:  # a hard link: another file's data
            os.close(self._fd)
            raise UnsafeRunDirectory(f"{self.path} is not a lock file of its own (a hard link or a "
                                     "special file): remove it, or use another run_dir")
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
