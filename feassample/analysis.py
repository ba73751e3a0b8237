"""What a representative sample says about its set: its facets (``facets``: clusters with their
share of the set and an SE), and the pieces of ``overlap`` (``fs.overlap``: ``P(B | A)``) that do not
run a sampler.

The sample is the prior restricted to the set, so a facet's share of the rows estimates its share
of the set's prior mass. The rows are correlated (copies of one particle, steps of one walker):
an SE from the row count alone would look more certain than it is, so every SE here uses the
sample's effective size (``effective_size``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .core.diagnostics import embedding_of
from .core.result import SampleSet

#: how far the best mean silhouette must exceed that of a structureless sample (uniform in the
#: features' principal-axes bounding box, the gap statistic's reference: Tibshirani, Walther &
#: Hastie 2001) for more than one facet: k-means cuts any blob, and a uniform convex piece
#: reaches a silhouette of 0.4 in 2-d by its shape alone
SILHOUETTE_GAIN = 0.05
#: uniform reference samples averaged for that comparison
REFERENCE_DRAWS = 3
#: features kept by the PCA before clustering (the embeddings of image models have hundreds)
PCA_DIMS = 20


@dataclass
class Facet:
    """One cluster of a sample.

    Attributes:
        share: its fraction of the rows: an estimate of its share of the set's prior mass.
        share_se: the larger of the binomial SE of ``share`` over the sample's effective size
            ``sqrt(share (1 - share) / n_eff)`` (``Facets.n_eff``) and its cluster-robust SE over
            the rows' initial ancestors (``family_se``; an smc levels run).
        count: its rows.
        rows: ``(count,)`` indices of its rows in the sample.
        medoids: indices of up to ``medoids`` rows: the medoid (the row with the least summed
            distance to the others in the clustering space) first, then the rows nearest it.
        mean_values: ``(m,)`` the mean constraint values of its rows.
    """

    share: float
    share_se: float
    count: int
    rows: list
    medoids: list
    mean_values: list


class Facets(list):
    """The list of ``Facet`` (largest share first) with how it was found: ``k`` (facets),
    ``criterion`` (how ``k`` was chosen), ``silhouettes`` (``{k: mean silhouette}`` for each
    ``k`` tried), ``reference_silhouette`` (the structureless samples' silhouette at the best
    ``k``, ``None`` when not computed), ``space`` (what was clustered), ``n_eff`` and ``ess_from`` (the effective size
    of the SEs and where it comes from), ``labels`` (``(n,)`` each row's facet)."""

    k: int
    criterion: str
    silhouettes: dict
    space: str
    n_eff: float
    ess_from: str
    labels: np.ndarray
    reference_silhouette: Optional[float]

    def as_dicts(self) -> dict:
        """The facets as JSON-able values (``metrics.json``'s ``facets``)."""
        return {"k": self.k, "criterion": self.criterion, "space": self.space, "n_eff": self.n_eff,
                "ess_from": self.ess_from,
                "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
                "reference_silhouette": self.reference_silhouette,
                "facets": [{"share": f.share, "share_se": f.share_se, "count": f.count,
                            "medoids": f.medoids, "mean_values": f.mean_values} for f in self]}


def effective_size(samples: SampleSet) -> tuple[float, str]:
    """``(n_eff, source)``: the number of independent rows the sample is worth.

    Independent draws (``diagnostics["independent"]``: smc's rejection mode, the rejection
    baseline) count every row; a run with chain diagnostics counts ``n x min(1, ess_bulk_min /
    ess_rows)`` (the worst statistic's bulk ESS per diagnosed row, applied to all rows); a run
    without diagnostics is taken as independent, and ``source`` says so."""
    n = len(samples)
    diag = samples.diagnostics or {}
    if diag.get("independent"):
        return float(n), "independent draws"
    ess, rows = diag.get("ess_bulk_min"), diag.get("ess_rows")
    if isinstance(ess, (int, float)) and isinstance(rows, (int, float)) and rows > 0 and math.isfinite(ess):
        ratio = min(1.0, float(ess) / float(rows))
        return n * ratio, f"diagnostics: ess_bulk_min / ess_rows = {ess:.0f} / {rows:.0f} over {diag.get('chains_by')} chains"
    return float(n), "no chain diagnostics: rows taken as independent"


def family_se(member: np.ndarray, samples: SampleSet) -> float:
    """The cluster-robust SE of the fraction of rows in ``member`` (``(n,)`` bool), the rows
    clustered by their initial ancestor (an smc levels run's ``ancestor``; 0 without one, or for
    independent draws). ``sqrt(sum_c (sum_{i in c} (member_i - share))^2) / n``: about the binomial
    SE when the descendants of one ancestor are spread over the facets independently, and as large
    as the families' own count says when they are not: the moves rarely cross between the pieces
    of a set, so a piece's share is fixed by how many ancestors reached it."""
    anc = getattr(samples, "ancestor", None)
    n = member.shape[0]
    if anc is None or n < 2 or anc.numel() != n:
        return 0.0
    a = anc.detach().cpu().numpy().astype(np.int64)
    if (a < 0).any():  # independent draws of the prior (rejection): no families
        return 0.0
    resid = member.astype(np.float64) - member.mean()
    _, family = np.unique(a, return_inverse=True)
    sums = np.bincount(family, weights=resid)
    return float(math.sqrt(float((sums ** 2).sum())) / n)


def _layer_output(problem, layer: str, x: Tensor, chunk: int = 256) -> Tensor:
    """The output of ``problem.model``'s module ``layer`` on rows ``x``, captured by a hook
    during ``problem.measure`` (so the problem's own preprocessing applies), ``(n, p)``."""
    model = getattr(problem, "model", None)
    if model is None:
        raise ValueError(f"layer={layer!r}: the problem has no model (problem.model) to take a layer from")
    modules = dict(model.named_modules())
    if layer not in modules:
        names = ", ".join(n for n in modules if n)
        raise ValueError(f"layer={layer!r} is not a layer of the model; valid names: {names}")
    got: list = []
    handle = modules[layer].register_forward_hook(lambda m, i, o: got.append(o.detach()))
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], chunk):
                problem.measure(x[i:i + chunk])
    finally:
        handle.remove()
    return torch.cat([g.reshape(g.shape[0], -1) for g in got])


