"""Adaptive multilevel splitting: a population of particles that samples the problem's PRIOR
RESTRICTED TO THE SET and estimates the set's prior probability on the way.

Target. ``pi(c) ∝ prior(c) 1[c in X]``: uniform on the box for input-space problems, the standard
normal ``N(0, I)`` (restricted to the code domain, e.g. the code ball of ``problem.project``) for
generator problems; ``FeasibleSet.log_prior`` states it.

Algorithm (subset simulation, Au & Beck, Prob. Eng. Mech. 16, 2001; adaptive multilevel splitting,
Cérou & Guyader, Stoch. Anal. Appl. 25, 2007). A score ``s(c) >= 0`` is 0 inside the band and
grows with the distance outside it (the largest violation over the constraints, each divided by a
scale fixed at init; ``+inf`` for NaN values). ``N`` particles start iid from the prior. At each
stage the next level ``L_i`` is the ``p0``-quantile of the current scores (never below 0); the
fraction ``p_i`` of particles with ``s <= L_i`` survives; ``N`` particles are resampled from the
survivors (systematic or multinomial, from the run's generator), then each moves with a Markov
kernel that leaves the prior restricted to ``{s < L_i}`` invariant. The particles AT the level
die with those above it, so the level's law is the prior on ``{s < L_i}`` and a move is accepted
iff ``s(y) < L_i`` (``<= 0`` in the band): on a plateau of the score (a ReLU unit that is 0 on
most of the prior) an accept rule ``<= L_i`` would let the particles wander back onto the
plateau, and the levels would never leave it.

``"reflect"``  (box priors) ``y = fold(x + sigma sd * xi)``, folded back into the box at the
    walls, with ``sd`` the population's per-coordinate standard deviation, computed once per level
    right after the resampling (the standard adaptive SMC proposal: heavy-tailed weights pin a few
    coordinates, which then get small steps while the others move freely). For a fixed ``sd`` the
    folded Gaussian is a symmetric kernel on the box (the density of reaching ``y`` from ``x`` is a
    sum over mirror images of ``y``, each a Gaussian in ``y' - x``), so "accept iff ``y`` is in the
    level" is the Metropolis rule for the uniform law on the level set.
``"pcn"``  preconditioned Crank-Nicolson ``y = sqrt(1 - beta^2) x + beta xi`` (Cotter, Roberts,
    Stuart & White, Stat. Sci. 28, 2013), reversible with respect to ``N(0, I)``, so "accept iff
    ``y`` is in the domain and ``s(y) <= L_i``" needs no Metropolis-Hastings ratio; its cost does
    not grow with the dimension. On a box prior it runs in probit coordinates
    ``c = lo + (hi - lo) Phi(u)`` (uniform codes <=> standard normal ``u``).

The step (``sigma`` or ``beta``) adapts between rounds from the population's acceptance while the
levels tighten, and is frozen, with ``sd``, once the level reaches 0 (the band): from then on
every round is the same kernel, invariant for the target.

How many rounds. Above the band, a level's rounds are fixed before its first move, from what the
previous level measured: enough that the mean squared jump (per coordinate, in units of ``sd``)
reaches ``level_jump`` and that a particle stays where the resampling put it with probability at
most 1% (Drovandi & Pettitt, Biometrics 67, 2011), at least ``moves``. A rule that stopped on the
current moves would make the number of rounds depend on where they lead, and ``log_prob`` showed
the bias (+1 SE on a 2e-12 tail); fewer rounds (5%, or ``1/e``) left ``log_prob``'s spread over
seeds about 1.3x its standard error at 5e-25. In the band the population moves on until it has decorrelated
(``_mixed``: mean squared jump since the resampling ``>= jump``, 2 being the value between
independent draws, and ``1 - 1/e`` of the particles moved), at most ``max_moves`` rounds; then it
is certified (``problem.check``) and kept, and again after at least ``thin`` rounds and the same
rule, until there are ``n`` samples. That rule is a population average over ``N`` particles (its
dependence on one particle is of order ``1/N``) and comes after ``log_prob`` is fixed.

Probability of the set. ``P(X) = prod_i P(s <= L_i | s <= L_{i-1})`` is estimated by
``prod_i p_i``, the last factor being the fraction with ``s <= 0``. Its relative variance, for
independent particles at every stage (the idealized AMS with a fixed ``p0``), is
``(n0 (1 - p0) / p0 + (1 - r0) / r0) / N`` with ``n0`` stages of survival ``p0`` and a last one of
``r0`` (Cérou, Del Moral, Furon & Guyader, Stat. Comput. 22, 2012, Theorem 1 and eq. (3); Au &
Beck 2001, eq. (14)-(20) without their correlation factor). With the realized fractions ``p_i``:
``se(log p) ≈ sqrt(sum_i (1 - p_i) / (p_i N))``. It ignores the correlation that resampling and a
finite number of moves leave between particles, so it is a lower bound when moves mix slowly;
docs/smc.md measures its calibration on the logistic slab's exact volume.

All randomness comes from one ``torch.Generator`` whose state is kept in ``SMCState.rng``: a run
saves and resumes bit-identically. One ``step`` is one round of moves (a stage begins with the
choice of its level and the resampling, which cost no model evaluation).
"""
from .config import MOVES, PAIRS, RESAMPLING, SMCConfig, SMCState
from .kernel import SMC
from .levels import log_prob_estimate, survival_variance

__all__ = ["MOVES", "PAIRS", "RESAMPLING", "SMCConfig", "SMCState", "SMC", "log_prob_estimate",
           "survival_variance"]
