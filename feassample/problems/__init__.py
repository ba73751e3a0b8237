"""Problems built on the core: the analytic logistic slab and intersections of problems."""
from .intersection import Intersection
from .logistic import LogisticHalfspace

__all__ = ["Intersection", "LogisticHalfspace"]