def features(samples: SampleSet, problem=None, layer: Optional[str] = None,
             embedding: Optional[Tensor] = None) -> tuple[np.ndarray, str]:
    """``(features (n, p), what they are)``: ``embedding`` as given, else ``layer`` of
    ``problem.model``, else the problem's embedding (``problem.measure(x).embedding``), else the
    codes."""
    n = len(samples)
    if embedding is not None:
        emb = torch.as_tensor(embedding)
        if emb.dim() < 1 or emb.shape[0] != n:
            raise ValueError(f"embedding must have one row per sample ({n}), got shape {tuple(emb.shape)}")
        return emb.reshape(n, -1).double().cpu().numpy(), "the given embedding"
    if layer is not None:
        if problem is None:
            raise ValueError(f"layer={layer!r} needs problem= (the model the layer belongs to)")
        return _layer_output(problem, layer, samples.x).double().cpu().numpy(), f"layer {layer}"
    if problem is not None:
        emb = embedding_of(problem, samples.x.to(getattr(problem, "dtype", samples.x.dtype)))
        if emb is not None:
            return emb.double().cpu().numpy(), "the problem's embedding"
    return samples.codes.reshape(n, -1).double().cpu().numpy(), "codes"


def _silhouette(feats: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from sklearn.metrics import silhouette_score
    return float(silhouette_score(feats, labels, sample_size=min(len(feats), 2000), random_state=seed))


def _reference_silhouette(feats: np.ndarray, k: int, seed: int) -> float:
    """The mean silhouette k-means reaches with ``k`` clusters on structureless samples: uniform
    in the bounding box of ``feats`` (already on their principal axes), ``REFERENCE_DRAWS``
    draws of the same size averaged."""
    from sklearn.cluster import KMeans
    rng = np.random.default_rng(seed)
    lo, hi = feats.min(0), feats.max(0)
    out = []
    for _ in range(REFERENCE_DRAWS):
        ref = rng.uniform(lo, hi, size=feats.shape)
        out.append(_silhouette(ref, KMeans(k, n_init=10, random_state=seed).fit_predict(ref), seed))
    return float(np.mean(out))


def _medoids(points: np.ndarray, count: int) -> list[int]:
    """Indices into ``points`` of the medoid and then its nearest rows (``count`` in all)."""
    pick = points
    if len(points) > 2000:  # the summed distances of a subset: O(2000^2)
        pick = points[np.random.default_rng(0).choice(len(points), 2000, replace=False)]
    from sklearn.metrics import pairwise_distances
    d = pairwise_distances(pick, points)  # (subset, all)
    med = int(np.argmin(d.sum(0)))
    near = np.argsort(((points - points[med]) ** 2).sum(1), kind="stable")
    return [int(i) for i in near[:count]]


def facets(samples: SampleSet, k: Union[int, str] = "auto", *, problem=None, layer: Optional[str] = None,
           embedding: Optional[Tensor] = None, k_max: Optional[int] = None, medoids: int = 5, seed: int = 0) -> Facets:
    """The facets of a sample: k-means clusters of its rows in the problem's embedding space (or
    ``layer`` of ``problem.model``, or a given ``embedding (n, p)``, or the codes when there is no
    problem), largest share first.

    Features are standardized (each column to unit variance over the sample) and rotated to at
    most ``PCA_DIMS`` principal components. ``k="auto"`` runs k-means (10 starts) for ``k = 2 ..
    k_max`` (default ``min(8, n - 1)``) and takes the ``k`` of the largest mean silhouette
    (Rousseeuw 1987) when it is at least ``SILHOUETTE_GAIN`` (0.05) above the silhouette of
    structureless samples of the same size (uniform in the features' bounding box on their
    principal axes) clustered with the same ``k``; else one facet. Each facet's share has an SE over
    the sample's effective size (``effective_size``)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    n = len(samples)
    if n < 4:
        raise ValueError(f"samples: facets need at least 4 rows, got {n}")
    if not (k == "auto" or (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= n)):
        raise ValueError(f"k must be 'auto' or an int in [1, {n}] (the rows), got {k!r}")
    k_max = min(8, n - 1) if k_max is None else k_max
    if not (isinstance(k_max, int) and 2 <= k_max < n):
        raise ValueError(f"k_max must be an int in [2, {n - 1}], got {k_max!r}")
    feats, space = features(samples, problem, layer, embedding)
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"samples: the features ({space}) have NaN or infinite entries")
    sd = feats.std(0)
    feats = (feats - feats.mean(0)) / np.where(sd > 0, sd, 1.0)
    # rotate to the principal axes (at most PCA_DIMS): the reference box below is aligned with them
    feats = PCA(min(PCA_DIMS, feats.shape[1], n), random_state=seed).fit_transform(feats)
    silhouettes: dict = {}
    fits: dict = {}
    for kk in (range(2, k_max + 1) if k == "auto" else ([k] if k > 1 else [])):
        fit = KMeans(kk, n_init=10, random_state=seed).fit(feats)
        fits[kk] = fit.labels_
        if len(set(fit.labels_.tolist())) > 1:
            silhouettes[kk] = _silhouette(feats, fit.labels_, seed)
    reference = None
    if k == "auto":
        best = max(silhouettes, key=silhouettes.get) if silhouettes else 1
        if best > 1:
            reference = _reference_silhouette(feats, best, seed)
        if best > 1 and silhouettes[best] - reference >= SILHOUETTE_GAIN:
            chosen = best
            criterion = (f"largest mean silhouette over k = 2..{k_max}: {silhouettes[best]:.3f} at k = {best}, "
                         f"{silhouettes[best] - reference:.3f} above a structureless sample's {reference:.3f}")
        else:
            chosen = 1
            criterion = (f"one facet: the best mean silhouette ({silhouettes.get(best, math.nan):.3f} at k = {best}) "
                         f"is less than {SILHOUETTE_GAIN} above a structureless sample's "
                         f"({math.nan if reference is None else reference:.3f})")
    else:
        chosen, criterion = k, "k given"
    labels = fits.get(chosen, np.zeros(n, dtype=np.int64))
    n_eff, ess_from = effective_size(samples)
    values = samples.values.double().cpu().numpy()
    out = Facets()
    for c in range(chosen):
        rows = np.flatnonzero(labels == c)
        if rows.size == 0:
            continue
        share = rows.size / n
        med = _medoids(feats[rows], min(medoids, rows.size))
        se = max(math.sqrt(share * (1 - share) / max(n_eff, 1.0)), family_se(labels == c, samples))
        out.append(Facet(share=share, share_se=se,
                         count=int(rows.size), rows=[int(i) for i in rows], medoids=[int(rows[i]) for i in med],
                         mean_values=[float(v) for v in values[rows].mean(0)]))
    order = sorted(range(len(out)), key=lambda i: -out[i].count)
    relabel = np.empty(max(chosen, 1), dtype=np.int64)
    sorted_facets = Facets(out[i] for i in order)
    for new, old in enumerate(order):
        relabel[labels[out[old].rows[0]]] = new
    sorted_facets.k, sorted_facets.criterion, sorted_facets.silhouettes = len(out), criterion, silhouettes
    sorted_facets.space, sorted_facets.n_eff, sorted_facets.ess_from = space, n_eff, ess_from
    sorted_facets.labels = relabel[labels]
    sorted_facets.reference_silhouette = reference
    return sorted_facets


@dataclass
class Overlap:
    """``P(B | A)`` under the prior: ``log_prob``, ``log_prob_se``, and how it was estimated.

    Attributes:
        method: ``"fraction"`` (the share of A's sample inside B, SE over A's effective size) or
            ``"difference"`` (``log P(A and B) - log P(A)`` from two runs, SEs in quadrature).
        inside: A's rows inside B (``"fraction"``), ``n_eff`` its effective size.
        log_prob_a, log_prob_ab: the runs' estimates (``"difference"``; ``log_prob_a`` also for
            ``"fraction"`` where A's run estimates it).
        samples: the runs' ``SampleSet`` by name (``"A"``, and ``"A and B"`` for ``"difference"``).
    """

    log_prob: float
    log_prob_se: float
    method: str
    inside: Optional[int] = None
    n_eff: Optional[float] = None
    log_prob_a: Optional[float] = None
    log_prob_ab: Optional[float] = None
    samples: dict = field(default_factory=dict, repr=False)

    @property
    def prob(self) -> float:
        """``P(B | A)``."""
        return math.exp(self.log_prob)


def fraction_inside(samples: SampleSet, other) -> tuple[int, Tensor]:
    """``(count, mask (n,))``: the rows of ``samples`` that ``other``'s certificate
    (``other.check``) puts inside its band (the codes must be ``other``'s codes)."""
    codes = samples.codes
    if tuple(codes.shape[1:]) != tuple(other.code_shape):
        raise ValueError(f"B: its codes have shape {tuple(other.code_shape)} but A's sample has "
                         f"{tuple(codes.shape[1:])}: A and B must share one code space")
    with torch.no_grad():
        _, ok = other.check(codes.to(getattr(other, "dtype", codes.dtype)))
    return int(ok.sum()), ok


def overlap_from_fraction(samples: SampleSet, other) -> Overlap:
    """``P(B | A)`` as the share ``f`` of A's sample inside B: ``log f`` with the delta-method SE
    ``sqrt((1 - f) / (f n_eff))`` over A's effective size (``effective_size``)."""
    inside, _ = fraction_inside(samples, other)
    n = len(samples)
    n_eff, _ = effective_size(samples)
    if inside == 0:
        return Overlap(-math.inf, math.inf, "fraction", 0, n_eff, samples.log_prob, samples={"A": samples})
    f = inside / n
    return Overlap(math.log(f), math.sqrt((1 - f) / (f * n_eff)), "fraction", inside, n_eff,
                   samples.log_prob, samples={"A": samples})


def overlap_from_difference(a: SampleSet, ab: SampleSet) -> Overlap:
    """``P(B | A) = P(A and B) / P(A)`` from two runs' ``log_prob``: the difference, with the
    independent runs' SEs in quadrature."""
    for name, s in (("A", a), ("A and B", ab)):
        if s.log_prob is None or s.log_prob_se is None:
            raise ValueError(f"the run on {name} has no log_prob (method {s.stats.get('method')!r}); use method='smc'")
    return Overlap(ab.log_prob - a.log_prob, math.hypot(a.log_prob_se, ab.log_prob_se), "difference",
                   log_prob_a=a.log_prob, log_prob_ab=ab.log_prob, samples={"A": a, "A and B": ab})


__all__ = ["Facet", "Facets", "facets", "effective_size", "family_se", "features", "Overlap", "fraction_inside",
           "overlap_from_fraction", "overlap_from_difference", "SILHOUETTE_GAIN", "REFERENCE_DRAWS", "PCA_DIMS"]
