"""Every method's ``SampleSet`` has the same stable fields with one meaning: ``status``,
``message``, ``n_evals``, ``max_violation``, ``log_prob``/``log_prob_se`` and ``diagnostics``,
and one nested evaluation count; method extras live in ``stats``."""
from __future__ import annotations

import math

import pytest
import torch

import feassample as fs
from feassample.core.kernels import SAMPLERS

STATUSES = {"success", "partial", "infeasible", "interrupted"}
FLAT_COUNTS = ("model_evals", "check_evals", "diagnostic_evals", "auto_diagnostic_evals",
               "vjp_evals", "walk_evals", "walk_steps")


def _slab():
    torch.manual_seed(0)
    return fs.LogisticHalfspace.random(8, 0.55, 0.75)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_every_method_reports_the_stable_fields_with_one_meaning(method):
    p = _slab()
    n = 30
    s = fs.sample(p, n=n, k=5, seed=1, method=method)
    assert s.status in STATUSES and isinstance(s.message, str) and s.message
    assert s.message == s.stats["message"] and s.status == s.stats["status"]
    # one nested count; the flat counters of the protocol are folded into it
    evals = s.stats["evals"]
    assert isinstance(s.n_evals, int) and s.n_evals == evals["model"] > 0
    assert evals["check"] >= len(s)  # the certificate evaluated every returned row at least once
    assert not [k for k in FLAT_COUNTS if k in s.stats], sorted(s.stats)
    # max_violation from the returned rows' own certificate, recomputed here from the values
    if len(s):
        assert s.max_violation == pytest.approx(float(p.bands.violation(s.values).amax()), abs=1e-12)
        if bool(s.feasible.all()):
            assert s.max_violation <= float(p.bands.tol) + 1e-12
    # log P: a number with a positive SE, or None for both
    assert (s.log_prob is None) == (s.log_prob_se is None)
    if s.log_prob is not None:
        assert math.isfinite(s.log_prob) and s.log_prob <= 0 and s.log_prob_se >= 0
    # diagnostics: None, or a dict with the same keys for every method
    if s.diagnostics is not None:
        assert {"duplicates", "mixed"} <= set(s.diagnostics)
        assert s.diagnostics["mixed"] in (True, False, None)
    line = s.summary()
    assert line.startswith(s.status) and f"model evals {s.n_evals}" in line


def test_the_fields_survive_save_and_load(tmp_path):
    s = fs.sample(_slab(), n=20, k=5, seed=0, method="smc")
    t = fs.SampleSet.load(s.save(tmp_path / "s"))
    assert (t.status, t.message, t.n_evals, t.max_violation) == (s.status, s.message, s.n_evals, s.max_violation)
    assert t.log_prob == pytest.approx(s.log_prob) and t.summary() == s.summary()
