"""Problems built on the core: the analytic logistic slab, neuron inverse sets, intersections."""
from .intersection import Intersection
from .logistic import LogisticHalfspace
from .neuron import LayerProbe, NeuronInverseSet, resolve_layer

__all__ = ["Intersection", "LogisticHalfspace", "LayerProbe", "NeuronInverseSet", "resolve_layer"]
