"""The covering walk: a Markov chain whose stationary law is UNIFORM on the feasible set.

The paper's walk (``walk.py``) climbs a diversity objective and piles its samples on the boundary
of the set. This walk instead runs ``K`` Metropolis-Hastings chains that leave the uniform law on
``{c in domain : lo <= h(decode(c)) <= hi}`` (codes, Lebesgue measure) invariant, and keeps every
``thin``-th state of each chain after a burn-in. It only uses the ``FeasibleSet`` contract:
``decode``/``measure`` (values and, by autograd, the constraint gradients ``G = dh/dc``, one
forward+backward per code), ``bands``, ``box``/``project`` (the domain) and ``check``.

Moves (a cycle of them is the ``schedule``; each move is one proposal and one model evaluation
per moving walker, plus the Newton steps of the manifold move):

``"level"``  isotropic random walk ``y = x + sigma xi``, folded back into the box (reflection at
    the walls, a symmetric kernel on the box); outside a non-box domain (``project(y) != y``) it
    is rejected without a model evaluation. Accepted iff ``y`` is in the band. Exact for any
    constraint. It moves the value of ``h`` across the band, so the law of ``h`` (the volume of
    the level sets) comes out right.
``"pairs"``  (box domains) random disjoint blocks of ``m + 1`` coordinates; in each block the code
    moves along the direction of the block that is orthogonal to the ``m`` constraint gradients
    (for one constraint: ``(g_j, -g_i)``), to a uniform point of the box chord (a Gibbs step
    on that line) or within a window of it. With ``directions="ensemble"`` the gradients are
    those of a partner walker of the other half of the ensemble (red-black updates), so the
    proposal does not depend on the moving walker's state: it is symmetric and the move, accepted
    iff the proposal is in the band, is exact for any constraint (for an affine constraint it is
    always accepted). ``directions="own"`` uses the walker's own gradient: exact only for affine
    constraints.
``"normal"``  (box domains) across the band along a partner's unit gradient ``n``: ``t`` uniform
    on the chord of ``x + t n`` cut by the box and by the band under the walker's own linear
    model of ``h``; Metropolis-Hastings with the ratio of the chord lengths at ``x`` and ``y``.
    Exact for any constraint; for an affine one, a Gibbs draw of ``h`` across the band.
``"manifold"``  a tangent Gaussian step plus a Newton correction along the normal space at ``x``
    to a new level ``c' = h(x) + N(0, s_c^2)`` (Zappa, Holmes-Cerfon & Goodman, CPAM 2018,
    extended from a level set to a band): the proposal density is
    ``p(v) p(c'|c) |det(G_y Q_x)|`` so the Metropolis-Hastings ratio is
    ``p(v') |det(G_x Q_y)| / (p(v) |det(G_y Q_x)|)``; a reverse Newton solve checks that the
    reverse move returns to ``x`` (otherwise the move is rejected). Exact up to the Newton
    tolerance; the move of choice for curved constraints in a non-box domain (a code ball).

Step sizes (one per move, shared by the walkers) adapt toward an acceptance rate during the
burn-in; with ``schedule=None`` the burn-in also picks the schedule by expected squared jump per
model evaluation. Both are frozen after it, so the chain that produces the samples is a fixed
(non-adaptive) kernel. All randomness comes
from one ``torch.Generator`` whose state is kept in ``CoverState.rng``: a run can be saved and
resumed bit-identically. See ``docs/coverage.md`` for the measurements behind the defaults.
"""
from .config import AUTO_START, MOVES, CoverConfig, CoverState
from .kernel import Cover, choose_schedule, done, init, step

__all__ = ["AUTO_START", "MOVES", "CoverConfig", "CoverState", "Cover", "choose_schedule", "done",
           "init", "step"]
