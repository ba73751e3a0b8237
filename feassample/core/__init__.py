"""Problem-agnostic math: bands, the FeasibleSet contract, diversity, the augmented Lagrangian,
the sampler protocol, the samplers, the driver and the result type. No I/O, no Hydra, no image
code."""
from .bands import Bands
from .diversity import (OBJECTIVES, CodeObjective, Diversity, NoDiversity, Pool, PoolStats,
                        RepulsiveEnergy, SumSquaredDistances, make_objective, register_objective)
from .driver import Checkpoint, finish
from .lagrangian import ALConfig
from .problem import FeasibleSet, FunctionSet, Measurement, from_functions
from .result import SampleSet
from .sampling import SamplerConfig
from .kernels import (SAMPLERS, CoverConfig, JointConfig, NoOptions, Sampler, SeedConfig, Seeds,
                       WalkConfig, register_sampler)
from .state import SampleBuffer, State

__all__ = ["Bands", "OBJECTIVES", "CodeObjective", "Diversity", "NoDiversity", "Pool", "PoolStats",
           "RepulsiveEnergy", "SumSquaredDistances", "make_objective", "register_objective",
           "Checkpoint", "finish", "ALConfig", "FeasibleSet", "FunctionSet", "Measurement",
           "from_functions", "SampleSet", "SamplerConfig", "SAMPLERS", "CoverConfig",
           "JointConfig", "NoOptions", "Sampler", "SeedConfig", "Seeds", "WalkConfig",
           "register_sampler", "SampleBuffer", "State"]
