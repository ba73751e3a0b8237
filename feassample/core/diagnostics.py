"""Convergence diagnostics of a multi-walker run: split rank-normalized R-hat and bulk/tail ESS
(Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021, "Rank-normalization, folding, and
localization: an improved R-hat"), over walkers, from ArviZ's ``arviz-stats`` (array interface).

A sampler that records which walker produced each row (``SampleBuffer.extra["walker"]``) gets
them in ``stats`` from the driver's ``finish``. The statistics followed are

* the constraint values ``h_j`` (``value:<name>``),
* ``PROJECTIONS`` fixed random unit projections of the codes (``proj:<i>``, a seeded generator,
  so two runs follow the same directions),
* the ``COMPONENTS`` leading principal components of the embedding, or of the codes when the
  problem has no embedding (``pc:<i>``, from the samples themselves),

each as an array ``(chains, draws)``: the rows of walker ``w`` in the order they were kept. Walkers
with fewer than half the longest chain's rows are left out; the others are cut to a common length.
A statistic that does not vary at all is skipped; one that is constant within every chain but
differs between chains has R-hat ``inf`` (the walkers never moved).

An ESS is reported over the rows it was computed from (``ess_rows`` = chains x draws) and never
above them: the estimator's own cap (``N log10 N``, for antithetic chains) would claim more
effective draws than there are rows. The verdict carries its margin: ``rhat_threshold``, and
``margin`` = threshold - ``rhat_max`` (negative when R-hat fails).

``mixed`` is ``True`` when every R-hat is at most ``RHAT_MAX`` and every bulk and tail ESS is at
least ``min(ESS_MIN, ESS_FRACTION * draws in all)``. The thresholds are looser than Vehtari et
al.'s 1.01 / 400, which need hundreds of draws per chain; a run of 10 walkers x 50 draws of iid
points gives R-hat up to about 1.03 over eight statistics. See docs/coverage.md.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

RHAT_MAX = 1.05
ESS_MIN = 100.0
ESS_FRACTION = 0.1
PROJECTIONS = 4
COMPONENTS = 3
#: population methods (rows with ``ancestors``): the fewest ancestral families for a verdict, and
#: the R-hat threshold ``max(RHAT_MAX, 1 + POP_RHAT / (draws * sqrt(chains)))``, for chains of
#: particles or of families alike. Their chains are short by design (4-10 rows), where split R-hat
#: is noisy: for iid rows the largest R-hat over 10 statistics has a 99% quantile (150-300
#: simulations per cell) of 1.30 / 1.12 / 1.08 at 30 / 100 / 300 chains of 4 draws, 1.16 / 1.08 /
#: 1.04 of 6 and 1.09 / 1.04 / 1.02 of 10; ``(q - 1) * draws * sqrt(chains)`` stays within
#: 3.5-6.5 there (7.9 at 10 chains of 4), so 7 keeps the threshold above it (docs/coverage.md).
#: The covering walk's chains (10 walkers x 30-50 draws) keep the plain ``RHAT_MAX``.
FAMILY_MIN = 20
POP_RHAT = 7.0
MIN_DRAWS = 4  # split R-hat halves each chain: two draws per half at least


def duplicates(codes: Tensor) -> int:
    """The number of rows of ``codes (n, ...)`` that repeat an earlier row exactly."""
    if codes.shape[0] == 0:
        return 0
    return int(codes.shape[0] - torch.unique(codes.reshape(codes.shape[0], -1), dim=0).shape[0])


def _chains(walkers: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Row indices of each kept walker, cut to a common length, and that length."""
    ids, counts = np.unique(walkers, return_counts=True)
    if ids.size == 0:
        return [], 0
    keep = counts >= max(MIN_DRAWS, math.ceil(counts.max() / 2))
    if not keep.any():
        return [], 0
    length = int(counts[keep].min())
    return [np.flatnonzero(walkers == w)[:length] for w in ids[keep]], length


