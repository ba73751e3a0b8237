"""feassample: certified, diverse samples of feasible sets known only through differentiable
constraints, such as the inverse set of a neuron ``{x : z1 <= f(x) <= z2}``."""
from .api import sample
from .core import (ALConfig, Bands, FeasibleSet, Measurement, SampleSet, SamplerConfig,
                   from_functions)
from .problems import (Intersection, LogisticHalfspace, NeuronInverseSet, Preprocessing,
                       neuron_intersection)
from .problems.contrastive_explain import ContrastiveExplanation, explain_contrast, explain_contrasts

__version__ = "0.1.0"
__all__ = ["ALConfig", "Bands", "FeasibleSet", "Measurement", "SampleSet", "SamplerConfig",
           "from_functions", "sample", "Intersection", "LogisticHalfspace", "NeuronInverseSet",
           "Preprocessing", "neuron_intersection",
           "ContrastiveExplanation", "explain_contrast", "explain_contrasts", "__version__"]

from . import baselines  # noqa: E402,F401  (registers the baseline methods with fs.sample)
