"""``SampleSet``: the samples, their certificates and how they were obtained."""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from . import diagnostics as _diagnostics

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
    """The result of ``fs.sample``: samples, their certificates, and fields that mean the same for
    every method (scipy's ``OptimizeResult`` is the model).

    Attributes:
        x: ``(n, *input_shape)`` decoded inputs.
        codes: ``(n, *code_shape)`` codes.
        values: ``(n, m)`` constraint values from the independent check.
        feasible: ``(n,)`` bool, from the independent check (not from the optimizer).
        stats: the run's record; the stable fields below read it, and every other key is a
            method's own extra (``stats["particles"]`` of ``smc``, ``stats["thin"]`` of ``cover``...).
        config: the problem's and the sampler's settings.

    Stable fields (properties), one meaning for every method:
        status: ``"success"`` (``n`` rows certified), ``"partial"`` (some), ``"infeasible"``
            (none; the closest iterates are returned where a method has them) or
            ``"interrupted"`` (a signal; resume to continue).
        message: one line saying why, from the certificate.
        n_evals: the method's model evaluations (seed phase, moves, levels: one per code
            evaluated, gradients included); ``stats["evals"]`` has it as ``"model"`` beside
            ``"check"`` (the certificate's passes), ``"diagnostic"`` (the diagnostics' forward
            passes) and ``"vjp"`` (vector-Jacobian products, where a method counts them).
        max_violation: the largest band violation of a returned row (0 when every row is inside
            the band; at most the tolerance for a certified row), ``None`` with no row.
        log_prob, log_prob_se: ``log P(set)`` under the problem's prior and its standard error,
            ``None`` where the method does not estimate it.
        diagnostics: R-hat, ESS (with the rows and chains they used), ``duplicates``, ``mixed``
            (``True``/``False``, ``None`` when skipped, with ``skipped`` saying why; ``independent``
            for independent draws), ``None`` for a method without chains.
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
        """``"success"``, ``"partial"``, ``"infeasible"`` or ``"interrupted"``."""
        return str(self.stats.get("status", "unknown"))

    @property
    def message(self) -> str:
        """One line: the status and why."""
        return str(self.stats.get("message", ""))

    @property
    def n_evals(self) -> int:
        """The method's model evaluations (``stats["evals"]["model"]``)."""
        return int((self.stats.get("evals") or {}).get("model", 0))

    @property
    def max_violation(self) -> Optional[float]:
        """The largest band violation of a returned row (``None`` with no row)."""
        return self.stats.get("max_violation")

    @property
    def log_prob(self) -> Optional[float]:
        """``log P(set)`` under the prior, ``None`` where not estimated."""
        return self.stats.get("log_prob")

    @property
    def log_prob_se(self) -> Optional[float]:
        """The standard error of ``log_prob``, ``None`` where not estimated."""
        return self.stats.get("log_prob_se")

    @property
    def diagnostics(self) -> Optional[dict]:
        """The convergence diagnostics of the rows, ``None`` for a method without chains."""
        return self.stats.get("diagnostics")

    def summary(self) -> str:
        """One line from the stable fields: status, count, certified fraction, evaluations and
        time; the diagnostics (R-hat, ESS, duplicates, mixed or not; independent draws; skipped);
        the ``budget="auto"`` passes where a method made them; ``log P(set)`` where estimated."""
        frac = float(self.feasible.float().mean()) if len(self) else 0.0
        s = self.stats
        rounds = f"{s['rounds']} rounds, " if "rounds" in s else ""
        line = (f"{self.status}: {len(self)} samples, {100 * frac:.1f}% certified feasible; "
                f"{rounds}model evals {self.n_evals}, {s.get('wall_s', 0):.2f} s")
        diag = self.diagnostics
        if diag and diag.get("independent"):
            line += f"; independent draws, {diag.get('duplicates', 0)} duplicates"
        elif not diag or diag.get("mixed") is None:
            line += f"; mixing {_diagnostics.not_checked(diag)}"
            if diag:
                line += f", {diag.get('duplicates', 0)} duplicates"
        else:
            over = (f"{diag.get('chains')} ancestral families" if diag.get("chains_by") == "ancestor"
                    else f"{diag.get('chains')} walkers")
            rows = diag.get("ess_rows", (diag.get("chains") or 0) * (diag.get("draws") or 0))
            threshold = diag.get("rhat_threshold", (diag.get("thresholds") or {}).get("rhat_max", math.nan))
            line += (f"; R-hat max {diag['rhat_max']:.4g} against {threshold:.4g} "
                     f"(margin {threshold - diag['rhat_max']:+.2g}) over {over} x {diag.get('draws')} rows, "
                     f"ESS bulk min {diag['ess_bulk_min']:.0f}, tail min {diag['ess_tail_min']:.0f} "
                     f"of {rows} rows, {diag['duplicates']} duplicates, "
                     + ("mixed" if diag["mixed"] else f"NOT MIXED ({diag.get('worst')})"))
        if diag and "effective_ancestors" in diag and not diag.get("independent"):
            line += (f", returned rows from {diag['row_ancestors']} distinct ancestors "
                     f"(effective {diag['effective_ancestors']:.0f})")
        if "budget_rounds" in s:
            thin = f", thin {s['thin']}" if s.get("thin") is not None else ""
            stop = s.get("budget_stop")
            stop = "too few rows to check mixing" if stop == "no diagnostics" else stop
            line += f"; budget auto: {s['budget_rounds']} pass(es){thin}, stopped: {stop}"
        lp = self.log_prob
        if isinstance(lp, (int, float)) and math.isfinite(lp):
            line += f"; log P(set) {lp:.4g} ± {self.log_prob_se or math.nan:.2g} under the prior"
        return line

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``samples.pt`` (tensors) and ``sampleset.json`` (stats, config) into a folder."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"cannot save a SampleSet to {folder}: it exists and is not a folder")
        tensors = {"x": self.x.detach().cpu(), "codes": self.codes.detach().cpu(),
                   "values": self.values.detach().cpu(), "feasible": self.feasible.detach().cpu()}
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        data = buffer.getvalue()
        atomic_write_bytes(folder / TENSORS, lambda fh: fh.write(data))
        # the digest of samples.pt rides in sampleset.json, written last: a folder whose tensors
        # are not the ones saved with it (cut, flipped, copied) is refused by load
        meta = json.dumps({"stats": _jsonable(self.stats), "config": _jsonable(self.config),
                           "digests": {TENSORS: hashlib.sha256(data).hexdigest()}}, indent=2)
        atomic_write_bytes(folder / META, lambda fh: fh.write(meta.encode()))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike, *, require_digest: bool = False) -> "SampleSet":
        """Read a folder written by ``save`` (tensors only: ``weights_only=True``), checking
        ``samples.pt`` against the SHA-256 in ``sampleset.json`` (``require_digest=True``: a
        folder without one is refused too). A corrupt, truncated or foreign file is one
        ``ValueError`` naming it."""
        folder = Path(path)
        if not (folder / TENSORS).is_file() or not (folder / META).is_file():
            raise FileNotFoundError(f"{folder} is not a saved SampleSet (needs {TENSORS} and {META})")
        try:
            meta = json.loads((folder / META).read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{folder / META} is not a SampleSet record ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else 'empty'})") from None
        data = (folder / TENSORS).read_bytes()
        digest = (meta.get("digests") or {}).get(TENSORS)
        if digest is None and require_digest:
            raise ValueError(f"{folder / TENSORS} carries no digest in {META}: it cannot be checked")
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{folder / TENSORS} does not match the SHA-256 in {folder / META}: "
                             "corrupt, truncated or not the tensors saved with it")
        try:
            tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            columns = [tensors[k] for k in ("x", "codes", "values", "feasible")]
        except Exception as err:  # truncated or foreign: one line naming the file
            raise ValueError(f"{folder / TENSORS} is not a saved SampleSet's tensors ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else 'empty'})") from None
        rows = {k: int(t.shape[0]) if isinstance(t, torch.Tensor) and t.dim() else None
                for k, t in zip(("x", "codes", "values", "feasible"), columns)}
        if len(set(rows.values())) != 1 or None in rows.values():
            raise ValueError(f"path={str(folder)!r}: {TENSORS} is not one sample: its tensors x, codes, values, "
                             f"feasible have {', '.join(f'{k}: {v}' for k, v in rows.items())} rows")
        return cls(*columns, meta.get("stats", {}), meta.get("config", {}))
