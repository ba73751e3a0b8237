"""The Hydra application: compose the config, build the problem, sample, write the outputs.

Each run writes into Hydra's output directory (``outputs/DATE/TIME`` or ``multirun/...``):
``samples/`` (the ``SampleSet``), ``metrics.json`` and ``plot.png``.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .config import register
from .core.problem import FeasibleSet
from .core.result import SampleSet, atomic_write_bytes
from .api import sample
from .core.diversity import Diversity
from .core.samplers import Sampler
from .core.sampling import SamplerConfig
from .models.files import load_object
from .models.formats import load_model_file

log = logging.getLogger("feassample")
register()


def build_model(cfg: DictConfig, base: Path):
    """The model of the ``model`` group (file paths resolved against ``base``)."""
    if cfg.get("model") is None:
        raise ValueError("this problem needs a model: add model=digits or model=file ...")
    node = cfg.model
    kind = node.get("kind") if "kind" in set(node.keys()) else None
    if kind in ("torchvision", "timm", "exported", "torchscript"):
        from .models.formats import load_model
        required = ("arch", "weights") if kind in ("torchvision", "timm") else ("path",)
        for key in required:
            if OmegaConf.is_missing(node, key):
                raise ValueError(f"model={kind} needs model.{key}=... (see conf/model/{kind}.yaml)")
        fields = OmegaConf.to_container(node, resolve=True)
        fields.pop("kind")
        return load_model(kind, **fields, base=base)
    if "state_dict" in set(node.keys()):
        for key in ("cls", "state_dict"):
            if OmegaConf.is_missing(node, key):
                raise ValueError(f"model=file needs model.{key}=... (see conf/model/file.yaml)")
        return load_model_file(node.cls, node.state_dict,
                               OmegaConf.to_container(node.kwargs, resolve=True), base)
    return instantiate(_own_target(node, "model"))


def _own_target(node: DictConfig, group: str) -> DictConfig:
    """``node`` when its ``_target_`` is one of feassample's own builders (what the schemas set);
    any other target is refused before Hydra imports or calls it: your own code comes in by
    ``problem.factory`` / ``model.cls`` (a file you name)."""
    target = node.get("_target_")
    if target is not None and not str(target).startswith("feassample."):
        raise ValueError(f"{group}._target_={target!r} is not one of feassample's builders: name your "
                         f"own code with {'problem=python problem.factory' if group == 'problem' else 'model=file model.cls'}"
                         f"=path/to/file.py:name")
    return node


def check_code_specs(cfg: DictConfig, base: Optional[Path] = None) -> None:
    """Refuse ``problem.factory`` / ``model.cls`` values of the wrong kind, and foreign
    ``_target_``s, before anything runs (a ``package.module:name`` is imported and its kind
    checked; a file you name is not run here)."""
    problem, model = cfg.get("problem"), cfg.get("model")
    if problem is not None and "factory" in set(problem.keys()) and not OmegaConf.is_missing(problem, "factory"):
        if not str(problem.factory).split(":")[0].endswith(".py"):
            load_object(problem.factory, base, kind=FeasibleSet, what="problem.factory")
    elif problem is not None and problem.get("kind") is None:
        _own_target(problem, "problem")
    if model is not None and "state_dict" in set(model.keys()) and not OmegaConf.is_missing(model, "cls"):
        if not str(model.cls).split(":")[0].endswith(".py"):
            load_object(model.cls, base, kind=torch.nn.Module, what="model.cls")
    elif model is not None and model.get("kind") is None:
        _own_target(model, "model")


def build_neuron_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """A ``NeuronInverseSet`` (or an ``Intersection`` of them) from ``problem=neuron|intersection``."""
    from .models import load_generator
    from .problems import Intersection, NeuronInverseSet

    node = cfg.problem
    if not node.units:
        raise ValueError("problem.units is empty: give at least one {layer, unit, z1, z2}")
    model = build_model(cfg, base)
    generator = load_generator(node.generator) if node.generator else None
    members = []
    for i, u in enumerate(node.units):
        unit = OmegaConf.to_container(u.unit) if OmegaConf.is_list(u.unit) else u.unit
        unit = tuple(unit) if isinstance(unit, list) else unit
        # A "layer4:17" string names its layer: a preset's layer must not contradict it.
        if u.band is not None:
            if len(u.band) != 2:
                raise ValueError(f"problem.units.{i}.band must be [z1, z2], got {list(u.band)}")
            z1, z2 = (float(v) for v in u.band)
        elif u.z1 is not None and u.z2 is not None:
            z1, z2 = float(u.z1), float(u.z2)
        else:
            raise ValueError(f"problem.units.{i} needs z1 and z2, or band: [z1, z2]")
        members.append(NeuronInverseSet(
            model, None if isinstance(unit, str) else u.layer, unit, z1, z2, generator=generator,
            encoder=node.encoder, input_shape=tuple(node.input_shape),
            input_range=tuple(node.input_range), tol=float(node.tol),
            code_radius=node.code_radius if generator is not None else None))
    if node.kind == "neuron" and len(members) != 1:
        raise ValueError(f"problem=neuron takes one unit, got {len(members)}: use problem=intersection")
    return members[0] if len(members) == 1 else Intersection(members)


def build_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """The problem of a composed config: ``_target_`` nodes are instantiated, ``factory`` nodes
    call a function from a user's file."""
    node = cfg.problem
    keys = set(node.keys())  # ("key" in node is False for a missing ??? value)
    if "factory" in keys and OmegaConf.is_missing(node, "factory"):
        raise ValueError("problem=python needs problem.factory=path/to/file.py:function "
                         "(a function returning a FeasibleSet)")
    if "factory" in keys:
        factory = load_object(node.factory, base, kind=FeasibleSet, what="problem.factory")
        problem = factory(**OmegaConf.to_container(node.kwargs, resolve=True))
    elif node.get("kind") in ("neuron", "intersection"):
        problem = build_neuron_problem(cfg, base)
    elif node.get("kind") == "contrastive":
        from .app_contrastive import problem_from_config
        problem = problem_from_config(node, build_model(cfg, base))
    else:
        problem = instantiate(_own_target(node, "problem"))
    if not isinstance(problem, FeasibleSet):
        raise TypeError(f"the problem config built a {type(problem).__name__}, not a FeasibleSet")
    return problem


