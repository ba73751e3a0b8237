"""What the ``feassample`` entry point does before Hydra runs anything: compose the config (each
job's, for a ``-m`` sweep) and check it, so that every bad input is one line on stderr with exit
code 2 and no output directory, no log and no ``.hydra`` record is written.

Hydra's own composition errors (an unknown group option, an unknown key, a wrong type, an
override the grammar cannot read) happen before an app's main runs; here they are caught and
said in the command line's terms, with a "did you mean" and only the options a user can choose
(the ``*_schema`` entries of the ConfigStore are hidden)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..core.options import did_you_mean

#: the config groups a user chooses from (``hydra/...`` groups are Hydra's)
GROUPS = ("problem", "model", "sampler", "objective")


class BadInput(ValueError):
    """A command line feassample refuses: the message is the one line shown."""


def suggest(name: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'X'?"`` for the closest of ``choices``, or ``""`` (the API's wording)."""
    hint = did_you_mean(name, choices, cutoff=0.5)
    return f"; {hint}" if hint else ""


def visible(options: Sequence[str]) -> list[str]:
    """The options a user chooses: the schemas stored for validation hidden."""
    return sorted(o for o in options if not o.endswith("_schema"))


def group_options(group: str, config_dir: str) -> list[str]:
    """The YAML options of ``group`` in ``config_dir``."""
    return visible(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))


def _schema_keys(object_type) -> Optional[list[str]]:
    if isinstance(object_type, type) and dataclasses.is_dataclass(object_type):
        return [f.name for f in dataclasses.fields(object_type) if f.name != "_target_"]
    return None


def _unknown_key(full_key: str, keys: Sequence[str], value=None) -> str:
    parent, _, key = str(full_key).rpartition(".")
    where = f"the {parent} config" if parent else "the top level"
    shown = f"{full_key}={value}" if value is not None else full_key
    groups = [] if parent else [g for g in GROUPS if g not in keys]
    return (f"{shown}: {key!r} is not a key of {where}{suggest(key, list(keys) + groups)} "
            f"(keys: {', '.join(keys)})")


def _override_of(key: str, overrides: Sequence[str]) -> Optional[str]:
    for o in overrides:
        if o.lstrip("+~").split("=", 1)[0] in (key, key.replace(".", "/")):
            return o
    return None


def _bad_override(overrides: Sequence[str]) -> tuple[Optional[str], str]:
    """The first override Hydra's grammar cannot read, and why."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except OverrideParseException as err:
            return o, str(err).split("\n")[0]
    return None, ""


def explain(err: BaseException, overrides: Sequence[str], config_dir: str) -> str:
    """One line saying what is wrong with the command line, in its own terms."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(err, OverrideParseException):
        bad, why = _bad_override(overrides)
        if bad is None:
            return f"cannot read the command line: {str(err).splitlines()[0]}"
        key = bad.split("=", 1)[0].lstrip("+~")
        hint = ""
        if key.split(".")[-1] in ("unit", "units"):
            hint = " (a unit is a 'layer:n' string: problem.unit=classifier.fc2:5)"
        elif "[" in bad or "{" in bad:
            hint = " (quote a list or dict value: 'problem.band=[4,8]')"
        return f"cannot read the override {bad!r}: {why}{hint}"
    if isinstance(err, MissingConfigException):
        missing = str(err.missing_cfg_file or "")
        group, _, name = missing.rpartition("/")
        if group in GROUPS or err.options is not None:
            options = visible(err.options or group_options(group, config_dir))
            return (f"{group}={name} is not a {group} option{suggest(name, options)} "
                    f"(options: {', '.join(options)})")
        return f"config {missing!r} not found"
    cause = err.__cause__ or err.__context__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and getattr(cause, "full_key", None):
        keys = _schema_keys(getattr(cause, "object_type", None))
        full_key = str(cause.full_key)
        ov = _override_of(full_key, overrides)
        value = ov.split("=", 1)[1] if ov and "=" in ov else None
        if keys is not None:
            if "." not in full_key:
                keys = keys + [g for g in GROUPS if g not in keys]
            return _unknown_key(full_key, keys, value)
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        ov = _override_of(str(cause.full_key), overrides)
        msg = str(cause).splitlines()[0]
        return f"{ov or cause.full_key}: {msg}"
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_keys(node, where: str = "") -> None:
    """Refuse a key added with ``+`` that the node's schema does not have (``+sampler.num=100``),
    with a "did you mean"; free-form nodes (``kwargs``) are not checked, nor ``sampler.options``
    (``sampler_config`` checks them against the method's own Config, a plug-in's too)."""
    if not isinstance(node, DictConfig):
        return
    keys = _schema_keys(OmegaConf.get_type(node))
    if keys is not None:
        for key in node.keys():
            if key not in keys and key != "_target_":
                full = f"{where}.{key}" if where else str(key)
                listed = keys + ([g for g in GROUPS if g not in keys] if not where else [])
                raise BadInput(_unknown_key(full, listed, node._get_node(key)._value()))
    for key in node.keys():
        child = node._get_node(key)
        if where == "sampler" and key == "options":
            continue  # a method's options: checked against its Config by sampler_config
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            check_keys(child, f"{where}.{key}" if where else str(key))


