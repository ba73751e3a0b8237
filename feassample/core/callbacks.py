"""Observers of a run: they see each state after each step; the math does not know them."""
from __future__ import annotations

from typing import Optional

from .samplers.cover import CoverState
from .samplers.seeds import SeedState
from .samplers.walk import WalkState


class ProgressBar:
    """A tqdm bar over accepted samples with steps and the worst violation in its postfix."""

    def __init__(self, n: int, disable: Optional[bool] = False) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=n, desc="sampling", unit="sample", disable=disable, leave=False)
        self._shown = 0

    def __call__(self, phase: str, state) -> None:
        if isinstance(state, SeedState):
            got = int(state.frozen.sum())
            viol = float(state.best_violation.max()) if state.best_violation.numel() else 0.0
            self._bar.set_postfix_str(f"{phase} step {state.steps} outer {state.outer} "
                                      f"max viol {viol:.3g}", refresh=False)
        elif isinstance(state, (WalkState, CoverState)):
            got = state.accepted
            self._bar.set_postfix_str(f"{phase} round {state.rounds}", refresh=False)
        else:
            return
        if got > self._shown:
            self._bar.update(got - self._shown)
            self._shown = got

    def close(self) -> None:
        self._bar.close()