def load_plugin(spec: str, kind: type, what: str, base: Optional[Path] = None):
    """The class named by ``spec`` (``path/to/file.py:Class`` or ``package.module:Class``),
    checked to be a subclass of ``kind`` before anything is built from it."""
    obj = load_object(spec, base, kind=kind, what=what)
    if not (isinstance(obj, type) and issubclass(obj, kind)):
        raise TypeError(f"{what}={spec!r} names {obj!r}, not a subclass of feassample's "
                        f"{kind.__name__}")
    return obj


def sampler_config(cfg: DictConfig, base: Optional[Path] = None) -> SamplerConfig:
    """``fs.SamplerConfig`` from the ``sampler`` and ``objective`` groups (validated: a plug-in's
    options against its own Config)."""
    node = OmegaConf.to_container(cfg.sampler, resolve=True)
    target = node.pop("_target_", None)
    method = node.pop("method")
    if target:
        method = load_plugin(target, Sampler, "sampler._target_", base)
    elif method == "plugin":
        raise ValueError("sampler=plugin needs sampler._target_=path/to/file.py:Class (a Sampler subclass)")
    obj = OmegaConf.to_container(cfg.objective, resolve=True)
    objective = obj["name"]
    if obj.get("_target_"):
        cls = load_plugin(obj["_target_"], Diversity, "objective._target_", base)
        objective = cls(weight=float(obj["weight"]), **(obj.get("options") or {}))
    return SamplerConfig(method=method, **node, objective=objective,
                         diversity_weight=float(obj["weight"]), normalize=bool(obj["normalize"]),
                         objective_options=obj.get("options") or None)


