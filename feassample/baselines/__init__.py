"""Baselines behind the same contract as ``fs.sample``: importing this package registers them.

    import feassample as fs, feassample.baselines
    s = fs.sample(problem, n=300, k=10, method="langevin", options={"max_evals": 30_000})

| method | class (options) | what it does | one ``step`` |
|---|---|---|---|
| ``activation_max`` | ``ActivationMax`` (``ActivationConfig``) | gradient ascent on the unit (``target="max"``) or descent to the band's middle (``"band"``) from random codes (or ``initial_codes``), restarts; Lucid's batch diversity term as ``diversity=w`` | one gradient step of the restart's batch (its last one also measures and keeps) |
| ``multifaceted`` | ``Multifaceted`` (``MultifacetedConfig``) | the same, started from k-means cluster means of real (or prior) inputs (Nguyen et al. 2016) | as ``activation_max`` (the facets are found in ``init``) |
| ``langevin`` | ``Langevin`` (``LangevinConfig``) | PPGN-style chains in code space: prior score + band-penalty gradient + Gaussian noise; ``initial_codes`` start the chains | one Langevin step of the k chains |
| ``rejection`` | ``Rejection`` (``RejectionConfig``) | draws from the prior, keeps those inside the band | one batch of draws |
| ``hit_and_run`` | ``HitAndRun`` (``HitAndRunConfig``) | exact hit-and-run chains on the linear slab (``fs.LogisticHalfspace`` only) | one move of the k chains (and the keep when due) |

Every method counts per-sample model evaluations in ``stats["model_evals"]``, stops at the
``max_evals`` option, returns only the samples it judged inside the band, and ends with the
core's certificate (``finish``), which sets ``feasible``; ``status`` is ``"success"`` (n certified),
``"partial"`` or ``"infeasible"``. Each is a ``Baseline`` (a ``Sampler``): its random draws come
from one generator kept in its state, so a checkpointed run resumes exactly. ``kmeans`` is a
helper of ``multifaceted``. See ``docs/baselines.md``.
"""
from ..core.kernels import register_sampler
from .activation import ActivationConfig, ActivationMax, Multifaceted, MultifacetedConfig
from .common import DEFAULT_EVALS_PER_SAMPLE, Baseline, BaselineState
from .hit_and_run import HitAndRun, HitAndRunConfig
from .kmeans import kmeans
from .langevin import Langevin, LangevinConfig
from .rejection import Rejection, RejectionConfig

BASELINES = {cls.name: cls for cls in (ActivationMax, Multifaceted, Langevin, Rejection, HitAndRun)}

for _cls in BASELINES.values():
    register_sampler(_cls)

__all__ = ["BASELINES", "DEFAULT_EVALS_PER_SAMPLE", "Baseline", "BaselineState",
           "ActivationMax", "ActivationConfig", "Multifaceted", "MultifacetedConfig",
           "Langevin", "LangevinConfig", "Rejection", "RejectionConfig", "HitAndRun",
           "HitAndRunConfig", "kmeans"]
