"""The sampler protocol: what every method implements, and the registry of methods.

A sampler is written in the shape of a BlackJAX kernel. It has

* a typed ``Config`` (a frozen dataclass: the method's own settings, validated on construction),
* a ``state_class`` (a ``State`` dataclass of tensors and numbers, ``State`` below: ``state_dict()`` and
  ``from_state_dict()``/``load_state_dict()`` save and restore it exactly, RNG state included),
* ``init(problem, run, key, seeds=None) -> state``: bind the problem and the run settings and
  build the first state (``key`` is the run's integer seed; ``seeds`` the shared seed phase's
  hand-off, for methods with ``needs_seeds = True``),
* ``step(state) -> (state, info)``: one round (``info`` a small dict of that round's
  diagnostics: it is handed to the callbacks and never kept in the state),
* ``done(state)``, ``progress(state) -> (done, total)``, ``samples(state) -> SampleBuffer | None``
  (the accepted rows, which the checkpoint writer streams to disk as they grow),
* ``finalize(state) -> (codes, stats)``: the codes to certify and the method's statistics
  (``stats["why"]`` says why a run that stopped short did so).

One driver (``driver.run``) runs any sampler with a progress bar, callbacks ``(phase, state,
info)``, signals, checkpoints and resume; nothing outside a sampler's own module knows its state
class. Status comes from the certificate, in ``driver.finish``.

A sampler in a user's file registers with ``register_sampler`` (Python) or is named by
``sampler._target_=path/to/file.py:Class`` on the command line. See ``docs/extending.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional

from torch import Tensor

from ..options import check_options, did_you_mean
from ..state import SampleBuffer, State, buffer_of


# -- the hand-off from the seed phase ----------------------------------------------------------
@dataclass
class Seeds:
    """What the shared seed phase hands to a method with ``needs_seeds``: feasible starting codes.

    Attributes:
        codes: ``(K', *code_shape)`` seeds inside the band (``K' <= k``).
        values: ``(K', m)`` their constraint values; embedding: ``(K', p)`` their embeddings.
        multipliers: ``(K', m, 2)`` and penalty ``(K',)``: the augmented Lagrangian's final state.
        model_evals: evaluations spent by the seed phase.
    """

    codes: Tensor
    values: Tensor
    embedding: Tensor
    multipliers: Tensor
    penalty: Tensor
    model_evals: int = 0


# -- the protocol -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NoOptions:
    """The settings of a method that has none."""


class Sampler:
    """Base class of every sampling method (see the module docstring for the protocol).

    Class attributes:
        name: the method's name (``fs.sample(..., method=name)``, ``sampler.method=name``).
        Config: the method's typed settings (a frozen dataclass).
        state_class: the method's ``State`` subclass (what ``init`` returns).
        needs_seeds: run the shared seed phase first and pass its ``Seeds`` to ``init``.
        checkpoint_every_s: least seconds between two checkpoints of the state (0: every step).
        uses_gradients: the method follows the constraints' gradients (a constraint without one
            is then refused before work).
        initial_rows: ``"k"`` or ``"n"``: how many ``initial_codes`` rows the method starts from
            (``None``: it draws its own; methods with ``needs_seeds`` take ``k`` for the seeds).

    An instance is built from options (``Sampler(budget=20)``) or a ``Config`` instance; ``init``
    binds it to one run (``self.problem``, ``self.run``), so an instance serves one run at a time.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions
    state_class: ClassVar[type] = State
    needs_seeds: ClassVar[bool] = False
    checkpoint_every_s: ClassVar[float] = 0.0
    initial_rows: ClassVar[Optional[str]] = None
    uses_gradients: ClassVar[bool] = True

    def __init__(self, config: Any = None, **options: Any) -> None:
        self.config = make_config(type(self), config, options)
        self.problem = None
        self.run = None

    # binding ------------------------------------------------------------------------------
    def bind(self, problem, run) -> None:
        """Remember the problem and the run settings (``SamplerConfig``) for ``step``."""
        self.problem, self.run = problem, run

    # the protocol -------------------------------------------------------------------------
    def init(self, problem, run, key: int, seeds: Optional[Seeds] = None) -> State:
        raise NotImplementedError

    def step(self, state: State) -> tuple[State, dict]:
        raise NotImplementedError

    def done(self, state: State) -> bool:
        raise NotImplementedError

    def finalize(self, state: State) -> tuple[Tensor, dict]:
        raise NotImplementedError

    def progress(self, state: State) -> tuple[int, int]:
        buf = self.samples(state)
        return (buf.count, buf.capacity) if buf is not None else (0, 0)

    def samples(self, state: State) -> Optional[SampleBuffer]:
        return buffer_of(state)

    def handoff(self, state: State) -> Optional[Seeds]:
        """What a phase hands to the next one (only the seed phase hands anything)."""
        return None

    def load_state(self, problem, run, data: dict, samples: Optional[SampleBuffer]) -> State:
        """Rebuild a saved state for this run (binds the sampler first)."""
        self.bind(problem, run)
        return self.state_class.from_state_dict(data, samples)

    def describe(self) -> str:
        return f"{self.name}({self.config})"


