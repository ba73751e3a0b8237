"""``ContrastiveExplanation``: one certified answer to "why class t and not class p?", with its
numbers (``summary``) and their file (``save``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from torch import Tensor

from ...core.result import atomic_write_bytes


@dataclass
class ContrastiveExplanation:
    """One answer to "why ``true_class`` and not ``probe_class``?".

    Attributes:
        input: ``I``; reconstruction: ``G(z0)``; generated: ``G(ze)``.
        code0, code: ``z0`` and ``ze`` ``(q,)``.
        residual: ``delta = I - G(z0)``.
        image: ``clamp(G(ze) + delta)``, what ``D`` sees at the result.
        explanation: ``G(z0) - G(ze)``: negative = to be added (red), positive = to be removed
            (blue) to move from the true to the probe class.
        class_probs: ``softmax(D(image))`` ``(C,)`` from the independent check.
        path: ``(T, C)`` class likelihoods (softmax of ``D``) at each iteration of the solver
            (of the run that produced the answer, when restarts were needed).
        code_path: ``(T, q)`` the codes at those iterations (``G(code_path[k])`` is the paper's
            Fig. 5a row).
        satisfied: the independent check: ``|l_t - l_p| <= tol`` and
            ``min(l_t, l_p) - max_other l_j >= margin`` (always both, also for ``"xgems"``, whose
            solver ignores the second: that is the ablation's point).
        message: why not (or a one-line summary when satisfied).
        gap: ``l_t - l_p``; margin_min: ``min(l_t, l_p) - max_other l_j``; top_other: that ``j``.
        distance: ``||ze - z0||``; fit_mse: mean squared error of ``G(z0)`` against ``I``.
        iteration: the solver iteration the returned code comes from.
    """

    true_class: int
    probe_class: int
    constraints: str
    margin: float
    tol: float
    input: Tensor
    reconstruction: Tensor
    generated: Tensor
    residual: Tensor
    image: Tensor
    explanation: Tensor
    code0: Tensor
    code: Tensor
    class_probs: Tensor
    path: Tensor
    code_path: Tensor
    satisfied: bool
    equality_ok: bool
    margin_ok: bool
    message: str
    gap: float
    margin_min: float
    top_other: int
    distance: float
    fit_mse: float
    iteration: int
    stats: dict = field(default_factory=dict)

    @property
    def added(self) -> Tensor:
        """``max(G(ze) - G(z0), 0)``: what must be added (red)."""
        return (-self.explanation).clamp(min=0)

    @property
    def removed(self) -> Tensor:
        """``max(G(z0) - G(ze), 0)``: what must be removed (blue)."""
        return self.explanation.clamp(min=0)

    def summary(self) -> dict:
        """JSON-able numbers (no images)."""
        return {"true_class": self.true_class, "probe_class": self.probe_class,
                "constraints": self.constraints, "margin": self.margin, "tol": self.tol,
                "satisfied": self.satisfied, "equality_ok": self.equality_ok,
                "margin_ok": self.margin_ok, "message": self.message, "gap": self.gap,
                "margin_min": self.margin_min, "top_other": self.top_other,
                "distance": self.distance, "fit_mse": self.fit_mse, "iteration": self.iteration,
                "class_probs": [round(float(v), 6) for v in self.class_probs],
                "code0": [float(v) for v in self.code0], "code": [float(v) for v in self.code],
                "stats": self.stats}

    def save(self, folder: Union[str, Path], name: str = "contrastive") -> Path:
        """Write ``<name>.json`` (the numbers and the class-likelihood path) into ``folder``;
        returns its path. The picture: ``feassample.viz.contrastive.save_explanation``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = self.summary()
        data["path"] = [[round(float(v), 6) for v in row] for row in self.path.tolist()]
        out = folder / f"{name}.json"
        text = json.dumps(data, indent=2) + "\n"
        atomic_write_bytes(out, lambda fh: fh.write(text.encode()))  # a link there is replaced
        return out
