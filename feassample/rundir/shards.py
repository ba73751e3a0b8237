"""One big job as ``shards`` independent jobs: each samples its share of ``n`` with its own seed,
and the union of their run directories (``feassample.rundir.merge``) is one sample of ``n``."""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np


def _whole(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def shard_plan(n: int, seed: int, shard: int, shards: int) -> tuple[int, int]:
    """``(n_i, seed_i)`` of shard ``shard`` of ``shards``: the ``n`` samples split as evenly as
    possible (the first ``n % shards`` shards take one more), and an independent seed for each
    shard drawn from ``numpy.random.SeedSequence([seed, shard, shards])`` (``shards = 1`` keeps
    ``seed``, so one shard is the unsharded run)."""
    n, seed, shard, shards = (_whole(k, v) for k, v in
                              (("n", n), ("seed", seed), ("shard", shard), ("shards", shards)))
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1} (shards={shards}), got {shard}")
    if n < shards:
        raise ValueError(f"n={n} samples cannot be split into {shards} shards")
    base, extra = divmod(n, shards)
    n_i = base + (1 if shard < extra else 0)
    if shards == 1:
        return n_i, seed
    state = np.random.SeedSequence([seed, shard, shards]).generate_state(1, dtype=np.uint32)[0]
    return n_i, int(state >> 1)


@dataclass(frozen=True)
class Shard:
    """Shard ``shard`` of ``shards`` of a job of ``n_total`` samples with seed ``base_seed``,
    which samples with ``seed`` (``shard_plan``); recorded as ``config["shard"]``."""

    shard: int
    shards: int
    n_total: int
    base_seed: int
    seed: int

    @classmethod
    def plan(cls, n: int, seed: int, shard: int, shards: int) -> "Shard":
        """The shard of a job of ``n`` samples with seed ``seed`` (checked by ``shard_plan``)."""
        own_seed = shard_plan(n, seed, shard, shards)[1]
        return cls(int(shard), int(shards), int(n), int(seed), own_seed)

    @property
    def n(self) -> int:
        """This shard's share of ``n_total``."""
        return shard_plan(self.n_total, self.base_seed, self.shard, self.shards)[0]

    def record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> "Shard":
        return cls(**{f.name: int(record[f.name]) for f in fields(cls)})


def asked_shard(n: int, seed: int, k: int, shard: Optional[int], shards: Optional[int]) -> Optional[Shard]:
    """The shard a call asks for (``None`` without ``shard=``/``shards=``), refused before any
    work when only one is given or when this shard would get fewer samples than ``k`` walkers."""
    if shard is None and shards is None:
        return None
    if shard is None or shards is None:
        raise ValueError("give both shard= and shards= (this job's index and the number of jobs)")
    plan = Shard.plan(n, seed, shard, shards)
    if k > plan.n:
        raise ValueError(f"shard {shard} of {shards} gets n={plan.n} samples, fewer than k={k} walkers: "
                         "lower k or shards")
    return plan


def resumed_shard(resume: Path, saved: dict, asked: Optional[Shard]) -> Optional[Shard]:
    """The shard a run directory was (``None``: not a shard); a resume keeps it, and is refused
    when it asks for another shard or for a shard of a run that was none."""
    plan = saved.get("shard")
    if asked is None and plan is None:
        return None
    if plan is None or (asked is not None and (asked.shard, asked.shards) != (plan["shard"], plan["shards"])):
        was = "not a shard" if plan is None else f"shard {plan['shard']} of {plan['shards']}"
        raise ValueError(f"resume={str(resume)!r} was {was}"
                         f"{'' if asked is None else f', not shard {asked.shard} of {asked.shards}'}")
    return Shard.from_record(plan)


__all__ = ["shard_plan", "Shard", "asked_shard", "resumed_shard"]
