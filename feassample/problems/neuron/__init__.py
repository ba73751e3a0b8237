"""The inverse set of a neuron: ``{x valid : z1 <= f(x) <= z2}`` for any ``torch.nn.Module``
(paper §3.1–3.2, eqs. 4–5).

The unit is read by a forward hook on a named layer, so the model's own output can be anything
(a tensor, a tuple, a dict): only the hooked layers matter, and the forward pass stops as soon
as every needed layer has been seen. When the encoder is a layer path of the same model, the
embedding is captured in that same pass: one forward per step.

Three modules: ``layers`` (finding a layer by its dotted name, capturing layer outputs with
hooks), ``units`` (naming a unit of a layer and reading it) and ``inverse_set`` (the
``NeuronInverseSet`` problem and the intersection of several units' sets).
"""
from .inverse_set import NeuronInverseSet, neuron_intersection
from .layers import OUTPUT, LayerProbe, resolve_layer
from .units import Unit, parse_unit, unit_reader

__all__ = ["NeuronInverseSet", "neuron_intersection", "LayerProbe", "OUTPUT", "resolve_layer",
           "Unit", "parse_unit", "unit_reader"]
