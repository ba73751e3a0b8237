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
from ..core.sample import register_method
from .activation import activation_max, multifaceted
from .common import DEFAULT_EVALS_PER_SAMPLE
from .hit_and_run import hit_and_run
from .kmeans import kmeans
from .langevin import langevin
from .rejection import rejection

BASELINES = {
    "activation_max": activation_max,
    "multifaceted": multifaceted,
    "langevin": langevin,
    "rejection": rejection,
    "hit_and_run": hit_and_run,
}

for _name, _fn in BASELINES.items():
    register_method(_name, _fn)

__all__ = ["BASELINES", "DEFAULT_EVALS_PER_SAMPLE", "activation_max", "multifaceted", "langevin",
           "rejection", "hit_and_run", "kmeans"]
