"""Problem-agnostic math: bands, the FeasibleSet contract, diversity, the augmented Lagrangian,
the samplers and the result type. No I/O, no Hydra, no image code."""
from .bands import Bands
from .diversity import CodeObjective, Diversity, NoDiversity, PoolStats, SumSquaredDistances
from .lagrangian import ALConfig
from .problem import FeasibleSet, FunctionSet, Measurement, from_functions
from .result import SampleSet
from .sample import SamplerConfig, sample

__all__ = ["Bands", "CodeObjective", "Diversity", "NoDiversity", "PoolStats", "SumSquaredDistances", "ALConfig",
           "FeasibleSet", "FunctionSet", "Measurement", "from_functions", "SampleSet",
           "SamplerConfig", "sample"]