class ValidateCallback(Callback):
    """Hydra callback: check the sampler and objective settings (a plug-in's class and options
    included) when a run or a sweep starts, before Hydra creates any output directory."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, sweep=True)  # the swept keys (e.g. shard) are not set yet

    @staticmethod
    def _check(config: DictConfig, sweep: bool = False) -> None:
        if config.problem.get("kind") == "contrastive":
            return
        try:
            check_threads(config)
            check_code_specs(config, Path.cwd())
            scfg = sampler_config(config, Path.cwd())
            if not sweep and (config.get("shard") is not None or config.get("shards") is not None):
                if config.get("shard") is None or config.get("shards") is None:
                    raise ValueError("give both shard= and shards= (this job's index and the number of jobs)")
                from .api import shard_plan
                shard_plan(scfg.n, scfg.seed, config.shard, config.shards)
        except (ValueError, TypeError, FileNotFoundError, AttributeError) as err:
            raise SystemExit(f"feassample: {err}") from None


def coverage(problem, samples: SampleSet, draws: int, seed: int) -> tuple[dict, Any]:
    """Coverage metrics against exact iid uniform samples of the same size (where available)."""
    from . import metrics

    if not hasattr(problem, "exact_sample") or len(samples) < 2:
        return {}, None
    g = torch.Generator().manual_seed(10_000 + int(seed))
    n = len(samples)
    x = samples.x.double()
    reference = problem.exact_sample(n, generator=g)
    probes = problem.exact_sample(n, generator=g)
    ref_draws = [problem.exact_sample(n, generator=g) for _ in range(max(draws, 2))]
    report = metrics.coverage_report(x, reference, probes, ref_draws, t=problem.t(x),
                                     t_cdf=problem.t_cdf, box=problem.box or (0.0, 1.0))
    report.pop("energy_ratio", None)  # the null mean is ~0: energy_z is the calibrated number
    return report, reference


def threads_for(cfg: DictConfig) -> int:
    """``cfg.threads``, or 1 inside a parallel launcher's worker (joblib, submitit local)."""
    try:
        launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    except ValueError:  # not under Hydra (tests, library use)
        launcher = ""
    check_threads(cfg)
    if "joblib" in launcher.lower() or launcher.endswith("LocalLauncher"):
        return 1
    return int(cfg.threads)


def check_threads(cfg: DictConfig) -> None:
    """Refuse ``threads`` below 1 (it used to be raised to 1 silently)."""
    threads = cfg.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 (CPU threads for torch), got {threads!r}")


def run(cfg: DictConfig, out_dir: Path, base: Path) -> dict:
    """One run: validate, sample, write ``samples/``, ``metrics.json`` and ``plot.png``."""
    torch.set_num_threads(threads_for(cfg))
    if cfg.problem.get("kind") == "contrastive":  # an explanation, not a sample: its own outputs
        from .app_contrastive import run_config
        metrics_out = run_config(cfg.problem, build_model(cfg, base), out_dir)
        log.info("%s; outputs in %s", metrics_out["message"], out_dir)
        return metrics_out
    scfg = sampler_config(cfg, base)  # validated before any work
    check_code_specs(cfg, base)
    problem = build_problem(cfg, base)
    log.info("problem: %s", problem.describe())
    log.info("sampler: method=%s n=%d k=%d seed=%d", scfg.method_name, scfg.n, scfg.k, scfg.seed)
    resume = None
    if cfg.get("resume"):
        resume = Path(cfg.resume)
        resume = resume if resume.is_absolute() else base / resume
    # The run directory is written as the run goes: a killed run resumes with resume=<dir>.
    result = sample(problem, n=scfg.n, k=scfg.k, seed=scfg.seed, config=scfg,
                    progress=bool(cfg.progress), run_dir=resume or out_dir, resume=resume,
                    shard=cfg.get("shard"), shards=cfg.get("shards"))
    result.config["app"] = OmegaConf.to_container(cfg, resolve=True)
    result.save(out_dir / "samples")
    log.info(result.summary())
    metrics_out = {"feasible_fraction": float(result.feasible.float().mean()) if len(result) else 0.0,
                   **{k: v for k, v in result.stats.items()}}
    reference = None
    if cfg.coverage and result.status != "infeasible":
        cov, reference = coverage(problem, result, int(cfg.reference_draws), scfg.seed)
        metrics_out["coverage"] = cov
        if cov:
            log.info("coverage vs exact iid: KS p=%.3g, boundary z=%.2f, NN ratio=%.2f, fill ratio=%.3f",
                     cov.get("ks_p", math.nan), cov["boundary_z"], cov["nn_ratio"], cov["fill_ratio"])
    text = json.dumps(metrics_out, indent=2, default=str)
    atomic_write_bytes(out_dir / "metrics.json", lambda fh: fh.write(text.encode()))
    if cfg.plot and len(result):
        from .viz import plot_run

        plot_run(problem, result, out_dir / "plot.png", reference)
    log.info("outputs in %s", out_dir)
    return metrics_out


def config_dir() -> str:
    """The folder of YAML configs: inside the installed package, else the checkout's ``conf/``."""
    installed = Path(__file__).resolve().parent / "conf"
    if (installed / "config.yaml").is_file():
        return str(installed)
    return str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    """Console entry point ``feassample`` (and ``python -m feassample``)."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    base = Path(HydraConfig.get().runtime.cwd)
    run(cfg, out_dir, base)


if __name__ == "__main__":
    main()
