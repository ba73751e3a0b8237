"""Crash-safe runs: accepted samples reach disk as they are accepted, and a run resumes from its
saved sampler state. ``RunWriter`` is the core driver's ``Store``; it knows no sampler.

Layout of a run directory::

    RUN/checkpoint/run.json          the run's settings (SamplerConfig.record()) and the problem
    RUN/checkpoint/state.pt          {"phase": name, "state": the phase's state_dict(), "stats": ...}
    RUN/checkpoint/shards/NNNNNN.pt  accepted rows, append-only: exactly the rows of one write
    RUN/checkpoint/manifest.jsonl    the run's own files and their SHA-256 digests
    RUN/samples/                     the final SampleSet (written aside, then renamed in place)

Every file is written to a temporary name, fsynced and renamed, so a ``kill -9`` leaves either
the old or the new version; the driver saves rows and state together at most every
``core.driver.checkpoint.ROWS_EVERY_S`` (and at a phase's end and on a signal), so a kill loses at
most that much work, repeated identically on resume. Shards are written before the
state that counts them; rows beyond the state's count (a shard whose state write was lost) are
trimmed on resume by rewriting that shard (write new, fsync, rename: nothing is deleted before
its replacement is durable). Only regular files named ``NNNNNN.pt`` are read as shards; stray,
symlinked and temporary files are ignored, and temporaries of killed writes are removed on open.
Every path is reached through ``feassample.rundir.integrity.inside`` (no link followed), every file
is entered in the manifest before it is written and checked against it when read (a shard the
manifest does not list is refused, naming it), and only files the manifest lists are ever deleted.
Everything is loaded with ``torch.load(weights_only=True)``. The lock is ``feassample.rundir.lock``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Optional

import torch

from ..core.driver import Checkpoint
from ..core.result import META, TENSORS
from .fingerprint import fingerprint
from .integrity import CHECKPOINT, MANIFEST, Manifest, inside, load_tensors, save_tensors

log = logging.getLogger(__name__)

SHARD = re.compile(r"^\d{6}\.pt$")
#: the temporaries of our own atomic writes (``.NAME.XXXXXXXX``): the only dotfiles ever removed
TEMPORARY = re.compile(r"^\.(run\.json|state\.pt|manifest\.jsonl|\d{6}\.pt|samples\.pt|sampleset\.json)"
                       r"\.[A-Za-z0-9_]+$")
SAMPLES = "samples"
#: where the final SampleSet is written before it is renamed to ``samples/``
NEW_SAMPLES, OLD_SAMPLES = ".samples.new", ".samples.old"


def _run_dir_of(path: Path) -> Path:
    """The run directory above ``RUN/checkpoint/...``."""
    for parent in Path(path).parents:
        if parent.name == CHECKPOINT:
            return parent.parent
    raise ValueError(f"{path} is not inside a run directory's {CHECKPOINT}/")


#: the manifest of each run directory a ``RunWriter`` of this process writes (one writer per
#: directory: the lock), so a write appends one line instead of reading the manifest again
_WRITING: dict[Path, Manifest] = {}


def _manifest(path: Path) -> Manifest:
    run_dir = _run_dir_of(path)
    return _WRITING.get(run_dir) or Manifest(run_dir)


def _save(path: Path, obj) -> None:
    save_tensors(_manifest(path), path, obj)


def _save_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, default=str)
    _manifest(path).write(path, text.encode())


def _load(path: Path, device="cpu", manifest: Optional[Manifest] = None) -> dict:
    return load_tensors(manifest or _manifest(path), path, device)


def shard_files(folder: Path) -> list[Path]:
    """The shard files of a run, in order: regular files named ``NNNNNN.pt`` (no links)."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(p for p in folder.iterdir() if SHARD.match(p.name) and p.is_file() and not p.is_symlink())


