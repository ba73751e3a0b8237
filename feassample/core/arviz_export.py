"""A ``SampleSet`` as an ArviZ ``InferenceData`` (``to_inference_data``), so the field's plots
(``az.plot_trace``, ``az.plot_ess``, ``az.plot_rank``) and statistics (``az.ess``, ``az.rhat``)
work on a run unchanged. ArviZ is optional (``pip install "feassample[arviz]"``: arviz 0.23 with
xarray, and h5netcdf for ``to_netcdf``); it is imported here only."""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .diagnostics import chain_rows


def _import_arviz():
    """``import arviz``, once more if the first try lost ArviZ 0.23's race on its once-a-day stamp
    file (two processes importing it at once on a new day: one renames the other's temporary
    file away and the import raises ``FileNotFoundError``); by then the stamp is written."""
    try:
        import arviz as az
    except FileNotFoundError:
        import arviz as az
    return az


def _arviz():
    try:
        az = _import_arviz()
    except ImportError as err:
        raise ImportError("SampleSet.to_inference_data needs ArviZ 0.x (InferenceData): "
                          "pip install 'arviz>=0.20,<1' (or feassample[arviz]); "
                          f"the import failed with: {err}") from None
    if not hasattr(az, "from_dict") or not hasattr(az, "InferenceData"):
        raise ImportError(f"SampleSet.to_inference_data needs ArviZ 0.x with InferenceData; arviz "
                          f"{getattr(az, '__version__', '?')} has none: pip install 'arviz>=0.20,<1'")
    return az


def _attr(v):
    """A netCDF attribute: numbers and strings as they are, ``None`` as ``"None"``."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, str)):
        return v
    return str(v)


def to_inference_data(samples, *, projections: int = 0, seed: int = 0):
    """``arviz.InferenceData`` of a sample's rows grouped in chains as its diagnostics group them
    (``diagnostics.chain_rows``: walkers, else ancestral families of their first 4 rows; one
    chain for independent draws or rows without ids; rows outside every chain are left out and
    ``attrs["rows_used"]`` counts those kept).

    ``posterior``: ``h`` (``(chain, draw, constraint)``, the certified constraint values, one
    coordinate per band name), ``codes`` (``(chain, draw, code_dim)``, flattened) and, with
    ``projections > 0``, ``proj`` (that many fixed random unit projections of the codes, seeded
    by ``seed``: summaries for high-dimensional codes). ``sample_stats``: ``feasible``,
    ``violation`` (the largest band violation of the row, 0 inside), ``walker`` and
    ``ancestor`` where recorded, ``row`` (the row's index in the sample). ``attrs``: the method,
    status, ``log_prob``, ``log_prob_se``, ``chains_by`` and the run's own R-hat / ESS extremes."""
    az = _arviz()
    if not (isinstance(projections, int) and projections >= 0):
        raise ValueError(f"projections must be an int >= 0, got {projections!r}")
    n = len(samples)
    if n == 0:
        raise ValueError("samples: no row to export")
    chains, by = chain_rows(samples.walker, samples.ancestor)
    if not chains:
        chains, by = [np.arange(n)], "none"
    idx = np.stack(chains)  # (chains, draws)
    bands = (samples.config.get("problem") or {}).get("bands") or {}
    names = list(bands.get("names") or [f"h{j}" for j in range(samples.values.shape[1])])
    values = samples.values.detach().cpu().double().numpy()
    codes = samples.codes.reshape(n, -1).detach().cpu().double().numpy()
    posterior = {"h": values[idx], "codes": codes[idx]}
    dims = {"h": ["constraint"], "codes": ["code_dim"]}
    if projections:
        g = torch.Generator().manual_seed(int(seed))
        u = torch.randn(codes.shape[1], projections, generator=g, dtype=torch.float64)
        u = (u / u.norm(dim=0)).numpy()
        posterior["proj"] = (codes @ u)[idx]
        dims["proj"] = ["projection"]
    lo = np.array([float(v) for v in bands.get("lo", [-math.inf] * len(names))])
    hi = np.array([float(v) for v in bands.get("hi", [math.inf] * len(names))])
    violation = (np.clip(lo - values, 0, None) + np.clip(values - hi, 0, None)).max(1)
    stats = {"feasible": samples.feasible.detach().cpu().numpy()[idx], "violation": violation[idx],
             "row": np.arange(n)[idx]}
    for name in ("walker", "ancestor"):
        column = getattr(samples, name)
        if column is not None:
            stats[name] = column.detach().cpu().numpy()[idx]
    s = samples.stats
    attrs = {"feassample_method": _attr(s.get("method")), "status": samples.status,
             "log_prob": _attr(samples.log_prob), "log_prob_se": _attr(samples.log_prob_se),
             "chains_by": by, "rows": n, "rows_used": int(idx.size)}
    for key in ("rhat_max", "ess_bulk_min", "ess_tail_min", "mixed"):
        if key in s:
            attrs[key] = _attr(s[key])
    coords = {"constraint": names, "code_dim": np.arange(codes.shape[1])}
    if projections:
        coords["projection"] = np.arange(projections)
    with warnings.catch_warnings():
        # ancestral families are many short chains (4 rows each) by design: ArviZ's guess that
        # the axes were swapped ("More chains than draws") does not apply
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return az.from_dict(posterior=posterior, sample_stats=stats, coords=coords, dims=dims,
                            posterior_attrs=attrs, sample_stats_attrs=dict(attrs))


__all__ = ["to_inference_data"]
