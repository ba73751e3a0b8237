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
from typing import Any, NamedTuple, Optional

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


class RarityLevel(NamedTuple):
    """One row of ``SampleSet.rarity``: the prior probability of one level of a levels run.

    ``threshold``: with one constraint, the level's end in the constraint's own units facing the
    prior (``log_prob`` is then ``log P(h >= threshold)`` for ``side="above"``, ``log P(h <=
    threshold)`` for ``"below"``); with several, the level itself (the scaled distance: the
    largest violation over the constraints, each divided by its ``smc_scale``). ``lo``, ``hi``:
    the exact event of the row, per constraint: ``lo[j] <= h_j <= hi[j]`` (the band widened by
    ``tol + level * scale[j]`` on each side). ``level``: the level of the score (0: the band).
    """

    threshold: float
    log_prob: float
    log_prob_se: float
    level: float
    lo: tuple
    hi: tuple
    side: str


def _end(v) -> float:
    return float(v)  # JSON stores infinities as "inf" / "-inf"


def rarity_rows(stats: dict, bands: dict, side: str = "auto") -> Optional[list[RarityLevel]]:
    """The rarity curve of a run's ``stats`` and its problem's ``bands`` record (``lo``, ``hi``,
    ``tol``): one ``RarityLevel`` per stage of a levels run (``smc_levels``, ``smc_fractions``),
    the band itself for a rejection run, ``None`` for a method without levels.

    Stage ``i`` kept the particles with a score below its level ``L_i``, so ``log P(score < L_i)``
    is the running sum of the log survival fractions (Cérou et al. 2012; the final row is
    ``stats["log_prob"]``). Its variance is the running sum of the stages' variances
    (``stats["smc_variances"]`` where the run records them); else the stages' binomial variances
    ``(1 - p_i) / (p_i N)``, scaled by one factor so that the last row's SE is the run's own
    ``log_prob_se`` (which counts the correlation of the resampled copies; it can also come out
    a little below the binomial SE, 0.443 against 0.445 on one thin slab, and the curve must
    end at the run's own number). ``side``: ``"above"`` (the band lies above the prior's mass: the threshold
    is the lower end), ``"below"`` (the upper end) or ``"auto"`` (the finite end of a one-sided
    band; a two-sided band is taken to lie above the prior, the case of exciting a neuron)."""
    if side not in ("auto", "above", "below"):
        raise ValueError(f"side must be 'auto', 'above' or 'below', got {side!r}")
    if stats.get("log_prob") is None or not bands:
        return None
    lo0, hi0 = [_end(v) for v in bands["lo"]], [_end(v) for v in bands["hi"]]
    tol, m = float(bands.get("tol", 0.0)), len(lo0)
    if side == "auto":
        side = "below" if m == 1 and math.isinf(lo0[0]) else "above"
    if m == 1 and ((side == "above" and math.isinf(lo0[0])) or (side == "below" and math.isinf(hi0[0]))):
        raise ValueError(f"side={side!r}: the band [{lo0[0]}, {hi0[0]}] has no finite end on that side")
    scale = [float(v) for v in stats.get("smc_scale") or [1.0] * m]
    if stats.get("smc_mode") == "rejection" or not stats.get("smc_levels"):
        levels, fractions = [0.0], None
    else:
        levels, fractions = [float(v) for v in stats["smc_levels"]], [float(v) for v in stats["smc_fractions"]]
    if fractions is None:
        logs, ses = [float(stats["log_prob"])], [float(stats.get("log_prob_se") or math.nan)]
    else:
        N = int(stats.get("particles") or 0)
        variances = stats.get("smc_variances")
        if variances is None or len(variances) != len(fractions):
            variances = [(1.0 - p) / (p * N) if N and p > 0 else math.nan for p in fractions]
            total, run_se = math.fsum(variances), stats.get("log_prob_se")
            if run_se is not None and total > 0 and math.isfinite(float(run_se)) and float(run_se) > 0:
                variances = [v * float(run_se) ** 2 / total for v in variances]
        logs, ses, acc, var = [], [], 0.0, 0.0
        for p, v in zip(fractions, variances):
            acc += math.log(p) if p > 0 else -math.inf
            var += float(v)
            logs.append(acc)
            ses.append(math.sqrt(var))
    rows = []
    for level, logp, se in zip(levels, logs, ses):
        widen = [tol + level * s for s in scale]
        lo = tuple(l - w for l, w in zip(lo0, widen))
        hi = tuple(h + w for h, w in zip(hi0, widen))
        threshold = (lo[0] if side == "above" else hi[0]) if m == 1 else level
        rows.append(RarityLevel(threshold, logp, se, level, lo, hi, side))
    return rows


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
        walker, ancestor: ``(n,)`` int64 or ``None``: which walker kept each row and which initial
            particle it descends from, where the method records them (the chains of the
            diagnostics and of ``to_inference_data``).

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
    walker: Optional[Tensor] = None
    ancestor: Optional[Tensor] = None

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

    @property
    def rarity(self) -> Optional[list[RarityLevel]]:
        """The rarity curve: one ``RarityLevel(threshold, log_prob, log_prob_se, ...)`` per
        intermediate level of a levels run (``method="smc"``), the last one the band itself;
        ``None`` for a method without levels. See ``rarity_curve`` (``side=``) for the rule."""
        return self.rarity_curve()

    def rarity_curve(self, side: str = "auto") -> Optional[list[RarityLevel]]:
        """``rarity`` with the side of the prior's mass given: ``"above"`` (the band is above
        it: ``log P(h >= threshold)``), ``"below"`` (``log P(h <= threshold)``) or ``"auto"``
        (``rarity_rows``)."""
        return rarity_rows(self.stats, (self.config.get("problem") or {}).get("bands") or {}, side)

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
        for name in ("walker", "ancestor"):
            column = getattr(self, name)
            if column is not None:
                tensors[name] = column.detach().cpu()
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
        ids = {}
        for name in ("walker", "ancestor"):
            column = tensors.get(name)
            if isinstance(column, torch.Tensor) and column.dim() == 1 and column.shape[0] == rows["x"]:
                ids[name] = column
        return cls(*columns, meta.get("stats", {}), meta.get("config", {}), **ids)

    def to_inference_data(self, *, projections: int = 0, seed: int = 0):
        """The rows as an ArviZ ``InferenceData`` (``feassample.core.arviz_export``):
        chains are walkers or ancestral families, as in the diagnostics. Needs ``arviz``."""
        from .arviz_export import to_inference_data
        return to_inference_data(self, projections=projections, seed=seed)
