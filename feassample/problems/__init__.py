"""Problems built on the core: the analytic logistic slab, neuron inverse sets, intersections."""
from .intersection import Intersection
from .logistic import LogisticHalfspace
from .neuron import LayerProbe, NeuronInverseSet, neuron_intersection, parse_unit, resolve_layer
from .preprocessing import Preprocessing, model_preprocessing

__all__ = ["Intersection", "LogisticHalfspace", "LayerProbe", "NeuronInverseSet",
           "neuron_intersection", "parse_unit", "resolve_layer", "Preprocessing",
           "model_preprocessing"]
