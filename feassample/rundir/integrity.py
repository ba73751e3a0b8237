"""Run directories that cannot be turned against their user: no link followed, no file deleted
that the run did not write, and a SHA-256 digest of every file it wrote.

* ``run_dir_path`` refuses an empty ``run_dir`` (it would be the current directory) and one that
  exists but is no folder, before any work.
* ``inside(run_dir, *parts)`` is the only way to a path below a run directory: every component
  below ``run_dir`` is checked with ``lstat`` and a symbolic link (or a file where a folder is
  needed) is refused, naming it; files are read with ``O_NOFOLLOW``.
* The manifest ``RUN/checkpoint/manifest.jsonl`` lists the run's own files (paths relative to the
  run directory) with their SHA-256 digests. A file is entered *before* it is written, keeping the
  previous digest beside the new one, so a kill at any point leaves every file matching one of
  its listed digests. A file is deleted only when the manifest lists it (``ours``); a read checks
  the bytes read against the manifest before ``torch.load(weights_only=True)`` sees them.

The digests detect corruption, truncation and files copied from another run; they are not a
signature: whoever can write the run directory can rewrite the manifest too (see
``docs/reliability.md``, "Threat model").
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Optional

import torch

from ..core.result import atomic_write_bytes

CHECKPOINT = "checkpoint"
MANIFEST = "manifest.jsonl"
#: the only paths a manifest may list (relative to the run directory): anything else in it is
#: ignored, so a manifest line can never name a file elsewhere to be read or deleted
LISTED = re.compile(r"^checkpoint/(run\.json|state\.pt|shards/\d{6}\.pt)$")


class UnsafeRunDirectory(ValueError):
    """A run directory holds a link, or a file where a folder belongs: refused, never followed."""


def run_dir_path(run_dir, name: str = "run_dir") -> Path:
    """``run_dir`` as a ``Path``, refused when empty or when it exists and is not a folder."""
    text = os.fspath(run_dir)
    if not str(text).strip():
        raise ValueError(f"{name}={text!r} is empty: name a folder for the run (e.g. {name}=runs/first); "
                         "an empty name would write into the current directory")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={str(text)!r} exists and is not a folder")
    return path


def inside(run_dir: Path, *parts: str, folder: bool = False, create: bool = False) -> Path:
    """``run_dir/parts...`` after checking that no component below ``run_dir`` is a symbolic link
    and every one but the last (all of them with ``folder=True``) is a folder; ``create=True``
    makes the missing folders."""
    path = Path(run_dir)
    for i, part in enumerate(parts):
        path = path / part
        last = i == len(parts) - 1
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            if create and (not last or folder):
                try:
                    os.mkdir(path)
                except FileExistsError:  # made meanwhile: check it like any other
                    mode = os.lstat(path).st_mode
                else:
                    continue
            else:
                return Path(run_dir).joinpath(*parts)
        if stat.S_ISLNK(mode):
            raise UnsafeRunDirectory(f"{path} is a symbolic link: feassample follows no link inside a run "
                                     f"directory (remove it, or use another run_dir)")
        if (not last or folder) and not stat.S_ISDIR(mode):
            raise UnsafeRunDirectory(f"{path} is not a folder: a run directory keeps its own layout there "
                                     f"(move it away, or use another run_dir)")
    return path


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file, opened without following a link (``O_NOFOLLOW``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafeRunDirectory(f"{path} is a symbolic link: feassample follows no link inside a "
                                     "run directory") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise UnsafeRunDirectory(f"{path} is not a regular file")
        return fh.read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Manifest:
    """The run's own files and their digests (``RUN/checkpoint/manifest.jsonl``).

    Append-only, one JSON line per write (``{"path": ..., "sha256": ...}``) or deletion
    (``{"path": ..., "deleted": true}``), fsynced before the file itself is written, so a write
    costs the same however many files the run holds; ``compact`` rewrites it (atomically) with
    the live entries. A line cut by a kill is ignored: the write it announced never began."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = inside(self.run_dir, CHECKPOINT, MANIFEST)
        self.files: dict[str, list[str]] = {}
        if self.path.exists():
            for line in read_bytes(self.path).decode(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    key = str(entry["path"])
                except (ValueError, KeyError, TypeError):
                    continue
                if not LISTED.match(key):
                    continue
                if entry.get("deleted"):
                    self.files.pop(key, None)
                elif isinstance(entry.get("sha256"), str):
                    self.files[key] = [entry["sha256"]] + self.files.get(key, [])[:1]

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def key(self, path: Path) -> str:
        """``path`` relative to the run directory, refused unless it is one of the run's own
        names (``LISTED``)."""
        key = Path(path).relative_to(self.run_dir).as_posix()
        if not LISTED.match(key):
            raise ValueError(f"{path} is not a file of a run directory's checkpoint")
        return key

    def ours(self, path: Path) -> bool:
        """Whether the run wrote ``path`` (the manifest lists it)."""
        try:
            return self.key(path) in self.files
        except ValueError:
            return False

    def _append(self, entry: dict) -> None:
        inside(self.run_dir, CHECKPOINT, MANIFEST, create=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def compact(self) -> None:
        """Rewrite the manifest with its live entries only (an atomic rename)."""
        lines = "".join(json.dumps({"path": key, "sha256": d}, sort_keys=True) + "\n"
                        for key, digests in sorted(self.files.items()) for d in reversed(digests))
        atomic_write_bytes(inside(self.run_dir, CHECKPOINT, MANIFEST, create=True),
                           lambda fh: fh.write(lines.encode()))

    def write(self, path: Path, data: bytes) -> None:
        """Enter ``data``'s digest for ``path`` (the previous one stays valid), then write it."""
        key = self.key(path)
        digest = sha256(data)
        self._append({"path": key, "sha256": digest})
        self.files[key] = [digest] + self.files.get(key, [])[:1]
        atomic_write_bytes(inside(self.run_dir, *Path(key).parts, create=True), lambda fh: fh.write(data))

    def forget(self, paths) -> None:
        """Delete the files among ``paths`` that the manifest lists (never one the run did not
        write); the others stay where they are."""
        for path in paths:
            if self.ours(path):
                inside(self.run_dir, *Path(self.key(path)).parts).unlink(missing_ok=True)
                self._append({"path": self.key(path), "deleted": True})
                del self.files[self.key(path)]

    def read(self, path: Path) -> bytes:
        """``path``'s bytes, refused (naming it) unless they match a digest the manifest lists."""
        data = read_bytes(path)
        listed = self.files.get(self.key(path))
        if listed is None:
            raise ValueError(f"{path} is not a readable feassample checkpoint file (this run did not "
                             f"write it: {self.path.name} does not list it); move it away")
        if sha256(data) not in listed:
            raise ValueError(f"{path} is not a readable feassample checkpoint file (its SHA-256 differs "
                             f"from the one in {self.path}: corrupt, truncated or copied from another "
                             "run); move it away or start a new run")
        return data


def save_tensors(manifest: Manifest, path: Path, obj) -> None:
    """``torch.save(obj)`` into ``path`` through the manifest."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    manifest.write(path, buffer.getvalue())


def load_tensors(manifest: Optional[Manifest], path: Path, device="cpu"):
    """A file written by ``save_tensors``, checked against the manifest, loaded with
    ``weights_only=True``; a truncated or foreign file is one ``ValueError`` naming it."""
    data = manifest.read(path) if manifest is not None else read_bytes(path)
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as err:  # truncated, empty or foreign file: name it, do not crash deep inside
        raise ValueError(f"{path} is not a readable feassample checkpoint file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'empty'}); move it away or "
                         "start a new run") from None


__all__ = ["UnsafeRunDirectory", "run_dir_path", "inside", "read_bytes", "sha256", "Manifest",
           "save_tensors", "load_tensors", "CHECKPOINT", "MANIFEST"]
