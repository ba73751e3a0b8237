"""The rejection phase of ``smc``: when at least ``rejection_rate`` of the first ``N`` prior
draws are inside the band, the run is plain rejection sampling from the prior. The in-band draws
are certified and kept, fresh batches are drawn until ``n``; every row is an independent draw
(its ``ancestor`` negative) and ``log_prob`` is the log of the accepted fraction."""
from __future__ import annotations

import math

import torch

from ...driver.emit import keep_certified
from .config import SMCState
from .env import Env, prior, score, values


def rejection_round(env: Env, state: SMCState, gen: torch.Generator) -> dict:
    """Rejection mode: keep the in-band rows of the current batch of prior draws (certified),
    then draw the next batch of ``N`` from the prior (evaluated now, kept next round)."""
    N = state.codes.shape[0]
    rows = (state.score <= 0).nonzero().squeeze(1)[: state.samples.capacity - state.samples.count]
    # every row its own id, negative: drawn independently, no ancestor in a population
    first = state.drawn - N  # the draw index of this batch's first row
    kept = keep_certified(env.problem, state.samples, state.codes[rows], state.values[rows],
                          walker=first + rows, ancestor=-1 - (first + rows))
    state.check_evals += kept.evals
    state.rejected_by_check += kept.refused
    new = kept.kept
    # the rows looked at are used up: a resume to a larger n must not keep them again
    state.score[rows] = math.inf
    state.rounds += 1
    if not state.samples.full:
        # the next batch: enough draws for what is missing at the acceptance so far (+20%),
        # at most N (the last batch does not overshoot by a whole population)
        need = state.samples.capacity - state.samples.count
        size = min(N, math.ceil(1.2 * need * state.drawn / max(state.hits, 1)) + 16)
        state.codes = prior(env, size, gen)
        state.values = values(env, state, state.codes)
        state.score = score(env, state.values, state.scale)
        state.drawn += size
        state.hits += int((state.score <= 0).sum())
    return {"round": state.rounds, "acceptance": state.hits / state.drawn, "accepted": new}


__all__ = ["rejection_round"]
