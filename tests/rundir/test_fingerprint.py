"""The fingerprint sees what a ``from_functions`` constraint reads (closure cells, defaults,
globals, nested lambdas), a resume refuses a changed one or one it cannot digest (with
``resume_unchecked=True`` as the explicit escape), and a resume refuses a changed ``k`` or
``seed``."""
from __future__ import annotations

import threading

import pytest
import torch

import feassample as fs
from feassample.rundir.fingerprint import fingerprint, undigested

#: a global the constraint of ``_global_problem`` reads (changed, then restored, by a test)
WEIGHTS = torch.tensor([1.0, 1.0, 0.0])


def _band(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x @ w).unsqueeze(1)


def _closure_problem(w: torch.Tensor):
    return fs.from_functions(lambda x: (x @ w).unsqueeze(1), lo=[0.8], hi=[1.2], code_shape=(3,),
                             box=(0.0, 1.0))


def _global_constraint(x):
    return (x @ WEIGHTS).unsqueeze(1)


def _global_problem():
    return fs.from_functions(_global_constraint, lo=[0.8], hi=[1.2], code_shape=(3,), box=(0.0, 1.0))


def _run(problem, path, **kw):
    return fs.sample(problem, n=12, k=4, seed=0, method="cover", run_dir=path, **kw)


def test_a_weight_in_a_closure_changes_the_fingerprint():
    w = torch.tensor([1.0, 1.0, 0.0])
    before = fingerprint(_closure_problem(w))
    assert fingerprint(_closure_problem(w.clone())) == before  # equal values: equal digest
    w2 = w.clone()
    w2[2] = 1e-3
    assert fingerprint(_closure_problem(w2))["constraints"] != before["constraints"]


def test_defaults_modules_and_nested_lambdas_are_digested():
    lin = torch.nn.Linear(3, 1)

    def with_default(x, w=torch.ones(3)):
        return (x @ w).unsqueeze(1)

    def nested(x):
        inner = lambda y: (y @ WEIGHTS).unsqueeze(1)  # noqa: E731  (reads a global from a lambda)
        return inner(x)

    make = lambda fn: fingerprint(fs.from_functions(fn, lo=[0.], hi=[1.], code_shape=(3,)))  # noqa: E731
    by_module = make(lambda x: lin(x))
    by_default, by_nested = make(with_default), make(nested)
    with torch.no_grad():
        lin.weight[0, 0] += 1.0
        with_default.__defaults__[0][1] = 2.0
        WEIGHTS[0] = 2.0
    try:
        assert make(lambda x: lin(x))["constraints"] != by_module["constraints"]
        assert make(with_default)["constraints"] != by_default["constraints"]
        assert make(nested)["constraints"] != by_nested["constraints"]
    finally:
        WEIGHTS[0] = 1.0


def test_a_resume_with_other_closure_weights_is_refused_and_unchecked_proceeds(tmp_path):
    w = torch.tensor([1.0, 1.0, 0.0])
    _run(_closure_problem(w), tmp_path)
    w2 = w.clone()
    w2[2] = 0.5  # one element
    with pytest.raises(ValueError, match="constraints differ.*resume_unchecked=True"):
        fs.sample(_closure_problem(w2), n=20, resume=tmp_path)
    result = fs.sample(_closure_problem(w2), n=20, resume=tmp_path, resume_unchecked=True)
    assert len(result) == 20


def test_a_resume_with_a_changed_global_is_refused(tmp_path):
    _run(_global_problem(), tmp_path)
    WEIGHTS[1] = 0.5
    try:
        with pytest.raises(ValueError, match="constraints differ"):
            fs.sample(_global_problem(), n=20, resume=tmp_path)
    finally:
        WEIGHTS[1] = 1.0
    assert len(fs.sample(_global_problem(), n=20, resume=tmp_path)) == 20  # restored: the same


def test_what_cannot_be_digested_refuses_a_resume_naming_it(tmp_path):
    lock = threading.Lock()

    def guarded(x):
        with lock:
            return (x @ WEIGHTS).unsqueeze(1)

    problem = fs.from_functions(guarded, lo=[0.8], hi=[1.2], code_shape=(3,), box=(0.0, 1.0))
    assert undigested(fingerprint(problem)) and "closure 'lock'" in undigested(fingerprint(problem))[0]
    _run(problem, tmp_path)
    with pytest.raises(ValueError, match=r"cannot digest constraints: .*closure 'lock'.*resume_unchecked"):
        fs.sample(problem, n=20, resume=tmp_path)
    assert len(fs.sample(problem, n=20, resume=tmp_path, resume_unchecked=True)) == 20


@pytest.mark.parametrize("changed", [{"k": 3}, {"seed": 1}, {"max_budget": 50.0}, {"lr": 0.2}])
def test_a_resume_with_another_k_seed_or_law_option_is_refused_naming_it(tmp_path, changed):
    p = _closure_problem(torch.tensor([1.0, 1.0, 0.0]))
    _run(p, tmp_path)
    name = {"max_budget": "options.max_budget", "lr": "seeding.lr"}.get(next(iter(changed)), next(iter(changed)))
    with pytest.raises(ValueError, match=rf"other settings \({name}: saved"):
        fs.sample(p, n=20, resume=tmp_path, **changed)
    assert len(fs.sample(p, n=20, resume=tmp_path, k=4, seed=0)) == 20  # the saved ones: fine
