"""The progress bar of a run (tqdm), over the phases' ``(done, total)``."""
from __future__ import annotations


class Bar:
    """A tqdm bar over the phases' progress ``(done, total)``, or nothing."""

    def __init__(self, show: bool, total: int) -> None:
        self._bar = None
        if show:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, desc="sampling", unit="sample", leave=False)
        self._shown = 0

    def update(self, phase: str, done: int, info: dict) -> None:
        if self._bar is None:
            return
        shown = " ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
                         if isinstance(v, (int, float, str)) and not isinstance(v, bool))
        self._bar.set_postfix_str(f"{phase} {shown}", refresh=False)
        if done > self._shown:
            self._bar.update(done - self._shown)
            self._shown = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


__all__ = ["Bar"]
