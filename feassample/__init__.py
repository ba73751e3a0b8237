"""feassample: certified, diverse samples of feasible sets known only through differentiable
constraints, such as the inverse set of a neuron ``{x : z1 <= f(x) <= z2}``."""
from .api import overlap, sample
from .analysis import Facet, Facets, Overlap, facets
from .core import (ALConfig, Bands, CoverConfig, Diversity, FeasibleSet, JointConfig, Measurement,
                   Pool, RepulsiveEnergy, SampleBuffer, SampleSet, Sampler, SamplerConfig,
                   SeedConfig, State, SumSquaredDistances, WalkConfig, from_functions,
                   register_objective, register_sampler)
from .core.problem import SharedForward
from .problems import (Intersection, LogisticHalfspace, NeuronInverseSet, Preprocessing,
                       neuron_intersection)
from .problems.contrastive.explain import explain_contrast, explain_contrasts
from .problems.contrastive.explanation import ContrastiveExplanation

__version__ = "0.1.0"
__all__ = ["ALConfig", "Bands", "FeasibleSet", "Measurement", "SampleSet", "SamplerConfig",
           "CoverConfig", "Diversity", "JointConfig", "Pool", "RepulsiveEnergy", "SampleBuffer",
           "Sampler", "SeedConfig", "State", "SumSquaredDistances", "WalkConfig",
           "register_objective", "register_sampler", "SharedForward",
           "from_functions", "sample", "facets", "overlap", "Facet", "Facets", "Overlap", "Intersection", "LogisticHalfspace", "NeuronInverseSet",
           "Preprocessing", "neuron_intersection",
           "ContrastiveExplanation", "explain_contrast", "explain_contrasts", "__version__"]

from . import baselines  # noqa: E402,F401  (registers the baseline methods with fs.sample)