#: Hydra flags after which nothing runs (help, config printing, completion): not checked here
_NO_RUN = ("help", "hydra_help", "version", "cfg", "info", "shell_completion", "experimental_rerun")


def _jobs(overrides: list[str], multirun: bool) -> Optional[list[list[str]]]:
    """Each job's overrides (one job unless ``-m``); ``None`` for a sweeper other than Hydra's
    basic one (its jobs are known only to it)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not multirun:
        return [overrides]
    if any(o.key_or_group.lstrip("+~") == "hydra/sweeper" for o in parsed):
        return None
    if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in parsed):
        return None
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _check_job(cfg: DictConfig, base: Path, build: bool) -> None:
    from hydra.core.hydra_config import HydraConfig  # noqa: F401 - Hydra's resolvers registered
    from .build import build_problem
    from .checks import BAD_INPUT, check_config
    from .targets import problem_target

    check_keys(cfg)
    try:
        check_config(cfg, base)
        if build and problem_target(cfg.problem).sampled:
            build_problem(cfg, base)
    except BAD_INPUT as err:
        raise BadInput(str(err)) from None


def _check_run_dir(where: str, resume, base: Path, label: Optional[str] = None) -> None:
    """Refuse, before Hydra writes into it, a run directory ``where`` that already holds a run
    (unless the run resumes it): its ``.hydra`` record and log stay as they are."""
    from ..rundir.storage import holds_run

    run_dir = Path(where).expanduser()
    run_dir = run_dir if run_dir.is_absolute() else base / run_dir
    if resume:
        resume = Path(str(resume)).expanduser()
        resume = resume if resume.is_absolute() else base / resume
        if resume.resolve() == run_dir.resolve():
            return
    if holds_run(run_dir):
        raise BadInput(f"{label or 'hydra.run.dir=' + where}: {run_dir} already holds a run: continue "
                       f"it with resume={where}, or choose a new directory")
    link = _a_link_in(run_dir)
    if link is not None:
        raise BadInput(f"{label or 'hydra.run.dir=' + where}: {link} is a symbolic link: the run would "
                       "write through it (Hydra's log and record, metrics.json, pictures); remove it "
                       "or choose a new directory")


def _a_link_in(folder: Path) -> Optional[Path]:
    """The first symbolic link among ``folder``'s entries and those of its ``.hydra`` (where Hydra
    and the app write their files), or ``None``."""
    for where in (folder, folder / ".hydra"):
        if where.is_dir() and not where.is_symlink():
            for entry in sorted(where.iterdir()):
                if entry.is_symlink():
                    return entry
    return None


def _sweep_job_dir(cfg: DictConfig, num: int) -> Optional[str]:
    """Job ``num``'s directory in a ``-m`` sweep (``hydra.sweep.dir``/``hydra.sweep.subdir``,
    resolved as Hydra's launcher will: with ``hydra.job.num`` set); ``None`` when it names
    something only the launcher knows."""
    try:
        OmegaConf.update(cfg, "hydra.job.num", num, force_add=True)
        return str(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir))
    except OmegaConfBaseException:
        return None


#: the Hydra callbacks of conf/config.yaml: the only ones a command line may keep
OUR_CALLBACKS = ("validate", "summary", "exit_code")


def _refuse_foreign_callbacks(overrides: list[str]) -> None:
    """A Hydra callback is an object Hydra builds from a ``_target_`` before any run: an override
    that adds or changes one could name any importable function (``load_object`` of a file,
    ``torch.load``...). Only removing one of ours (``~hydra.callbacks.NAME``) is allowed."""
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        bare = key.lstrip("+~")
        if bare == "hydra.callbacks" or bare.startswith(("hydra.callbacks.", "hydra/callbacks")):
            name = bare[len("hydra.callbacks."):].split(".")[0] if bare.startswith("hydra.callbacks.") else ""
            if key.startswith("~") and "=" not in text and name in OUR_CALLBACKS:
                continue
            raise BadInput(f"{key}: Hydra callbacks are fixed by feassample (they are built from a "
                           "_target_ before any check could run); the command line may not add or change one")
        if bare.startswith("hydra.") and "_target_" in bare:
            raise BadInput(f"{key}: Hydra builds its launcher and sweeper from a _target_ before any "
                           "check could run; choose them by group (hydra/launcher=joblib)")


def preflight(args: list[str], config_dir: str) -> bool:
    """Compose and check the config of every job the command line ``args`` asks for (as Hydra
    will: same overrides, same config directory). Raises ``BadInput`` (one line) for anything
    wrong; returns whether the checks were made (``False`` when the command runs no job, e.g.
    ``--help``, or composes from a config directory of its own: the app's callback checks then)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException

    parser = get_args_parser()
    try:
        ns, unknown = parser.parse_known_args(args)
    except SystemExit:
        return False  # Hydra's own parser reports it
    _refuse_foreign_callbacks(list(ns.overrides))
    if unknown or any(getattr(ns, flag, None) for flag in _NO_RUN) \
            or ns.config_path or ns.config_dir:
        return False
    overrides = list(ns.overrides)
    base = Path.cwd()
    try:
        jobs = _jobs(overrides, bool(ns.multirun))
    except HydraException as err:
        raise BadInput(explain(err, overrides, config_dir)) from None
    if jobs is None:
        return False
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        for num, job in enumerate(jobs):
            try:
                cfg = compose(config_name=ns.config_name or "config", overrides=list(job),
                              return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as err:
                raise BadInput(explain(err, job, config_dir)) from None
            if ns.multirun:
                where = _sweep_job_dir(cfg, num)
                label = f"hydra.sweep.dir={cfg.hydra.sweep.dir}, job {num}"
                sweep = Path(str(cfg.hydra.sweep.dir)).expanduser()
                link = _a_link_in(sweep if sweep.is_absolute() else base / sweep)
                if link is not None:  # multirun.yaml and the summaries are written there
                    raise BadInput(f"hydra.sweep.dir={cfg.hydra.sweep.dir}: {link} is a symbolic "
                                   "link: the sweep would write through it; remove it or choose a "
                                   "new directory")
            else:
                where, label = str(cfg.hydra.run.dir), None
            with open_dict(cfg):
                del cfg["hydra"]
            _check_job(cfg, base, build=len(jobs) == 1)
            if where is not None:
                _check_run_dir(where, cfg.get("resume"), base, label)
    return True