def _families(ancestors: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Rows of each ancestral family (the rows descended from one initial particle) with at least
    ``MIN_DRAWS`` rows, each cut to its first ``MIN_DRAWS`` rows (in the order they were kept)."""
    ids, counts = np.unique(ancestors, return_counts=True)
    keep = ids[counts >= MIN_DRAWS]
    return [np.flatnonzero(ancestors == a)[:MIN_DRAWS] for a in keep], (MIN_DRAWS if keep.size else 0)


def chain_rows(walkers: Optional[Tensor], ancestors: Optional[Tensor]) -> tuple[list[np.ndarray], str]:
    """``(row indices per chain, chains_by)``: the chains ``diagnose`` computes R-hat and ESS
    over, each cut to a common length: walkers (``"walker"``), else ancestral families with their
    first ``MIN_DRAWS`` rows (``"ancestor"``); independent draws of the prior (negative
    ancestors) and rows without ids are one chain of every row (``"independent"``, ``"none"``)."""
    n = int(walkers.shape[0]) if walkers is not None else (int(ancestors.shape[0]) if ancestors is not None else 0)
    if ancestors is not None and n > 1 and bool((ancestors < 0).all()):
        return [np.arange(n)], "independent"
    if walkers is not None:
        idx, length = _chains(walkers.detach().cpu().numpy().astype(np.int64))
        if len(idx) >= 2 and length >= MIN_DRAWS:
            return idx, "walker"
    if ancestors is not None:
        idx, length = _families(ancestors.detach().cpu().numpy().astype(np.int64))
        if len(idx) >= 2:
            return idx, "ancestor"
    return [], "none"


def _statistics(values: Tensor, codes: Tensor, embedding: Optional[Tensor],
                names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-row statistics ``{name: (n,)}`` (see the module docstring)."""
    out = {f"value:{name}": values[:, j].double().cpu().numpy() for j, name in enumerate(names)}
    flat = codes.reshape(codes.shape[0], -1).double().cpu()
    gen = torch.Generator().manual_seed(20211)
    dirs = torch.randn(flat.shape[1], PROJECTIONS, generator=gen, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    for i, col in enumerate((flat @ dirs).T):
        out[f"proj:{i}"] = col.numpy()
    feats = flat if embedding is None else embedding.reshape(embedding.shape[0], -1).double().cpu()
    centred = feats - feats.mean(0, keepdim=True)
    if centred.shape[0] > 1 and bool(centred.abs().sum() > 0):
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        for i in range(min(COMPONENTS, vh.shape[0])):
            out[f"pc:{i}"] = (centred @ vh[i]).numpy()
    return out


def ancestry(ancestors: Tensor) -> dict:
    """How many initial particles the returned rows descend from, given each row's initial
    ancestor ``(n,)``: ``row_ancestors`` (distinct ancestors of the rows; the sampler's own
    ``stats["distinct_ancestors"]`` counts those of its whole final population, a different
    number) and ``effective_ancestors`` ``1 / sum_a p_a^2`` with ``p_a`` the share of rows
    descending from ``a`` (the inverse Simpson index: ``n`` when every row has its own ancestor,
    1 when all share one)."""
    ids = ancestors.detach().reshape(-1).cpu()
    if ids.numel() == 0:
        return {"row_ancestors": 0, "effective_ancestors": 0.0}
    _, counts = torch.unique(ids, return_counts=True)
    share = counts.double() / ids.numel()
    return {"row_ancestors": int(counts.numel()), "effective_ancestors": float(1.0 / share.pow(2).sum())}


def diagnose(walkers: Tensor, values: Tensor, codes: Tensor, embedding: Optional[Tensor] = None,
             names: Optional[Sequence[str]] = None, ancestors: Optional[Tensor] = None) -> dict:
    """Diagnostics of rows ``(n, ...)`` kept by walkers ``(n,)`` (integer ids); with
    ``ancestors`` ``(n,)`` (population methods: each row's initial particle) also ``ancestry``.

    Returns a dict with ``chains``, ``draws`` (per chain), ``ess_rows`` (chains x draws: the rows
    the statistics were computed over), per-statistic ``rhat``, ``ess_bulk``, ``ess_tail`` (each
    at most ``ess_rows``), their extremes ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``,
    ``rhat_threshold`` and ``margin`` (threshold - ``rhat_max``), ``worst`` (the statistic and
    value that failed first, if any), ``duplicates``, ``thresholds`` and ``mixed`` (``None`` with
    ``skipped`` saying why when there are too few rows per walker)."""
    n = int(codes.shape[0])
    names = list(names) if names is not None else [str(j) for j in range(values.shape[1])]
    out: dict = {"duplicates": duplicates(codes), "rows": n}
    if ancestors is not None:
        out.update(ancestry(ancestors))
    if ancestors is not None and n > 1 and bool((ancestors < 0).all()):
        # negative ancestors mark independent draws of the prior (smc's rejection mode)
        out.update(mixed=None, independent=True,
                   skipped="independent draws from the prior (each row its own): nothing to diagnose")
        return out
    idx, length = _chains(walkers.detach().cpu().numpy().astype(np.int64))
    out["chains_by"] = "walker"
    if (len(idx) < 2 or length < MIN_DRAWS) and ancestors is not None:
        # a population with about one row per particle: the chains are the ancestral families
        idx, length = _families(ancestors.detach().cpu().numpy().astype(np.int64))
        out["chains_by"] = "ancestor"
        if len(idx) < FAMILY_MIN:
            idx, length = [], 0
    if len(idx) < 2 or length < MIN_DRAWS:
        if ancestors is not None:
            why = (f"needs {FAMILY_MIN} ancestral families with {MIN_DRAWS} rows each, or {MIN_DRAWS} "
                   "rows per particle (n >= 4 x particles)")
        else:
            why = f"needs 2 walkers with {MIN_DRAWS} rows each or more (have {len(idx)} walker(s) with {length} rows)"
        out.update(mixed=None, skipped=why)
        return out
    from arviz_stats.base import array_stats  # ~0.7 s to import: only when a run is diagnosed

    stats = _statistics(values, codes, embedding, names)
    rhat, bulk, tail = {}, {}, {}
    for name, column in stats.items():
        ary = np.stack([column[i] for i in idx])  # (chains, draws)
        if not np.all(np.isfinite(ary)) or np.ptp(ary) == 0:
            continue  # NaN rows are refused by the certificate; a constant says nothing
        if np.all(np.ptp(ary, axis=1) == 0):
            rhat[name], bulk[name], tail[name] = math.inf, 1.0, 1.0  # walkers that never moved
            continue
        rhat[name] = float(array_stats.rhat(ary, chain_axis=-2, draw_axis=-1, method="rank"))
        # never more effective draws than rows: arviz caps at N log10 N (antithetic chains)
        bulk[name] = min(float(array_stats.ess(ary, chain_axis=-2, draw_axis=-1, method="bulk")), ary.size)
        tail[name] = min(float(array_stats.ess(ary, chain_axis=-2, draw_axis=-1, method="tail",
                                               prob=(0.05, 0.95))), ary.size)
        if not math.isfinite(rhat[name]):
            rhat[name] = math.inf
    ess_floor = min(ESS_MIN, ESS_FRACTION * len(idx) * length)
    rhat_max = RHAT_MAX
    if ancestors is not None:  # a population's short chains: the threshold of their iid null
        rhat_max = max(RHAT_MAX, 1.0 + POP_RHAT / (length * math.sqrt(len(idx))))
    out.update(chains=len(idx), draws=length, ess_rows=len(idx) * length, rhat=rhat, ess_bulk=bulk, ess_tail=tail,
               thresholds={"rhat_max": rhat_max, "ess_min": ess_floor})
    if not rhat:
        out.update(mixed=None, skipped="no statistic varies across the samples")
        return out
    out["rhat_max"] = max(rhat.values())
    out["rhat_threshold"] = rhat_max
    out["margin"] = rhat_max - out["rhat_max"]
    out["ess_bulk_min"] = min(bulk.values())
    out["ess_tail_min"] = min(tail.values())
    # the threshold at the precision of the value, so that 1.158 > 1.1565 does not read "> 1.16"
    failures = [(f"R-hat of {k}", v, f"> {rhat_max:.4g}") for k, v in rhat.items() if not v <= rhat_max]
    failures += [(f"bulk ESS of {k}", v, f"< {ess_floor:.3g}") for k, v in bulk.items() if not v >= ess_floor]
    failures += [(f"tail ESS of {k}", v, f"< {ess_floor:.3g}") for k, v in tail.items() if not v >= ess_floor]
    out["mixed"] = not failures
    if failures:
        rh = [f for f in failures if f[0].startswith("R-hat")]
        worst = max(rh, key=lambda f: f[1]) if rh else min(failures, key=lambda f: f[1])
        out["worst"] = f"{worst[0]} = {worst[1]:.4g} {worst[2]}"
    return out


def embedding_of(problem, x: Tensor, chunk: int = 256) -> Optional[Tensor]:
    """The problem's embedding of decoded rows ``x (n, ...)`` flattened to ``(n, e)``, measured
    in chunks without gradients; ``None`` when the problem has no embedding (``x.shape[0]``
    forward passes)."""
    with torch.no_grad():
        parts = [problem.measure(x[i:i + chunk]).embedding for i in range(0, x.shape[0], chunk)]
    if parts and all(p is not None for p in parts):
        return torch.cat([p.reshape(p.shape[0], -1) for p in parts])
    return None


def not_checked(diag: Optional[dict]) -> Optional[str]:
    """Why mixing was not checked (``"not checked (...)"``), or None when it was (or the rows are
    independent draws, which need no check)."""
    if not diag:
        return "not checked (the sampler records no walker per row)"
    if diag.get("independent") or diag.get("mixed") is not None:
        return None
    return f"not checked ({diag.get('skipped', 'too few rows')})"


def warn_if_not_mixed(diag: dict, certified: bool) -> None:
    """A ``logging`` warning when certified samples are not mixed (naming the statistic), or when
    mixing could not be checked at all (saying why)."""
    unchecked = not_checked(diag)
    if unchecked is not None:
        log.warning("mixing %s: %d rows; the samples are %scertified but nothing says they are spread "
                    "over the set (docs/troubleshooting.md)", unchecked, diag.get("rows", 0),
                    "" if certified else "not all ")
        return
    if diag.get("mixed") is False:
        lead = "samples are certified inside the band but" if certified else "samples"
        if diag.get("chains_by") == "ancestor":
            log.warning("%s not mixed: %s over %d ancestral families x %d rows (%d exact duplicates); "
                        "the descendants of one initial particle have not spread over the set: raise "
                        "the moves (options jump, max_moves) or see docs/troubleshooting.md", lead,
                        diag["worst"], diag["chains"], diag["draws"], diag["duplicates"])
            return
        log.warning("%s not mixed: %s over %d walkers x %d draws (%d exact duplicates); the walkers "
                    "have not forgotten their seeds: raise the budget or n, or see "
                    "docs/troubleshooting.md", lead, diag["worst"], diag["chains"], diag["draws"],
                    diag["duplicates"])


__all__ = ["diagnose", "duplicates", "ancestry", "embedding_of", "not_checked", "warn_if_not_mixed", "RHAT_MAX", "ESS_MIN", "ESS_FRACTION"]