def make_config(sampler_cls: type, config: Any, options: dict):
    """The sampler's ``Config`` from a ``Config`` instance, a dict, and/or keyword options; an
    unknown key is refused with the valid ones and the closest match."""
    cfg_cls = sampler_cls.Config
    if isinstance(config, cfg_cls):
        config = dataclasses.replace(config, **options) if options else config
        check_options(config)
        return config
    given = dict(config or {}) if isinstance(config, dict) or config is None else None
    if given is None:
        raise TypeError(f"{sampler_cls.__name__}: config must be a {cfg_cls.__name__} or a dict, "
                        f"got {type(config).__name__}")
    given.update(options)
    check_keys(f"method {sampler_cls.name!r}", given, [f.name for f in fields(cfg_cls)])
    config = cfg_cls(**given)
    check_options(config)  # a user's Config too: each field by its annotation and metadata
    return config


def check_keys(what: str, given: dict, valid: list) -> None:
    """Refuse keys of ``given`` that are not in ``valid`` with one line naming them."""
    unknown = [k for k in given if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            hint = did_you_mean(k, valid)
            hints.append(f"{k!r}" + (f" ({hint})" if hint else ""))
        raise ValueError(f"{what} has no option {', '.join(hints)}; its options are "
                         f"{sorted(valid) if valid else 'none'}")


# -- the registry -----------------------------------------------------------------------------
SAMPLERS: dict[str, type] = {}


def register_sampler(cls: type, name: Optional[str] = None, *, replace: bool = False) -> type:
    """Make ``fs.sample(problem, method=name)`` run the ``Sampler`` subclass ``cls``.

    Usable as a decorator. ``name`` defaults to ``cls.name``. Re-registering a name is refused
    unless ``replace=True`` (registering the same class again is a no-op)."""
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise TypeError(f"register_sampler takes a feassample Sampler subclass, got {cls!r}")
    name = name or cls.name
    if not name or not isinstance(name, str):
        raise ValueError(f"{cls.__name__} needs a name (class attribute name = '...')")
    if name in SAMPLERS and SAMPLERS[name] is not cls and not replace:
        raise ValueError(f"a sampler named {name!r} is already registered "
                         f"({SAMPLERS[name].__module__}.{SAMPLERS[name].__name__}); pass replace=True")
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass of the method's settings")
    SAMPLERS[name] = cls
    return cls


def sampler_class(method: Any) -> type:
    """The ``Sampler`` subclass for a method name, class or instance (clear error otherwise)."""
    if isinstance(method, Sampler):
        return type(method)
    if isinstance(method, type) and issubclass(method, Sampler):
        return method
    if isinstance(method, str) and method in SAMPLERS:
        return SAMPLERS[method]
    hint = did_you_mean(method, SAMPLERS)
    hint = f" ({hint})" if hint else ""
    raise ValueError(f"method must be one of {sorted(SAMPLERS)} or a Sampler, got {method!r}{hint}")


__all__ = ["Seeds", "Sampler", "NoOptions", "make_config", "check_keys",
           "SAMPLERS", "register_sampler", "sampler_class"]
