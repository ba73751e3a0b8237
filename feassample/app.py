"""The Hydra application: compose the config, build the problem, sample, write the outputs.

Each run writes into Hydra's output directory (``outputs/DATE/TIME`` or ``multirun/...``):
``samples/`` (the ``SampleSet``), ``metrics.json`` and ``plot.png``.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .config import register
from .core.problem import FeasibleSet
from .core.result import SampleSet, atomic_write_bytes
from .core.sample import SamplerConfig, sample

log = logging.getLogger("feassample")
register()


def load_factory(spec: str, base: Path) -> Any:
    """The function named by ``"path/to/file.py:function"`` (a file the user chose)."""
    if ":" not in spec:
        raise ValueError(f"problem.factory must look like 'path/to/file.py:function', got {spec!r}")
    file_part, func_name = spec.rsplit(":", 1)
    path = Path(file_part)
    if not path.is_absolute():
        path = base / path
    if path.suffix != ".py" or not path.is_file():
        raise FileNotFoundError(f"problem.factory file {path} does not exist or is not a .py file")
    module_name = f"feassample_user_{path.stem}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[module_name] = module
    spec_obj.loader.exec_module(module)
    if not hasattr(module, func_name):
        raise AttributeError(f"{path} has no function {func_name!r}")
    return getattr(module, func_name)


def build_problem(cfg: DictConfig, base: Path) -> FeasibleSet:
    """The problem of a composed config: ``_target_`` nodes are instantiated, ``factory`` nodes
    call a function from a user's file."""
    node = cfg.problem
    if "factory" in node and OmegaConf.is_missing(node, "factory"):
        raise ValueError("problem=python needs problem.factory=path/to/file.py:function "
                         "(a function returning a FeasibleSet)")
    if "factory" in node:
        factory = load_factory(node.factory, base)
        problem = factory(**OmegaConf.to_container(node.kwargs, resolve=True))
    else:
        problem = instantiate(node)
    if not isinstance(problem, FeasibleSet):
        raise TypeError(f"the problem config built a {type(problem).__name__}, not a FeasibleSet")
    return problem


def sampler_config(cfg: DictConfig) -> SamplerConfig:
    """``fs.SamplerConfig`` from the ``sampler`` and ``objective`` groups (validated)."""
    fields = OmegaConf.to_container(cfg.sampler, resolve=True)
    obj = cfg.objective
    return SamplerConfig(**fields, objective=obj.name, diversity_weight=float(obj.weight),
                         normalize=bool(obj.normalize))


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
    return report, reference


def run(cfg: DictConfig, out_dir: Path, base: Path) -> dict:
    """One run: validate, sample, write ``samples/``, ``metrics.json`` and ``plot.png``."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    scfg = sampler_config(cfg)  # validated before any work
    problem = build_problem(cfg, base)
    log.info("problem: %s", problem.describe())
    log.info("sampler: method=%s n=%d k=%d seed=%d", scfg.method, scfg.n, scfg.k, scfg.seed)
    result = sample(problem, n=scfg.n, k=scfg.k, seed=scfg.seed, config=scfg,
                    progress=bool(cfg.progress))
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
