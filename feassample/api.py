"""``fs.sample``: the core sampler plus run directories (written as the run goes) and resume."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional

from .core.problem import FeasibleSet
from .core.result import SampleSet
from .core.sample import SamplerConfig
from .core.sample import sample as core_sample
from .io import RunWriter, checkpoint_config, has_checkpoint, load_checkpoint

log = logging.getLogger(__name__)


def sample(problem: FeasibleSet, n: int = 500, k: int = 10, *, seed: int = 0,
           run_dir: Optional[str | Path] = None, resume: Optional[str | Path] = None,
           config: Optional[SamplerConfig] = None, callbacks: Iterable = (), **settings) -> SampleSet:
    """Sample ``n`` certified points of a feasible set (see ``feassample.core.sample.sample``).

    Args:
        problem: the feasible set.
        n, k, seed: samples wanted, walkers per round, the run's seed.
        run_dir: write the run as it goes (accepted samples after every round, the sampler state)
            and the final ``SampleSet`` into ``run_dir/samples``.
        resume: a run directory written with ``run_dir``: continue from its saved state to ``n``
            samples (settings not given here are taken from the saved run); the run keeps
            writing into the same directory.
        config, callbacks, settings: as for the core ``sample`` (``method``, ``objective``, ``lr``,
            ``dtype``, ``progress``...).
    """
    resume_state = None
    if resume is not None:
        resume = Path(resume)
        if not has_checkpoint(resume):
            raise FileNotFoundError(f"resume={str(resume)!r}: no checkpoint there "
                                    f"(expected {resume / 'checkpoint'} written by run_dir=...)")
        resume_state, saved = load_checkpoint(resume)
        saved_sampler = {key: v for key, v in saved["sampler"].items()
                         if key in SamplerConfig.__dataclass_fields__ and key not in ("n",)}
        if saved["problem"].get("code_shape") != list(problem.code_shape) or \
                saved["problem"].get("bands") != problem.config().get("bands"):
            raise ValueError(f"resume={str(resume)!r} was a run of another problem "
                             f"({saved['problem'].get('problem')} with bands "
                             f"{saved['problem'].get('bands')}); refusing to mix samples")
        config = replace(config or SamplerConfig(**{**saved_sampler, "n": max(n, saved_sampler.get("k", 1))}),
                         **{key: v for key, v in settings.items() if key in SamplerConfig.__dataclass_fields__})
        settings = {key: v for key, v in settings.items() if key not in SamplerConfig.__dataclass_fields__}
        k, seed = config.k, config.seed
        run_dir = run_dir or resume
        log.info("resuming %s from the %s phase", resume, resume_state["phase"])
    callbacks = list(callbacks)
    writer = None
    if run_dir is not None:
        cfg_for_record = replace(config or SamplerConfig(), n=n, k=k, seed=seed,
                                 **{key: v for key, v in settings.items() if key in SamplerConfig.__dataclass_fields__})
        writer = RunWriter(run_dir, checkpoint_config(problem, cfg_for_record))
        callbacks.append(writer)
        if resume_state is not None and resume_state["phase"] == "walk":
            writer("walk_rebase", resume_state["walk"])
        if resume_state is not None and resume_state["phase"] == "cover":
            writer("cover_rebase", resume_state["cover"])
    if resume_state is not None and resume_state["phase"] == "cover":
        # the covering walk takes its saved state as an option of the method
        settings["options"] = dict(settings.get("options") or {}, resume=resume_state.pop("cover"))
        resume_state = None
    result = core_sample(problem, n=n, k=k, seed=seed, config=config, callbacks=callbacks,
                         resume_state=resume_state, **settings)
    if run_dir is not None:
        result.save(Path(run_dir) / "samples")
    return result
