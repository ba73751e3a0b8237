"""A new sampler in one file: random-walk Metropolis inside the band (uniform target on a box).

Run from Python (``python examples/extending_sampler.py``) or from the command line, with the
progress bar, checkpoints and resume that every sampler gets from the driver:

    feassample sampler=plugin sampler._target_=examples/extending_sampler.py:BoxMetropolis \\
        +sampler.options.step=0.05 problem.d=16

Nothing in the library is edited: the class below implements the protocol of
``feassample.core.kernels.base`` (docs/extending.md) and registers itself by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import feassample as fs
from feassample.core import SampleBuffer, Sampler, State, register_sampler
from feassample.core.driver.emit import keep_certified


@dataclass(frozen=True)
class BoxMetropolisConfig:
    """step: proposal standard deviation, as a fraction of the box's width; thin: rounds
    between two samples of a walker."""

    step: float = 0.05
    thin: int = 5

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if isinstance(self.thin, bool) or not isinstance(self.thin, int) or self.thin < 1:
            raise ValueError(f"thin must be an integer >= 1, got {self.thin!r}")


@dataclass
class BoxMetropolisState(State):
    codes: Tensor            # (K, *code_shape) walkers, all inside the band
    values: Tensor           # (K, m) their constraint values
    samples: SampleBuffer    # accepted rows (streamed to the run directory by the driver)
    rng: Tensor              # the generator's state: resume is bit-identical
    rounds: int = 0
    model_evals: int = 0
    moves: int = 0


@register_sampler
class BoxMetropolis(Sampler):
    """Walkers start at the shared seed phase's feasible seeds; each round every walker proposes
    ``x + step * width * N(0, I)`` and moves there when it lies in the box and in the band (a
    symmetric proposal on a uniform target: the Metropolis rule is exactly this)."""

    name = "box_metropolis"
    Config = BoxMetropolisConfig
    state_class = BoxMetropolisState
    needs_seeds = True

    def init(self, problem, run, key, seeds=None) -> BoxMetropolisState:
        self.bind(problem, run)
        if problem.box is None:
            raise ValueError("box_metropolis needs a problem with a box")
        # a walker column makes the run's diagnostics (R-hat, ESS) treat each walker as a chain
        walkers = torch.arange(seeds.codes.shape[0], device=seeds.codes.device)
        samples = SampleBuffer.empty(run.n, seeds.codes, seeds.values, walker=walkers[:1])
        keep_certified(problem, samples, seeds.codes, seeds.values, walker=walkers)
        rng = torch.Generator().manual_seed(int(key) + 1).get_state()
        return BoxMetropolisState(seeds.codes.clone(), seeds.values.clone(), samples, rng)

    def step(self, state: BoxMetropolisState) -> tuple[BoxMetropolisState, dict]:
        lo, hi = self.problem.box
        gen = torch.Generator()
        gen.set_state(state.rng)
        noise = torch.randn(state.codes.shape, generator=gen, dtype=state.codes.dtype)
        state.rng = gen.get_state()
        proposal = state.codes + self.config.step * (hi - lo) * noise.to(state.codes.device)
        in_box = ((proposal >= lo) & (proposal <= hi)).flatten(1).all(1)
        with torch.no_grad():
            values = self.problem.measure(self.problem.decode(proposal)).values
        state.model_evals += proposal.shape[0]
        move = in_box & self.problem.bands.feasible(values)
        state.codes[move], state.values[move] = proposal[move], values[move]
        state.moves += int(move.sum())
        state.rounds += 1
        new = 0
        if state.rounds % self.config.thin == 0:  # certified (problem.check) before it is kept
            walkers = torch.arange(state.codes.shape[0], device=state.codes.device)
            new = keep_certified(self.problem, state.samples, state.codes, state.values,
                                 walker=walkers).kept
        return state, {"round": state.rounds, "accepted": new}

    def done(self, state: BoxMetropolisState) -> bool:
        return state.samples.full

    def finalize(self, state: BoxMetropolisState):
        codes = state.samples.codes[: state.samples.count]
        return codes, {"rounds": state.rounds, "model_evals": state.model_evals,
                       "acceptance": state.moves / max(state.rounds * state.codes.shape[0], 1)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    problem = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    s = fs.sample(problem, n=200, k=10, seed=0, method="box_metropolis", options={"step": 0.05},
                  progress=True)
    print(s.summary())
    print("inside the exact set:", bool(problem.membership(s.x).all()))
