"""Crash-safe runs: accepted samples reach disk as they are accepted, and a run resumes from its
saved sampler state. ``RunWriter`` is the core driver's ``Store``; it knows no sampler.

Layout of a run directory::

    RUN/checkpoint/run.json          the run's settings (SamplerConfig.record()) and the problem
    RUN/checkpoint/state.pt          {"phase": name, "state": the phase's state_dict(), "stats": ...}
    RUN/checkpoint/shards/NNNNNN.pt  accepted rows, append-only: exactly the rows of one write
    RUN/samples/                     the final SampleSet

Every file is written to a temporary name, fsynced and renamed, so a ``kill -9`` leaves either
the old or the new version: at most the round in progress is lost. Shards are written before the
state that counts them; rows beyond the state's count (a shard whose state write was lost) are
trimmed on resume by rewriting that shard (write new, fsync, rename: nothing is deleted before
its replacement is durable). Only regular files named ``NNNNNN.pt`` are read as shards; stray,
symlinked and temporary files are ignored, and temporaries of killed writes are removed on open.
Everything is loaded with ``torch.load(weights_only=True)``. The lock is ``feassample.rundir.lock``.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Optional

import torch

from ..core.driver import Checkpoint
from ..core.result import atomic_write_bytes
from .fingerprint import fingerprint

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
SHARD = re.compile(r"^\d{6}\.pt$")


def _save(path: Path, obj) -> None:
    atomic_write_bytes(path, lambda fh: torch.save(obj, fh))


def _save_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, default=str)
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def _load(path: Path, device="cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated, empty or foreign file: name it, do not crash deep inside
        raise ValueError(f"{path} is not a readable feassample checkpoint file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'empty'}); move it away or "
                         "start a new run") from err


def shard_files(folder: Path) -> list[Path]:
    """The shard files of a run, in order: regular files named ``NNNNNN.pt`` (no links)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if SHARD.match(p.name) and p.is_file() and not p.is_symlink())


def _clean_temporaries(folder: Path) -> None:
    """Remove the temporary files of writes that a kill interrupted (``.NAME.XXXX``)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and p.is_file() and not p.is_symlink():
                p.unlink()


class RunWriter:
    """The driver's ``Store`` for a run directory (see the module docstring).

    Args:
        run_dir: the run directory (created).
        record: the run's settings and the problem's description (``run.json``).
        written: rows already in the shards (a resumed run: ``load_checkpoint``'s count).
    """

    def __init__(self, run_dir: str | Path, record: dict, written: int = 0) -> None:
        self.dir = Path(run_dir) / CHECKPOINT
        self.shards = self.dir / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        _clean_temporaries(self.dir)
        _clean_temporaries(self.shards)
        self.written = 0
        self._next_shard = 0
        self._trim_to(written)
        _save_json(self.dir / "run.json", record)

    def _trim_to(self, count: int) -> None:
        """Keep exactly ``count`` rows in the shards (rewrite the shard that crosses it)."""
        total = 0
        files = shard_files(self.shards)
        for f in files:
            rows = _load(f)
            size = int(rows["codes"].shape[0])
            if total >= count and size:
                f.unlink()  # rows past the saved state: never counted, never loaded
                continue
            if total + size > count:
                _save(f, {k: v[: count - total].clone() for k, v in rows.items()})
                size = count - total
            total += size
            self._next_shard = int(f.name[:6]) + 1
        if total < count:
            raise ValueError(f"{self.shards} holds {total} rows but the state counts {count}")
        self.written = count

    # the Store protocol ------------------------------------------------------------------------
    def append(self, rows: dict) -> None:
        _save(self.shards / f"{self._next_shard:06d}.pt", rows)
        self._next_shard += 1
        self.written += int(rows["codes"].shape[0])

    def trim(self, count: int) -> None:
        self._trim_to(count)

    def save_state(self, phase: str, state: dict, stats: dict, rows: Optional[int]) -> None:
        _save(self.dir / "state.pt", {"phase": phase, "state": state, "stats": _plain(stats), "rows": rows})


def _plain(stats: dict) -> dict:
    """Statistics as plain values (what ``weights_only`` loading accepts)."""
    return json.loads(json.dumps(stats, default=str))


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` already holds a run (a checkpoint or saved samples)."""
    d = Path(run_dir)
    return (d / CHECKPOINT / "run.json").is_file() or (d / "samples").exists()


def clear_run(run_dir: str | Path) -> None:
    """Remove a run's checkpoint files and samples (``overwrite=True``), keeping the lock file."""
    d = Path(run_dir)
    shutil.rmtree(d / "samples", ignore_errors=True)
    shutil.rmtree(d / CHECKPOINT / "shards", ignore_errors=True)
    for name in ("run.json", "state.pt"):
        (d / CHECKPOINT / name).unlink(missing_ok=True)


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a resumable checkpoint."""
    d = Path(run_dir) / CHECKPOINT
    return (d / "run.json").is_file() and (d / "state.pt").is_file()


def load_checkpoint(run_dir: str | Path, device: Optional[torch.device] = None) -> tuple[Checkpoint, dict]:
    """``(checkpoint, saved record)`` of a run directory written by ``RunWriter``: the phase,
    its state dict, the accepted rows (up to the state's count) and the earlier phases' stats."""
    d = Path(run_dir) / CHECKPOINT
    if not has_checkpoint(run_dir):
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume (expected {d / 'run.json'} "
                                f"and {d / 'state.pt'}, written by run_dir=...)")
    record = json.loads((d / "run.json").read_text())
    device = device or torch.device("cpu")
    saved = _load(d / "state.pt", device)
    if not isinstance(saved, dict) or not {"phase", "state"} <= set(saved):
        raise ValueError(f"{d / 'state.pt'} is not a feassample state file")
    state, count, rows = saved["state"], saved.get("rows"), None
    if count is not None:
        files = shard_files(d / "shards")
        parts = [_load(f, device) for f in files]
        for f, p in zip(files, parts):
            if not isinstance(p, dict) or "codes" not in p or "values" not in p:
                raise ValueError(f"{f} is not a feassample shard (no codes/values); move it away")
            if set(p) != set(parts[0]):
                raise ValueError(f"{f} holds the columns {sorted(p)}, not those of {files[0].name} "
                                 f"({sorted(parts[0])}): shards of another run; move it away")
        if count and not parts:
            raise FileNotFoundError(f"{d / 'shards'} has no samples but the state says {count}")
        if parts:
            rows = {key: torch.cat([p[key] for p in parts])[:count] for key in parts[0]}
            if rows["codes"].shape[0] < count:
                raise ValueError(f"{d} is inconsistent: the state counts {count} samples, the shards "
                                 f"hold {rows['codes'].shape[0]}")
    return Checkpoint(saved["phase"], state, rows, dict(saved.get("stats") or {})), record


def checkpoint_record(problem, cfg) -> dict:
    """What ``run.json`` records: the run's settings, the problem's description and its
    fingerprint (``feassample.rundir.fingerprint``)."""
    return {"sampler": cfg.record(), "problem": problem.config(), "fingerprint": fingerprint(problem)}
