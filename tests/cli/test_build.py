"""The app's builders: every config names a registered builder by ``_target_``, the neuron
problem's schema follows ``NeuronInverseSet``'s constructor, a config without a
``_target_`` is refused, and the app keeps no state from one run to the next."""
from __future__ import annotations

import dataclasses
import inspect
import types
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import feassample as fs
from feassample.cli import app, build, checks, schemas, targets
from feassample.problems.neuron import NeuronInverseSet

ROOT = Path(__file__).resolve().parents[2]
CONF = Path(app.config_dir())


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_every_problem_and_model_config_names_a_registered_builder():
    for group, registry in (("problem", targets.PROBLEMS), ("model", targets.MODELS)):
        for path in sorted((CONF / group).glob("*.yaml")):
            target = yaml.safe_load(path.read_text()).get("_target_")
            assert target in registry, f"{path.name}: _target_={target!r} is not registered"
    options = {t.option for t in targets.PROBLEMS.values()}
    assert set(build.PROBLEM_BUILDERS) == options and set(checks.PROBLEM_CHECKS) <= options
    assert set(build.MODEL_LOADERS) <= {t.option for t in targets.MODELS.values()}


def test_a_target_outside_the_registry_is_refused_even_inside_feassample():
    cfg = _compose(["problem._target_=feassample.problems.logistic.LogisticHalfspace"])
    with pytest.raises(ValueError, match="is not one of feassample's builders"):
        build.build_problem(cfg, ROOT)


def _params(cls) -> dict:
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}


def test_the_neuron_schema_has_every_constructor_parameter_not_given_elsewhere():
    params = _params(NeuronInverseSet)
    fields = {f.name: f for f in dataclasses.fields(schemas.NeuronProblemSchema)}
    assert set(schemas.NEURON_FROM_ELSEWHERE) <= set(params)  # no stale entry
    added = {name for name, *_ in schemas.NEURON_UNITS} | {"_target_"}
    assert set(fields) - added == set(params) - set(schemas.NEURON_FROM_ELSEWHERE)
    for name in set(fields) - added - set(schemas.NEURON_AS_WRITTEN):
        default = params[name].default
        assert fields[name].default == (list(default) if isinstance(default, tuple) else default), name


def test_a_parameter_added_to_the_constructor_appears_in_the_derived_schema():
    class Wider(NeuronInverseSet):
        def __init__(self, model, layer=None, unit=None, z1=None, z2=None, *, generator=None,
                     encoder=None, input_shape=None, input_range=None, preprocessing=None,
                     code_shape=None, tol: float = 0.0, code_radius=None, transforms=None,
                     patience: int = 7) -> None:
            super().__init__(model, layer, unit, z1, z2)

    schema = schemas.schema_from_signature(
        Wider.__init__, "WiderSchema", skip=schemas.NEURON_FROM_ELSEWHERE,
        given=schemas.NEURON_AS_WRITTEN)
    field = {f.name: f for f in dataclasses.fields(schema)}["patience"]
    assert field.default == 7 and OmegaConf.structured(schema).patience == 7

    def made(model, hook=print):  # a default that is no config value must be skipped by name
        pass
    with pytest.raises(TypeError, match=r"made\(hook=...\).*add it to the skipped parameters"):
        schemas.schema_from_signature(made, "MadeSchema", skip={"model": "the model group"})
    with pytest.raises(TypeError, match="has no parameters \\['layer'\\]"):
        schemas.schema_from_signature(made, "MadeSchema", skip={"layer": "gone"})


def test_every_schema_key_that_is_a_constructor_parameter_reaches_the_problem():
    cfg = _compose(["problem=neuron", "problem.tol=0.25", "problem.input_range=[0.1,0.9]"])
    problem = build.build_problem(cfg, ROOT)
    assert isinstance(problem, NeuronInverseSet) and problem.unit == 3
    assert problem.bands.tol == 0.25 and problem.input_range == (0.1, 0.9)


def test_a_config_without_a_target_is_refused_not_guessed():
    saved = OmegaConf.to_container(_compose(["problem=intersection"]), resolve=True)
    saved["problem"].pop("_target_")
    saved["problem"]["kind"] = "intersection"  # the key configs had before _target_: no alias
    with pytest.raises(ValueError, match="not one of feassample's builders"):
        build.build_problem(OmegaConf.create(saved), ROOT)
    with pytest.raises(ValueError, match="not one of feassample's builders"):
        targets.model_target(OmegaConf.create({"kind": "torchvision", "arch": "resnet18"}))


def test_the_app_module_holds_no_mutable_state():
    held = {name: type(value).__name__ for name, value in vars(app).items()
            if not name.startswith("__") and isinstance(value, (dict, list, set, bytearray))}
    assert held == {}, f"module-level containers in feassample.cli.app: {held}"


def test_a_run_after_the_callback_checked_another_config_samples_its_own_problem(tmp_path):
    quiet = ["sampler.n=20", "sampler.k=5", "progress=false", "coverage=false", "plot=false"]
    app.ValidateCallback().on_run_start(_compose(["problem.d=2", *quiet]))
    metrics = app.run(_compose(["problem.d=3", *quiet]), tmp_path, ROOT)
    assert metrics["status"] == "success"
    assert fs.SampleSet.load(tmp_path / "samples").x.shape == (20, 3)