def _clean_temporaries(folder: Path) -> None:
    """Remove the temporary files of our own writes that a kill interrupted (``.NAME.XXXX`` for
    the run's file names only: any other dotfile is the user's and stays)."""
    if folder.is_dir() and not folder.is_symlink():
        for p in folder.iterdir():
            if TEMPORARY.match(p.name) and p.is_file() and not p.is_symlink():
                p.unlink()


class RunWriter:
    """The driver's ``Store`` for a run directory (see the module docstring).

    Args:
        run_dir: the run directory (created).
        record: the run's settings and the problem's description (``run.json``).
        written: rows already in the shards (a resumed run: ``load_checkpoint``'s count).
    """

    def __init__(self, run_dir: str | Path, record: dict, written: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.dir = inside(self.run_dir, CHECKPOINT, folder=True, create=True)
        self.shards = inside(self.run_dir, CHECKPOINT, "shards", folder=True, create=True)
        inside(self.run_dir, SAMPLES, folder=True)  # refused now, not after the run
        _clean_temporaries(self.dir)
        _clean_temporaries(self.shards)
        manifest = Manifest(self.run_dir)
        if manifest.exists:
            manifest.compact()
        _WRITING[self.run_dir] = self.manifest = manifest
        self.written = 0
        self._next_shard = 0
        self._trim_to(written)
        _save_json(self.dir / "run.json", record)

    def _trim_to(self, count: int) -> None:
        """Keep exactly ``count`` rows in the shards (rewrite the shard that crosses it)."""
        total = 0
        manifest = self.manifest
        for f in shard_files(self.shards):
            if not manifest.ours(f):
                raise ValueError(f"{f} is not a readable feassample checkpoint file (this run did not "
                                 "write it: the manifest does not list it); move it away")
            rows = _load(f, manifest=manifest)
            size = int(rows["codes"].shape[0])
            if total >= count and size:
                manifest.forget([f])  # rows past the saved state: never counted, never loaded
                continue
            if total + size > count:
                _save(f, {k: v[: count - total].clone() for k, v in rows.items()})
                size = count - total
            total += size
            self._next_shard = int(f.name[:6]) + 1
        if total < count:
            raise ValueError(f"{self.shards} holds {total} rows but the state counts {count}")
        self.written = count

    def close(self) -> None:
        """Stop writing (the manifest is read from disk again by the next writer)."""
        _WRITING.pop(self.run_dir, None)

    # the Store protocol ------------------------------------------------------------------------
    def append(self, rows: dict) -> None:
        _save(inside(self.run_dir, CHECKPOINT, "shards", f"{self._next_shard:06d}.pt"), rows)
        self._next_shard += 1
        self.written += int(rows["codes"].shape[0])

    def trim(self, count: int) -> None:
        self._trim_to(count)

    def save_state(self, phase: str, state: dict, stats: dict, rows: Optional[int]) -> None:
        _save(inside(self.run_dir, CHECKPOINT, "state.pt"),
              {"phase": phase, "state": state, "stats": _plain(stats), "rows": rows})


def _plain(stats: dict) -> dict:
    """Statistics as plain values (what ``weights_only`` loading accepts)."""
    return json.loads(json.dumps(stats, default=str))


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` already holds a run: a saved state or saved samples (a run killed
    before its first state holds nothing to lose: it is started again)."""
    d = Path(run_dir)
    return has_checkpoint(d) or os.path.lexists(d / SAMPLES)


def _remove_samples(folder: Path) -> None:
    """Remove a SampleSet folder written by the run (its two files, then the folder if empty)."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for name in (TENSORS, META):
        p = folder / name
        if p.is_file() and not p.is_symlink():
            p.unlink()
    _clean_temporaries(folder)
    try:
        folder.rmdir()
    except OSError:  # the user's own files are there: keep them, and the folder
        log.warning("%s holds files feassample did not write: kept", folder)


def clear_run(run_dir: str | Path) -> None:
    """Remove a run's own files (``overwrite=True``): those the manifest lists and the saved
    samples; any other file stays, and the lock file too."""
    d = Path(run_dir)
    inside(d, SAMPLES, folder=True)
    inside(d, CHECKPOINT, "shards", folder=True)
    manifest = Manifest(d)
    _remove_samples(d / SAMPLES)
    manifest.forget([d / key for key in list(manifest.files)])
    shards = d / CHECKPOINT / "shards"
    if shards.is_dir() and not shards.is_symlink() and not any(shards.iterdir()):
        shards.rmdir()


def drop_checkpoint(run_dir: str | Path) -> int:
    """Remove a finished run's checkpoint files (``keep_checkpoint=False``): only the files its
    manifest lists, then the manifest and the empty folders; a file the run did not write stays
    (and keeps its folder). Returns the bytes freed."""
    d = Path(run_dir)
    inside(d, CHECKPOINT, "shards", folder=True)
    manifest = Manifest(d)
    paths = [d / key for key in list(manifest.files)]
    freed = sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())
    manifest.forget(paths)
    record = inside(d, CHECKPOINT, MANIFEST)
    if record.is_file() and not record.is_symlink():
        freed += record.stat().st_size
        record.unlink()
    for folder in (d / CHECKPOINT / "shards", d / CHECKPOINT):
        if folder.is_dir() and not folder.is_symlink():
            _clean_temporaries(folder)
            try:
                folder.rmdir()
            except OSError:  # the user's own files (or the lock of a run still holding it)
                pass
    return freed


def save_samples(run_dir: str | Path, result) -> Path:
    """Write the final ``SampleSet`` as ``RUN/samples``, complete or not at all: it is saved into
    ``RUN/.samples.new``, then renamed into place (an older ``samples/`` is moved aside first and
    removed after), so a kill leaves either the old samples, the new ones, or none."""
    d = Path(run_dir)
    target, new, old = (inside(d, name, folder=True) for name in (SAMPLES, NEW_SAMPLES, OLD_SAMPLES))
    for leftover in (new, old):
        _remove_samples(leftover)
    result.save(new)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    _remove_samples(old)
    return target


def has_run_record(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run's ``run.json`` (a checkpoint, or a run killed before its
    first state)."""
    return (Path(run_dir) / CHECKPOINT / "run.json").is_file()


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a resumable checkpoint."""
    d = Path(run_dir) / CHECKPOINT
    return (d / "run.json").is_file() and (d / "state.pt").is_file()


def load_checkpoint(run_dir: str | Path, device: Optional[torch.device] = None
                    ) -> tuple[Optional[Checkpoint], dict]:
    """``(checkpoint, saved record)`` of a run directory written by ``RunWriter``: the phase,
    its state dict, the accepted rows (up to the state's count) and the earlier phases' stats.
    A run killed before its first state gives ``(None, record)``: it starts again with its saved
    settings. Every file is checked against the manifest (``feassample.rundir.integrity``)."""
    run_dir = Path(run_dir)
    d = inside(run_dir, CHECKPOINT, folder=True)
    inside(run_dir, CHECKPOINT, "shards")
    if not has_run_record(run_dir):
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume (expected {d / 'run.json'} "
                                f"and {d / 'state.pt'}, written by run_dir=...)")
    manifest = Manifest(run_dir)
    if not manifest.exists:
        raise ValueError(f"{d} has no manifest ({d / 'manifest.jsonl'}): its files cannot be checked "
                         "(written by an older feassample, or not by feassample); start a new run_dir")
    try:
        record = json.loads(manifest.read(d / "run.json"))
    except UnicodeDecodeError:
        raise ValueError(f"{d / 'run.json'} is not a feassample run record") from None
    if not (d / "state.pt").is_file():
        return None, record
    device = device or torch.device("cpu")
    saved = _load(inside(run_dir, CHECKPOINT, "state.pt"), device, manifest)
    if not isinstance(saved, dict) or not {"phase", "state"} <= set(saved):
        raise ValueError(f"{d / 'state.pt'} is not a feassample state file")
    state, count, rows = saved["state"], saved.get("rows"), None
    if count is not None:
        files = [f for f in shard_files(d / "shards")]
        parts = [_load(f, device, manifest) for f in files]
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
