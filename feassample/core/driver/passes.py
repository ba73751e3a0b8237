"""``budget="auto"``: the decision, shared by every kernel that makes passes, whether a complete
set of rows is kept or another pass is made.

A kernel with passes (``cover``, ``smc``) fills its ``SampleBuffer``; when it is full the rows are
diagnosed as the run's own report diagnoses them (``core.diagnostics``: R-hat over walkers or
ancestral families) and ``judge_pass`` says whether to stop — the rows are ``"mixed"``, there are
``"no diagnostics"`` (too few rows or families), or the next pass would pass the cap
(``"cap"``) — or to go on (``""``): the kernel then empties its buffer and moves its chains on
(its moves leave the target invariant, so every pass is a sample of it). Everything decided here
derives from the rows and the counts passed in, so a resumed run decides the same.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .. import diagnostics
from ..problem import FeasibleSet
from ..state import SampleBuffer

log = logging.getLogger("feassample.core.driver")


@dataclass(frozen=True)
class Verdict:
    """``stop``: ``"mixed"``, ``"no diagnostics"``, ``"cap"``, or ``""`` (make another pass);
    ``diagnostics``: the rows' diagnostics; ``evals``: the forward passes they cost."""

    stop: str
    diagnostics: dict
    evals: int


def judge_pass(problem: FeasibleSet, samples: SampleBuffer, *, spent: float, next_cost: float,
               max_budget: float, passes: int, detail: str = "") -> Verdict:
    """Diagnose the ``samples.count`` rows of the buffer and decide (module docstring).

    ``spent``: model evaluations so far; ``next_cost``: what the next pass would add; the cap is
    ``max_budget`` evaluations per row. ``passes``: passes made; ``detail`` completes the cap's
    warning (e.g. ``", thin 8"``)."""
    count = samples.count
    codes = samples.codes[:count].reshape(count, *problem.code_shape)
    with torch.no_grad():  # the driver's finish measures the same rows the same way
        values, _ = problem.check(codes)
        embedding = diagnostics.embedding_of(problem, problem.decode(codes))
    extra = samples.extra
    diag = diagnostics.diagnose(extra["walker"][:count], values, codes, embedding,
                                names=problem.bands.names,
                                ancestors=extra["ancestor"][:count] if "ancestor" in extra else None)
    if diag["mixed"]:
        stop = "mixed"
    elif diag["mixed"] is None:
        stop = "no diagnostics"
        # the run's report says why (too few rows or families): no warning here
        log.info("budget='auto' stopped after pass %d: the diagnostics were skipped (%s)",
                 passes, diag.get("skipped"))
    elif spent + next_cost > max_budget * count:
        stop = "cap"
        log.warning("budget='auto' stopped at the cap max_budget=%g after %d pass(es) (%.1f evaluations "
                    "per sample%s) and the samples are not mixed: %s; raise max_budget or see "
                    "docs/troubleshooting.md", max_budget, passes, spent / max(count, 1), detail,
                    diag.get("worst"))
    else:
        stop = ""
    return Verdict(stop, diag, 2 * count)


__all__ = ["Verdict", "judge_pass"]
