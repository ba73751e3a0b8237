"""Baselines behind the same contract as ``fs.sample``: importing this package registers them.

    import feassample as fs, feassample.baselines
    s = fs.sample(problem, n=300, k=10, method="langevin", options={"max_evals": 30_000})

| method | what it does |
|---|---|
| ``activation_max`` | gradient ascent on the unit (``target="max"``) or descent to the band's middle (``"band"``) from random codes, restarts; Lucid's batch diversity term as ``diversity=w`` |
| ``multifaceted`` | the same, started from k-means cluster means of real (or prior) inputs (Nguyen et al. 2016) |
| ``langevin`` | PPGN-style chains in code space: prior score + band-penalty gradient + Gaussian noise |
| ``rejection`` | draws from the prior, keeps those inside the band |
| ``hit_and_run`` | exact hit-and-run chains on the linear slab (``fs.LogisticHalfspace`` only) |

Every method counts per-sample model evaluations in ``stats["model_evals"]``, stops at the
``max_evals`` option, returns only the samples it judged inside the band, and ends with the
core's certificate (``finish``), which sets ``feasible``; ``status`` is ``"success"`` (n certified),
``"partial"`` or ``"infeasible"``. See ``docs/baselines.md``.
"""
from ..core.samplers import register_sampler
from .common import DEFAULT_EVALS_PER_SAMPLE, Baseline, BaselineState
from .rejection import Rejection, RejectionConfig

BASELINES = {cls.name: cls for cls in (Rejection,)}

for _cls in BASELINES.values():
    register_sampler(_cls)

__all__ = ["BASELINES", "DEFAULT_EVALS_PER_SAMPLE", "Baseline", "BaselineState", "Rejection",
           "RejectionConfig"]
