"""Crash-safe runs: accepted samples reach disk as they are accepted, and a run resumes from its
saved sampler state.

Layout of a run directory::

    RUN/checkpoint/sampler.json      the SamplerConfig and the problem's description
    RUN/checkpoint/seed.pt           the seeding state (while seeding)
    RUN/checkpoint/walk.pt           the walkers, multipliers, optimizer moments, pool sums, counters
    RUN/checkpoint/walk.json         the seeding phase's statistics
    RUN/checkpoint/shards/NNNNNN.pt  accepted samples, append-only, one file per round with news
    RUN/samples/                     the final SampleSet

Every file is written to a temporary name, fsynced and renamed, so a ``kill -9`` leaves either
the old or the new version: at most the round in progress is lost. Everything is loaded with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Optional

import torch

from .core.diversity import PoolStats
from .core.result import atomic_write_bytes
from .core.samplers.common import Moments
from .core.samplers.seeds import SeedState
from .core.samplers.walk import WalkState
from .core.samplers.cover import CoverState

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


def _flatten(state) -> dict:
    out: dict[str, Any] = {}
    for f in fields(state):
        value = getattr(state, f.name)
        if isinstance(value, Moments):
            out.update({f"{f.name}.first": value.first, f"{f.name}.second": value.second,
                        f"{f.name}.count": value.count})
        elif isinstance(value, PoolStats):
            out.update({f"{f.name}.count": value.count, f"{f.name}.total": value.total,
                        f"{f.name}.sq_norms": value.sq_norms})
        else:
            out[f.name] = value
    return out


def _unflatten(cls, data: dict):
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f"{f.name}.first" in data:
            kwargs[f.name] = Moments(data[f"{f.name}.first"], data[f"{f.name}.second"],
                                     data[f"{f.name}.count"])
        elif f"{f.name}.total" in data:
            kwargs[f.name] = PoolStats(data[f"{f.name}.count"], data[f"{f.name}.total"],
                                       data[f"{f.name}.sq_norms"])
        elif f.name in data:
            kwargs[f.name] = data[f.name]
    return cls(**kwargs)


def _save(path: Path, obj) -> None:
    atomic_write_bytes(path, lambda fh: torch.save(obj, fh))


def _save_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, default=str)
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


class RunWriter:
    """A callback that keeps a run directory up to date while the sampler runs.

    Args:
        run_dir: the run directory (created).
        config: the sampler's settings (JSON-able) and the problem's description.
        seed_every_s: how often the seeding state is written (seconds; it is also written when
            seeding ends). The walk is written after every round.
    """

    def __init__(self, run_dir: str | Path, config: dict, seed_every_s: float = 2.0) -> None:
        self.dir = Path(run_dir) / CHECKPOINT
        self.shards = self.dir / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        self.seed_every_s = seed_every_s
        self._last_seed_write = 0.0
        # A resumed run calls the writer with "walk_rebase" first, which rewrites the shards.
        self._written, self._next_shard = 0, 0
        _save_json(self.dir / "sampler.json", config)

    def __call__(self, phase: str, state) -> None:
        if phase in ("seed", "seed_final"):
            now = time.monotonic()
            if phase == "seed_final" or now - self._last_seed_write >= self.seed_every_s:
                _save(self.dir / "seed.pt", _flatten(state))
                self._last_seed_write = now
        elif phase == "walk_start":
            wstate, stats = state
            _save_json(self.dir / "walk.json", stats)
            self._write_walk(wstate)
            seed_file = self.dir / "seed.pt"
            if seed_file.exists():
                seed_file.unlink()
        elif phase == "walk":
            self._write_walk(state)
        elif phase == "walk_rebase":
            self._clear_shards()
            self._write_walk(state)
        elif phase in ("cover_start", "cover", "cover_final"):
            if phase == "cover_start":
                seed_file = self.dir / "seed.pt"
                if seed_file.exists():
                    seed_file.unlink()
            self._write_cover(state)
        elif phase == "cover_rebase":
            self._clear_shards()
            self._write_cover(state)

    def _clear_shards(self) -> None:
        for f in self.shards.glob("*.pt"):
            f.unlink()
        self._written, self._next_shard = 0, 0

    def _write_shard(self, rows: dict) -> None:
        _save(self.shards / f"{self._next_shard:06d}.pt", rows)
        self._next_shard += 1

    def _write_cover(self, state: CoverState) -> None:
        if state.accepted > self._written:
            a, b = self._written, state.accepted
            self._write_shard({"codes": state.sample_codes[a:b].detach().cpu(),
                               "values": state.sample_values[a:b].detach().cpu()})
            self._written = b
        walkers = {f.name: getattr(state, f.name) for f in fields(state)
                   if not f.name.startswith("sample_")}
        _save(self.dir / "cover.pt", walkers)

    def _write_walk(self, state: WalkState) -> None:
        if state.accepted > self._written:
            a, b = self._written, state.accepted
            self._write_shard({"codes": state.sample_codes[a:b].detach().cpu(),
                               "values": state.sample_values[a:b].detach().cpu(),
                               "embedding": state.sample_embedding[a:b].detach().cpu()})
            self._written = b
        walkers = {k: v for k, v in _flatten(state).items() if not k.startswith("sample_")}
        _save(self.dir / "walk.pt", walkers)


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a resumable checkpoint."""
    d = Path(run_dir) / CHECKPOINT
    return (d / "sampler.json").is_file() and any((d / f).is_file() for f in ("walk.pt", "cover.pt", "seed.pt"))


