"""The independent check of the contrastive explainer's answers: a float64 copy of the
classifier re-measures every code; ``|l_t - l_p| <= tol`` and ``min(l_t, l_p) - max_other l_j >=
margin`` per row, with a message saying why (not).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .problem import ContrastSet, _param_dtype


def _float64_copy(model: nn.Module) -> tuple[Callable, torch.dtype]:
    """A float64 copy of ``model`` for the certificate (the model itself is untouched), or the
    model as it is when it cannot be copied."""
    try:
        twin = copy.deepcopy(model).double().eval()
        return twin, torch.float64
    except Exception:  # noqa: BLE001 - e.g. modules that refuse deepcopy; certify in their dtype
        return model, _param_dtype(model, torch.float32)


@dataclass
class _Certificate:
    """The independent check of a batch of codes, one entry per row: ``satisfied``,
    ``equality_ok``, ``margin_ok`` ``(B,)`` bool, ``gap = l_t - l_p`` and ``margin_min =
    min(l_t, l_p) - max_other l_j`` ``(B,)`` float64, ``top_other`` ``(B,)`` long, and the
    ``messages`` saying why (not)."""

    satisfied: Tensor
    equality_ok: Tensor
    margin_ok: Tensor
    gap: Tensor
    margin_min: Tensor
    top_other: Tensor
    messages: list

    def own_ok(self, constraints: str) -> Tensor:
        """``(B,)`` the solver's own constraints hold: xGEMs knows no margin, so it is not
        restarted for it."""
        return self.equality_ok & (self.margin_ok | (constraints == "xgems"))

    def put(self, rows: Tensor, other: "_Certificate", take: Tensor) -> None:
        """Overwrite the entries ``rows`` with ``other``'s entries ``take``."""
        for name in ("satisfied", "equality_ok", "margin_ok", "gap", "margin_min", "top_other"):
            getattr(self, name)[rows] = getattr(other, name)[take]
        for i, k in zip(rows.tolist(), take.tolist()):
            self.messages[i] = other.messages[k]


def _message(t: int, p: int, gap: float, mmin: float, j: int, eq_ok: bool, mg_ok: bool,
             margin: float, tol: float) -> str:
    if eq_ok and mg_ok:
        return (f"satisfied: log p{t} - log p{p} = {gap:+.2e} (|.| <= {tol:g}), every other "
                f"class >= {mmin:.3f} below both (margin {margin:g}; closest: {j})")
    why = []
    if not eq_ok:
        why.append(f"log p{t} - log p{p} = {gap:+.4f} (|.| > tol {tol:g}): the solver did "
                   "not reach the boundary between the two classes")
    if not mg_ok:
        why.append(f"class {j} is only {mmin:+.4f} below min(log p{t}, log p{p}) "
                   f"(margin {margin:g})" + (": a third class wins" if mmin < 0 else ""))
    return "not satisfied: " + "; ".join(why)


def _certify(classifier: nn.Module, problem: ContrastSet, codes: Tensor, margin: float,
             tol: float) -> tuple[Tensor, Tensor, _Certificate]:
    """The independent check of codes ``(B, q + 1)``: ``(what D sees (B, *image_shape),
    log-likelihoods (B, C) float64, the certificate)``, from a float64 copy of ``D``."""
    rows = problem.rows_of(codes)
    ze = codes[:, :problem.q]
    with torch.no_grad():
        seen = problem.image(ze, rows)
        checker, cdt = _float64_copy(classifier)
        logp = F.log_softmax(checker(seen.to(cdt)).double(), dim=1)
    t = problem.true_classes[rows].to(logp.device)[:, None]
    p = problem.probe_classes[rows].to(logp.device)[:, None]
    lt, lp = logp.gather(1, t)[:, 0], logp.gather(1, p)[:, 0]
    others = logp.scatter(1, t, -math.inf).scatter(1, p, -math.inf)
    top, j = others.max(1)
    gap = lt - lp
    mmin = torch.minimum(lt, lp) - top
    eq_ok, mg_ok = gap.abs() <= tol, mmin >= margin
    numbers = zip(t[:, 0].tolist(), p[:, 0].tolist(), gap.tolist(), mmin.tolist(), j.tolist(),
                  eq_ok.tolist(), mg_ok.tolist())
    messages = [_message(*row, margin, tol) for row in numbers]  # text only: the numbers are batched
    cert = _Certificate(eq_ok & mg_ok, eq_ok, mg_ok, gap, mmin, j, messages)
    return seen, logp, cert
