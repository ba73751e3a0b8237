"""The Hydra application: compose the config, check it, build the problem, sample, write outputs.

Each run writes into Hydra's output directory (``outputs/DATE/TIME`` or ``multirun/...``):
``samples/`` (the ``SampleSet``), ``metrics.json`` and ``plot.png``. The builders are in
``build`` (problem, model) and ``sampler`` (sampler, objective), the checks in ``checks``; this
module keeps no state between Hydra's callback and the run.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .build import build_model, build_problem
from .checks import BAD_INPUT, check_code_specs, check_config, check_threads
from .outputs import write_outputs
from .sampler import sampler_config
from .schemas import register
from .targets import problem_target
from ..api import sample
from ..core.result import DiskFull
from ..rundir.storage import save_samples

log = logging.getLogger("feassample")
register()

#: what ``feassample.cli.app`` offered before the builders and checks had their own modules
__all__ = ("main", "hydra_main", "run", "config_dir", "ValidateCallback", "ExitCodeCallback", "build_problem", "build_model",
           "sampler_config", "check_config", "check_code_specs")



def one_line(err: BaseException) -> str:
    """``feassample: <message>`` on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch's messages carry terminal colours
    return "feassample: " + " ".join(text.split("\n")).strip()


def _base(config: DictConfig) -> Path:
    """The directory feassample was launched from: relative paths resolve against it."""
    try:
        return Path(config.hydra.runtime.cwd)
    except Exception:  # noqa: BLE001 - a config composed without Hydra's runtime node
        return Path.cwd()


class ValidateCallback(Callback):
    """Hydra callback: check the config (``check_config``) when a run or a sweep starts, and for
    a single run build the problem once to find what needs the model (an unknown layer, a unit
    out of range, an unsafe file), so every bad input is one line on stderr (exit code 2) before
    Hydra creates any output directory. The problem is dropped: the run builds its own (the
    zoo's model and VAE: ~15 ms), so nothing is carried between the callback and the run."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, frozenset(), build=True)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # The sweep's values are not in this config yet: check only the groups it does not sweep.
        from hydra.core.override_parser.overrides_parser import OverridesParser
        swept = {o.key_or_group.split(".")[0].lstrip("+~")
                 for o in OverridesParser.create().parse_overrides(
                     list(config.hydra.overrides.task)) if o.is_sweep_override()}
        self._check(config, frozenset(swept), build=False)

    @staticmethod
    def _check(config: DictConfig, swept: frozenset, build: bool) -> None:
        base = _base(config)
        try:
            check_config(config, base, skip=swept)
            if build and problem_target(config.problem).sampled:
                build_problem(config, base)
        except BAD_INPUT as err:
            print(one_line(err), file=sys.stderr)
            raise SystemExit(2) from None


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


def run(cfg: DictConfig, out_dir: Path, base: Path) -> dict:
    """One run: build, sample, write ``samples/``, ``metrics.json`` and ``plot.png``."""
    torch.set_num_threads(threads_for(cfg))
    if not problem_target(cfg.problem).sampled:  # an explanation, not a sample: its own outputs
        from .contrastive import run_config
        metrics_out = run_config(cfg.problem, build_model(cfg, base), out_dir)
        log.info("%s; outputs in %s", metrics_out["message"], out_dir)
        return metrics_out
    scfg = sampler_config(cfg, base)  # validated before any work
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
                    shard=cfg.get("shard"), shards=cfg.get("shards"),
                    keep_checkpoint=bool(cfg.keep_checkpoint))
    result.config["app"] = OmegaConf.to_container(cfg, resolve=True)
    save_samples(out_dir, result)  # with the app's config (link checks, complete or absent)
    log.info(result.summary())
    metrics_out = write_outputs(cfg, problem, result, scfg.seed, out_dir, command=command_line())
    log.info("outputs in %s", out_dir)
    return metrics_out


def command_line() -> Optional[str]:
    """``feassample <overrides>``: the command that reproduces this job (``None`` outside Hydra)."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra (tests, library use)
        return None
    return " ".join(["feassample", *overrides])


def config_dir() -> str:
    """The folder of YAML configs: inside the installed package, else the checkout's ``conf/``."""
    installed = Path(__file__).resolve().parents[1] / "conf"
    if (installed / "config.yaml").is_file():
        return str(installed)
    return str(Path(__file__).resolve().parents[2] / "conf")


#: exit codes of ``feassample`` (docs/cli.md): success, bad input, infeasible or partial
EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_ALL = 0, 2, 3
#: statuses that exit with EXIT_NOT_ALL: fewer certified samples than asked (or no explanation)
NOT_ALL = ("infeasible", "partial", "interrupted", "unsatisfied")
#: the override ``main`` adds once ``preflight`` has checked every job: the callback's checks are
#: then done (the information travels in the command line, not in a module variable)
CHECKED = "~hydra.callbacks.validate"


class ExitCodeCallback(Callback):
    """Hydra callback: when a sweep ends, exit with ``EXIT_NOT_ALL`` if any job's status (its
    ``metrics.json``, or none: a job that did not finish) is not a success."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from .summary import collect
        try:
            rows = collect(config.hydra.sweep.dir)
        except FileNotFoundError:
            rows = []
        short = [r for r in rows if r.get("status") != "success"]
        if short or not rows:
            log.warning("%d of %d job(s) did not end in success: exit code %d", len(short) or 1,
                        len(rows), EXIT_NOT_ALL)
            raise SystemExit(EXIT_NOT_ALL)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    """The Hydra task: one run (one job of a ``-m`` sweep); an infeasible or partial single run
    exits with code 3 once its outputs are written (a sweep: ``ExitCodeCallback``)."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    base = Path(HydraConfig.get().runtime.cwd)  # relative paths: the directory launched from
    try:
        metrics_out = run(cfg, out_dir, base)
    except (ValueError, TypeError, FileNotFoundError, MemoryError, DiskFull) as err:
        print(one_line(err), file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    status = str((metrics_out or {}).get("status", "success"))
    if status in NOT_ALL and HydraConfig.get().mode != RunMode.MULTIRUN:
        # a single run: its outputs are written; a sweep's jobs are judged when it ends
        log.warning("status %s: exit code %d", status, EXIT_NOT_ALL)
        raise SystemExit(EXIT_NOT_ALL)


def main(argv: Optional[list] = None) -> None:
    """Console entry point ``feassample`` (and ``python -m feassample``): check the command line
    (``preflight``: one line on stderr and exit code 2 before anything is written), then run it
    under Hydra; exit code 3 when a run (any job of a sweep) is infeasible or partial."""
    from .preflight import BadInput, preflight
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        checked = preflight(args, config_dir())
    except BadInput as err:
        print(one_line(err), file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    sys.argv = [sys.argv[0], *args, *([CHECKED] if checked else [])]
    hydra_main()


if __name__ == "__main__":
    main()
