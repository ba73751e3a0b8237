"""The built-in targets of the ``problem`` and ``model`` groups: what each ``_target_`` of
``conf/`` may name, looked up here and never imported from the string (a config value is no code).

Your own code comes in by the plug-in keys, a file you name: ``problem.factory`` (with
``problem=python``), ``model.cls`` (with ``model=file``), ``sampler._target_`` and
``objective._target_``. The sampler and objective groups' built-ins are named by
``sampler.method`` (the kernels' ``SAMPLERS``) and ``objective.name`` (the diversity terms).
"""
from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class ProblemTarget:
    """A built-in problem: ``option`` (its name in messages, ``problem=<option>``) and whether
    the app samples it (``False``: an explanation with its own outputs)."""

    option: str
    sampled: bool = True


@dataclass(frozen=True)
class ModelTarget:
    """A built-in model loader: ``option`` (``model=<option>``), the keys a config must give, the
    keys naming files that must exist (relative to the launch directory), and whether the loaded
    model states its input range (else an input-space problem must give one)."""

    option: str
    required: tuple = ()
    files: tuple = ()
    states_input_range: bool = True


PROBLEMS = {
    "feassample.problems.logistic.LogisticHalfspace.random": ProblemTarget("logistic"),
    "feassample.problems.neuron.NeuronInverseSet": ProblemTarget("neuron"),
    "feassample.problems.intersection.Intersection": ProblemTarget("intersection"),
    "feassample.problems.contrastive.ContrastSet": ProblemTarget("contrastive", sampled=False),
    "feassample.cli.build.python_problem": ProblemTarget("python"),
}

MODELS = {
    "feassample.models.load_classifier": ModelTarget("digits"),
    "feassample.models.load_model_file": ModelTarget("file", ("cls", "state_dict"), ("state_dict",),
                                                     states_input_range=False),
    "feassample.models.load_torchvision": ModelTarget("torchvision", ("arch", "weights"), ("weights",)),
    "feassample.models.load_timm": ModelTarget("timm", ("arch", "weights"), ("weights",)),
    "feassample.models.load_exported": ModelTarget("exported", ("path",), ("path",), False),
    "feassample.models.load_torchscript": ModelTarget("torchscript", ("path",), ("path",), False),
}

def _target(node: DictConfig, group: str):
    return str(node._target_) if node.get("_target_") is not None else None


def _refuse(target, group: str) -> ValueError:
    own = "problem=python problem.factory" if group == "problem" else "model=file model.cls"
    return ValueError(f"{group}._target_={target!r} is not one of feassample's builders: name your "
                      f"own code with {own}=path/to/file.py:name")


def problem_target(node: DictConfig) -> ProblemTarget:
    """The built-in problem a ``problem`` node names by ``_target_``; any other target is
    refused before anything is imported or called."""
    target = _target(node, "problem")
    if target not in PROBLEMS:
        raise _refuse(target, "problem")
    return PROBLEMS[target]


def model_target(node: DictConfig) -> ModelTarget:
    """The built-in model loader a ``model`` node names by ``_target_`` (refused otherwise)."""
    target = _target(node, "model")
    if target not in MODELS:
        raise _refuse(target, "model")
    return MODELS[target]
