"""Resume checks: a run directory is continued only by the same problem (its fingerprint) with the
settings that change its law (``LAW``, derived from ``SamplerConfig``'s fields) as saved."""
from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Optional

from ..core.problem import FeasibleSet
from ..core.sampling import SamplerConfig
from .fingerprint import differences, fingerprint, undigested
from .integrity import run_dir_path
from .storage import CHECKPOINT, has_run_record

log = logging.getLogger(__name__)


def law_fields(config_cls: type = SamplerConfig) -> tuple[str, ...]:
    """The fields of a settings dataclass that change the law of a run (or its samples): every
    field unless its metadata says ``{"law": False}``, so a new field is law-changing by default."""
    return tuple(f.name for f in fields(config_cls) if f.metadata.get("law", True))


#: settings that change the law of a run (or its samples): a resume must keep them
LAW = law_fields()


def check_resumable(resume: Path) -> None:
    """Refuse a ``resume=`` directory that holds no checkpoint (no ``run.json``), before any
    work; an empty name or a file is refused too (``run_dir_path``)."""
    run_dir_path(resume, "resume")
    if not has_run_record(resume):
        raise FileNotFoundError(f"resume={str(resume)!r}: no checkpoint there "
                                f"(expected {resume / CHECKPOINT} written by run_dir=...)")


def saved_config(saved: dict) -> SamplerConfig:
    """The ``SamplerConfig`` a run directory was written with (``run.json``'s ``sampler``)."""
    return SamplerConfig.from_record(saved["sampler"])


def check_same_problem(resume: Path, saved: dict, problem: FeasibleSet, *, unchecked: bool = False) -> None:
    """Refuse to resume a run directory with another problem, naming what differs; refuse a
    problem whose fingerprint could not digest what it reads (``fingerprint.undigested``), naming
    it. ``unchecked=True`` (``fs.sample(..., resume_unchecked=True)``) skips the digests (the
    code shape and bands are still compared) and logs what it did not check."""
    if saved["problem"].get("code_shape") != list(problem.code_shape) or \
            saved["problem"].get("bands") != problem.config().get("bands"):
        raise ValueError(f"resume={str(resume)!r} was a run of another problem "
                         f"({saved['problem'].get('problem')} with bands "
                         f"{saved['problem'].get('bands')}); refusing to mix samples")
    now = fingerprint(problem)
    differ = differences(saved.get("fingerprint") or {}, now)
    blind = undigested(now)
    if unchecked:
        if differ or blind:
            log.warning("resume=%r with resume_unchecked=True: not checked: %s", str(resume),
                        "; ".join([f"{', '.join(differ)} differ(s)"] * bool(differ) + blind))
        return
    if differ:
        raise ValueError(f"resume={str(resume)!r} was a run of another problem: its "
                         f"{', '.join(differ)} differ(s) from the saved run's; refusing to mix samples "
                         "(resume_unchecked=True resumes anyway)")
    if blind:
        raise ValueError(f"resume={str(resume)!r}: cannot tell whether the problem is the saved one, "
                         f"its fingerprint cannot digest {'; '.join(blind)}; pass "
                         "resume_unchecked=True to resume without that check, or start a new run_dir")


def check_same_method(resume: Path, saved: SamplerConfig, method: Optional[object]) -> None:
    """Refuse a ``method=`` other than the saved run's (before its settings are applied)."""
    if method is not None and method != saved.method_name:
        raise ValueError(f"resume={str(resume)!r} is a run of method {saved.method_name!r}, not "
                         f"{method!r}: resume it with its own method, or start a new run_dir")


def check_same_settings(resume: Path, saved: dict, now: SamplerConfig) -> None:
    """Refuse to resume with settings that change the law (``LAW``), naming them."""
    record = json.loads(json.dumps(now.record(), default=str))
    old = saved["sampler"]
    differ = []  # (name, saved, now); a part (options, seeding) by the fields that differ in it
    for key in LAW:
        was, now_ = old.get(key), record.get(key)
        if was == now_:
            continue
        if isinstance(was, dict) and isinstance(now_, dict):
            differ += [(f"{key}.{name}", was.get(name), now_.get(name)) for name in sorted(set(was) | set(now_))
                       if was.get(name) != now_.get(name)]
        else:
            differ.append((key, was, now_))
    if differ:
        shown = "; ".join(f"{key}: saved {was!r}, now {now_!r}" for key, was, now_ in differ)
        raise ValueError(f"resume={str(resume)!r} was run with other settings ({shown}): resume with "
                         "the saved settings, or start a new run_dir")


def resumed_config(resume: Path, saved: dict, n: int, config: Optional[SamplerConfig],
                   settings: dict) -> SamplerConfig:
    """The settings of a resumed run: ``config`` (else the saved ones) with ``n`` and ``settings``
    applied, refused when its method or a setting of ``LAW`` differs from the saved run's."""
    base = saved_config(saved)
    check_same_method(resume, base, settings.get("method"))
    now = SamplerConfig.build(config or base, n=n, **settings)
    check_same_settings(resume, saved, now)
    return now


__all__ = ["LAW", "law_fields", "check_resumable", "saved_config", "check_same_problem",
           "check_same_method", "check_same_settings", "resumed_config"]
