"""``SampleSet``: the samples, their certificates and how they were obtained."""
from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

TENSORS = "samples.pt"
META = "sampleset.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class DiskFull(OSError):
    """A write ran out of space; the files written before it are intact (atomic writes)."""


def atomic_write_bytes(path: Path, write) -> None:
    """Write a file through a temporary file in the same folder and an atomic rename.

    The content is produced in memory first (so its size is known), then written, fsynced and
    renamed: a crash or a full disk leaves the previous version of ``path``. A full disk raises
    ``DiskFull`` with one line naming the folder and the bytes needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write(buffer)
    data = buffer.getbuffer()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(err.errno, f"disk full: writing {path.name} needs {len(data):,} bytes in "
                           f"{path.parent}; free space there or choose another directory (the files "
                           "already written are intact: resume= continues from them)") from None
        raise


@dataclass
class SampleSet:
    """The result of ``fs.sample``.

    Attributes:
        x: ``(n, *input_shape)`` decoded inputs.
        codes: ``(n, *code_shape)`` codes.
        values: ``(n, m)`` constraint values from the independent check.
        feasible: ``(n,)`` bool, from the independent check (not from the optimizer).
        stats: ``seed_steps``, ``walk_steps``, ``model_evals``, ``wall_s``, ``status``
            (``"success"``, ``"partial"`` or ``"infeasible"``), ``message`` and more.
        config: the problem's and the sampler's settings.
    """

    x: Tensor
    codes: Tensor
    values: Tensor
    feasible: Tensor
    stats: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def status(self) -> str:
        """``"success"``, ``"partial"`` or ``"infeasible"``."""
        return str(self.stats.get("status", "unknown"))

    def summary(self) -> str:
        """One line: status, count, feasible fraction, steps and evaluations; for multi-walker
        runs the convergence diagnostics (R-hat, ESS, duplicates, mixed or not); and the set's prior
        probability ``log_prob`` with its standard error, where the method estimates it."""
        frac = float(self.feasible.float().mean()) if len(self) else 0.0
        s = self.stats
        walk = "rounds" if "smc_mode" in s else "walk steps"  # smc: rounds of moves, or of prior draws
        steps = "".join(f"{label} {s[key]}, " for key, label in
                        (("seed_steps", "seed steps"), ("walk_steps", walk)) if key in s)
        line = (f"{self.status}: {len(self)} samples, {100 * frac:.1f}% certified feasible; "
                f"{steps}model evals {s.get('model_evals')}, {s.get('wall_s', 0):.2f} s")
        if "mixed" in s:  # the convergence diagnostics of a multi-walker run
            diag = s.get("diagnostics") or {}
            independent = s.get("smc_mode") == "rejection"
            if independent:  # smc's rejection mode: exact independent draws, nothing to diagnose
                line += (f"; independent draws of the prior (rejection, {100 * s.get('acceptance', 0):.3g}% "
                         f"accepted), {s.get('duplicates', 0)} duplicates")
            elif s["mixed"] is None:
                line += (f"; diagnostics skipped ({diag.get('skipped', 'too few rows')}), "
                         f"{s.get('duplicates', 0)} duplicates")
            else:
                over = (f" over {diag.get('chains')} ancestral families"
                        if diag.get("chains_by") == "ancestor" else "")
                line += (f"; R-hat max {s['rhat_max']:.3g}{over}, ESS bulk min {s['ess_bulk_min']:.0f}, "
                         f"tail min {s['ess_tail_min']:.0f}, {s['duplicates']} duplicates, "
                         + ("mixed" if s["mixed"] else f"NOT MIXED ({diag.get('worst')})"))
            if "effective_ancestors" in diag and not independent:  # population methods
                line += (f", {diag['distinct_ancestors']} distinct ancestors "
                         f"(effective {diag['effective_ancestors']:.0f})")
        if "budget_rounds" in s:  # cover's budget="auto"
            thin = f", thin {s['thin']}" if s.get("thin") is not None else ""
            line += f"; budget auto: {s['budget_rounds']} pass(es){thin}, stopped: {s.get('budget_stop')}"
        if isinstance(s.get("log_prob"), (int, float)) and math.isfinite(s["log_prob"]):
            line += f"; log P(set) {s['log_prob']:.4g} ± {s.get('log_prob_se', math.nan):.2g} under the prior"
        return line

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``samples.pt`` (tensors) and ``sampleset.json`` (stats, config) into a folder."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"cannot save a SampleSet to {folder}: it exists and is not a folder")
        tensors = {"x": self.x.detach().cpu(), "codes": self.codes.detach().cpu(),
                   "values": self.values.detach().cpu(), "feasible": self.feasible.detach().cpu()}
        atomic_write_bytes(folder / TENSORS, lambda fh: torch.save(tensors, fh))
        meta = json.dumps({"stats": _jsonable(self.stats), "config": _jsonable(self.config)}, indent=2)
        atomic_write_bytes(folder / META, lambda fh: fh.write(meta.encode()))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SampleSet":
        """Read a folder written by ``save`` (tensors only: ``weights_only=True``)."""
        folder = Path(path)
        if not (folder / TENSORS).is_file() or not (folder / META).is_file():
            raise FileNotFoundError(f"{folder} is not a saved SampleSet (needs {TENSORS} and {META})")
        tensors = torch.load(folder / TENSORS, map_location="cpu", weights_only=True)
        meta = json.loads((folder / META).read_text())
        return cls(tensors["x"], tensors["codes"], tensors["values"], tensors["feasible"],
                   meta.get("stats", {}), meta.get("config", {}))
