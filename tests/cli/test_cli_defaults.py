"""Every default the command line gives is the Python API's: each composed value is compared with
the constructor's or dataclass's own default (read by ``inspect``/``dataclasses``, not from the
CLI's schemas). The few that must differ are listed here with their reason (and in docs/cli.md)."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from feassample.cli import app
from feassample.core.diversity import RepulsiveEnergy
from feassample.core.kernels import SAMPLERS, SeedConfig
from feassample.core.sampling import SamplerConfig
from feassample.problems.contrastive.explain import explain_contrasts
from feassample.problems.contrastive.fit import fit_codes
from feassample.problems.contrastive.problem import ContrastSet
from feassample.problems.logistic import LogisticHalfspace
from feassample.problems.neuron import NeuronInverseSet

CONF = Path(app.config_dir())

#: (group option, key): why the CLI's value is not the Python default
DIFFERS = {
    ("sampler=joint", "n"): "preset: the joint solve is over all n codes at once (Fig. 9 uses 100)",
    ("sampler=joint", "seeding.max_outer"): "preset: the joint solve refines after 4 seed rounds",
    ("sampler=joint", "options.joint_until"): "preset: the paper's joint solve runs to convergence",
    ("sampler=paper", "seeding.optimizer"): "preset: the paper's seeds use plain gradient descent",
    ("sampler=paper", "seeding.lr"): "preset: the paper's step size for plain gradient descent",
    ("sampler=paper", "options.band_step"): "preset: the published walk has no band step limit",
    ("objective=paper", "normalize"): "preset: the paper's plain (unnormalized) sum",
    ("objective=none", "weight"): "preset: eq. (14), no diversity term at all",
    ("problem=neuron", "generator"): "'auto': the model config's generator (Python: None)",
    ("problem=neuron", "encoder"): "'auto': the model config's encoder (Python: None)",
    ("problem=logistic", "d"): "required in Python (LogisticHalfspace.random): the example slab",
    ("problem=logistic", "z1"): "required in Python: the example slab",
    ("problem=logistic", "z2"): "required in Python: the example slab",
}


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _defaults_of(func, skip=("self",)) -> dict:
    return {n: p.default for n, p in inspect.signature(func).parameters.items()
            if n not in skip and p.default is not inspect.Parameter.empty}


def _dataclass_defaults(cls) -> dict:
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def _compare(option: str, given: dict, truth: dict, prefix: str = "") -> list[str]:
    """The keys of ``given`` whose value is not ``truth``'s, less those ``DIFFERS`` lists; a
    ``DIFFERS`` entry whose value is in fact the same is reported too (a stale exception)."""
    wrong = []
    for key, value in given.items():
        if key not in truth:
            continue
        same = _plain(value) == _plain(truth[key])
        listed = (option, prefix + key) in DIFFERS
        if same == listed:
            wrong.append(f"{option} {prefix}{key}: CLI {value!r}, Python {truth[key]!r}"
                         + (" (listed as differing, but equal)" if listed else ""))
    return wrong


def _sampler_options() -> list[str]:
    return sorted(p.stem for p in (CONF / "sampler").glob("*.yaml"))


@pytest.mark.parametrize("option", _sampler_options())
def test_every_sampler_option_has_the_python_defaults_but_its_listed_presets(option):
    node = _compose([f"sampler={option}"])["sampler"]
    run = _dataclass_defaults(SamplerConfig)
    wrong = _compare(f"sampler={option}", {k: node[k] for k in ("n", "k", "seed", "device", "dtype")}, run)
    wrong += _compare(f"sampler={option}", node["seeding"], _dataclass_defaults(SeedConfig), "seeding.")
    if node["method"] in SAMPLERS:
        config = SAMPLERS[node["method"]].Config
        truth = _dataclass_defaults(config)
        assert set(node["options"]) <= set(truth), f"sampler={option}: options not in {config.__name__}"
        wrong += _compare(f"sampler={option}", node["options"], truth, "options.")
    assert not wrong, wrong


@pytest.mark.parametrize("option", ["sum_squared", "paper", "codes", "none", "repulsive"])
def test_every_objective_option_has_the_python_defaults(option):
    node = _compose([f"objective={option}"])["objective"]
    run = _dataclass_defaults(SamplerConfig)
    truth = {"weight": run["diversity_weight"], "normalize": run["normalize"]}
    wrong = _compare(f"objective={option}", node, truth)
    if option == "repulsive":
        wrong += _compare("objective=repulsive", node["options"], _defaults_of(RepulsiveEnergy.__init__))
    assert not wrong, wrong
    assert _compose([])["objective"]["name"] == run["objective"]  # the default objective


def test_the_default_run_is_the_python_default_run():
    cfg = _compose([])
    run = _dataclass_defaults(SamplerConfig)
    assert cfg["sampler"]["method"] == run["method"]
    assert {k: cfg["sampler"][k] for k in ("n", "k", "seed")} == {k: run[k] for k in ("n", "k", "seed")}


@pytest.mark.parametrize("option", ["neuron", "intersection"])
def test_neuron_problems_have_the_constructor_defaults(option):
    node = _compose([f"problem={option}"])["problem"]
    truth = _defaults_of(NeuronInverseSet.__init__)
    assert "code_radius" in node and node["code_radius"] == truth["code_radius"]  # was 4.0
    wrong = _compare("problem=neuron", {k: v for k, v in node.items() if k != "unit"}, truth)
    assert not wrong, wrong


def test_the_logistic_problem_has_the_constructor_defaults():
    node = _compose(["problem=logistic"])["problem"]
    truth = {**_defaults_of(LogisticHalfspace.__init__, skip=("self", "w", "c", "z1", "z2")),
             **_defaults_of(LogisticHalfspace.random.__func__, skip=("cls",))}
    truth.update({k: "required" for k in ("d", "z1", "z2")})
    wrong = _compare("problem=logistic", node, truth)
    assert not wrong, wrong


def test_the_contrastive_problem_has_the_defaults_of_the_functions_it_calls():
    node = _compose(["problem=contrastive"])["problem"]
    truth = {**_defaults_of(ContrastSet.__init__), **_defaults_of(fit_codes),
             **{k: v for k, v in _defaults_of(explain_contrasts).items() if k in ("max_outer", "restarts")}}
    wrong = _compare("problem=contrastive", node, truth)
    assert not wrong, wrong
    assert {"margin", "tol", "constraints", "seed", "max_outer", "restarts"} <= set(truth) & set(node)