def load_checkpoint(run_dir: str | Path, device: Optional[torch.device] = None) -> tuple[dict, dict]:
    """``(resume_state, saved_config)`` of a run directory written by ``RunWriter``.

    The walk's samples are rebuilt from the shards up to the count recorded in ``walk.pt``
    (a shard written just before a crash, whose state write was lost, is ignored).
    """
    d = Path(run_dir) / CHECKPOINT
    if not (d / "sampler.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume ({d / 'sampler.json'} is missing)")
    config = json.loads((d / "sampler.json").read_text())
    device = device or torch.device("cpu")

    def load(path: Path) -> dict:
        return torch.load(path, map_location=device, weights_only=True)

    def samples(count: int, keys) -> dict:
        parts = [load(f) for f in sorted((d / "shards").glob("*.pt"))]
        if count and not parts:
            raise FileNotFoundError(f"{d / 'shards'} has no samples but the state says {count}")
        out = {f"sample_{k}": torch.cat([p[k] for p in parts])[:count] for k in keys} if parts else {}
        if parts and out["sample_codes"].shape[0] < count:
            raise ValueError(f"{d} is inconsistent: the state counts {count} samples, the shards "
                             f"hold {out['sample_codes'].shape[0]}")
        return out

    if (d / "cover.pt").is_file():
        walkers = load(d / "cover.pt")
        accepted = int(walkers["accepted"])
        rows = samples(accepted, ("codes", "values"))
        if not rows:
            dim, m = walkers["codes"].shape[1], walkers["values"].shape[1]
            rows = {"sample_codes": walkers["codes"].new_zeros(0, dim),
                    "sample_values": walkers["values"].new_zeros(0, m)}
        return {"phase": "cover", "cover": CoverState(**walkers, **rows)}, config
    if (d / "walk.pt").is_file():
        walkers = load(d / "walk.pt")
        walkers.update(samples(int(walkers["accepted"]), ("codes", "values", "embedding")))
        state = _unflatten(WalkState, walkers)
        stats = json.loads((d / "walk.json").read_text()) if (d / "walk.json").is_file() else {}
        return {"phase": "walk", "walk": state, "stats": stats}, config
    return {"phase": "seed", "seed": _unflatten(SeedState, load(d / "seed.pt"))}, config


def checkpoint_config(problem, cfg) -> dict:
    """What ``sampler.json`` records: the sampler's fields and the problem's description."""
    sampler = {k: v for k, v in asdict(cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}
    return {"sampler": sampler, "problem": problem.config()}
