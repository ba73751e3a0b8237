"""Intersections of feasible sets over the same codes (paper §3.5, eqs. 11–12)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..core.problem import FeasibleSet, Measurement, measure_shared


class Intersection(FeasibleSet):
    """Codes that satisfy every member's bands: the constraints are stacked, ``(B, sum m_i)``.

    Members must share the code space (same ``code_shape`` and box) and the decoder; the first
    member's decoder, initial codes and embedding are used. Members that implement
    ``core.problem.SharedForward`` with equal ``forward_key()`` (e.g. neuron inverse sets of
    one model) share one forward pass per step; the others each run their own ``measure``.
    """

    def __init__(self, members: Sequence[FeasibleSet]) -> None:
        members = list(members)
        if len(members) < 1:
            raise ValueError("Intersection needs at least one problem")
        for i, p in enumerate(members):
            if not isinstance(p, FeasibleSet):
                raise TypeError(f"Intersection member {i} is a {type(p).__name__}, not a FeasibleSet")
        first = members[0]
        for i, p in enumerate(members[1:], start=1):
            if tuple(p.code_shape) != tuple(first.code_shape):
                raise ValueError(f"Intersection member {i} has code_shape {p.code_shape}, member 0 "
                                 f"has {first.code_shape}: members must share their codes")
            if p.box != first.box:
                raise ValueError(f"Intersection member {i} has box {p.box}, member 0 has {first.box}")
            if getattr(p, "generator", None) is not getattr(first, "generator", None):
                raise ValueError(f"Intersection member {i} decodes codes with another generator than "
                                 "member 0: members must share the generator (or all have none)")
        self.members = members
        bands = first.bands
        for p in members[1:]:
            bands = bands.concat(p.bands)
        self.bands = bands
        self.code_shape, self.input_shape = first.code_shape, first.input_shape
        self.box, self.dtype = first.box, first.dtype
        self.embedding_space = first.embedding_space
        self.device = getattr(first, "device", torch.device("cpu"))

    def decode(self, codes: Tensor) -> Tensor:
        return self.members[0].decode(codes)

    def measure(self, x: Tensor) -> Measurement:
        parts = measure_shared(self.members, x)
        embedding = next((m.embedding for m in parts if m.embedding is not None), None)
        return Measurement(torch.cat([m.values for m in parts], dim=1), embedding)

    def project(self, codes: Tensor) -> Tensor:
        """Every member's projection in turn (members share codes: box, code ball...)."""
        for p in self.members:
            codes = p.project(codes)
        return codes

    def init_codes(self, n, generator, dtype=None, device="cpu"):
        return self.members[0].init_codes(n, generator, dtype, device)

    def check(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Every member's own certificate; a row is feasible when all members agree."""
        checks = [p.check(codes) for p in self.members]
        values = torch.cat([v.to(checks[0][0].dtype) for v, _ in checks], dim=1)
        feasible = torch.stack([f for _, f in checks], dim=0).all(dim=0)
        return values, feasible

    def describe(self) -> str:
        return "Intersection(" + ", ".join(p.describe() for p in self.members) + ")"

    def config(self) -> dict:
        cfg = super().config()
        cfg["members"] = [p.config() for p in self.members]
        return cfg
