"""The driver: one loop for every kernel (``loop.run``): phases, progress, callbacks, signals,
checkpoints and resume; the certify-and-keep of rows (``emit``); the ``budget="auto"`` decision
(``passes``); the one ``finish`` (``finish``). It knows kernels only through the protocol of
``core.kernels.base``, never a state's class."""
from .checkpoint import Checkpoint, Saver, Store
from .finish import finish
from .loop import run
from .signals import Interrupt

__all__ = ["Checkpoint", "Saver", "Store", "finish", "run", "Interrupt"]
