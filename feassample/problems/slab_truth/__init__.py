r"""Exact ground truth for a slab of the unit cube.


The set is ``S = {x in [0,1]^d : a <= w.x <= b}`` with ``w`` of any signs (zeros allowed),
``a < b`` and ``a = -inf`` / ``b = +inf`` allowed.  Write ``t = w.x``.  Coordinates with
``w_i = 0`` drop out of ``t`` (they are uniform and independent of everything else on ``S``),
and by the reflection ``w_i U_i = w_i + |w_i| (1 - U_i)`` a negative weight is a positive one
plus a shift, so under the uniform law on the cube ``t = shift + sum_i c_i V_i`` with
``c_i = |w_i| > 0`` and ``V_i`` iid uniform.  Only ``[a', b'] = [a, b] ∩ [t_min, t_max]`` matters.

One module per piece of the math; ``SlabLaw`` (in ``law``) is the one public name:

* ``cumulants`` -- one tilted uniform coordinate, the cumulant generating function of ``t`` and
  the log characteristic function and envelope shared by the two inversions.
* ``inclusion_exclusion`` -- the cube law of ``t`` for few nonzero weights, with an exact
  rational fallback.
* ``cf_inversion`` -- the cube law of ``t`` for any number of weights, and the law of ``t`` on
  ``S`` by exponential tilting (finite far in the tails, no cancellation for thin slabs).
* ``sampler`` -- the exact iid uniform sampler on ``S`` (tilted slice-rejection).
* ``law`` -- ``SlabLaw``: input checks, the choice of ``theta``, the public cdf/pdf/volume,
  membership and sampling.
"""
from .law import SlabLaw

__all__ = ["SlabLaw"]
