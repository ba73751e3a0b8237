"""Certify-and-keep: the one place where a kernel's candidate rows become samples.

Every kernel that keeps rows hands them here: the rows are certified by ``problem.check`` (an
independent pass of the problem, never the kernel's own values), and those inside the band are
appended to the state's ``SampleBuffer`` with their id columns. The ids are an explicit argument,
documented for every kernel (``docs/extending.md``):

* ``walker`` ``(B,)``: which chain produced each row (a walker of a walk, a particle of a
  population in the band). The run's diagnostics (R-hat, ESS) treat the rows of one walker as one
  chain; rows of independent draws carry distinct walkers.
* ``ancestor`` ``(B,)`` (population kernels only): each row's initial particle, so the diagnostics
  can group rows into ancestral families; a negative ancestor marks an independent draw.

A buffer made by ``SampleBuffer.empty(..., walker=..., ancestor=...)`` has the columns; a kernel
that passes no id keeps rows without diagnostics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

from ..problem import FeasibleSet
from ..state import SampleBuffer


@dataclass(frozen=True)
class Kept:
    """What one ``keep_certified`` call did: rows kept, rows the certificate refused, the
    certificate's evaluations (one per candidate row), and ``ok`` ``(B,)``: which candidates it
    certified (``None`` for no candidate)."""

    kept: int
    refused: int
    evals: int
    ok: Optional[Tensor] = None


def keep_certified(problem: FeasibleSet, samples: SampleBuffer, codes: Tensor, values: Tensor, *,
                   walker: Optional[Tensor] = None, ancestor: Optional[Tensor] = None,
                   columns: Optional[dict] = None) -> Kept:
    """Certify candidate rows ``codes (B, ...)`` with ``problem.check`` and append those inside the
    band, with their ``values (B, m)``, ids and other ``columns`` (``{"embedding": (B, p)}``), to
    ``samples`` (at most its free capacity: ask for no more). Returns what was kept."""
    b = codes.shape[0]
    if b == 0:
        return Kept(0, 0, 0)
    _, ok = problem.check(codes.reshape(b, *problem.code_shape))
    ok = ok.to(codes.device)
    ids = {name: col[ok] for name, col in (("walker", walker), ("ancestor", ancestor))
           if col is not None and name in samples.extra}
    ids.update({name: col[ok] for name, col in (columns or {}).items()})
    kept = samples.append(codes[ok], values[ok], **ids)
    return Kept(kept, int((~ok).sum()), b, ok)


__all__ = ["Kept", "keep_certified"]
