"""Write ``docs/cli.md`` and the app's ``--help`` (``conf/hydra/help/feassample.yaml``) from the
config folder and the schemas, so both list exactly the options the app accepts.

    python -m feassample.cli.docs            # rewrite both files
    python -m feassample.cli.docs --check    # exit 1 if either differs from what would be written

Groups and options come from ``conf/<group>/*.yaml`` (their first comment line describes them);
defaults from ``conf/config.yaml``; keys and defaults of problems and models from the dataclasses
of ``feassample/cli/schemas.py``; every sampler's typed options from its ``Config`` dataclass. The
hand-written parts (intro, examples, outputs) are the templates below.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from . import schemas
from ..core.kernels import SAMPLERS, SeedConfig
from ..core.sampling import SamplerConfig

GROUPS = ("problem", "model", "sampler", "objective")
GROUP_ROLE = {"problem": "the feasible set", "model": "the network of neuron problems",
              "sampler": "the method", "objective": "the diversity term"}
ROOT = Path(__file__).resolve().parents[2]


def builtin_samplers() -> dict:
    """The library's own methods (a user's registered sampler is not documented here)."""
    return {name: cls for name, cls in SAMPLERS.items() if cls.__module__.startswith("feassample.")}


def conf_dir() -> Path:
    from .app import config_dir
    return Path(config_dir())


def _comment(path: Path) -> str:
    """The first line of a YAML file's leading comment."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def group_defaults() -> dict[str, str]:
    """``{group: default option}`` from ``conf/config.yaml``'s defaults list."""
    found = {}
    for entry in yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            found.update({k: v for k, v in entry.items() if k in GROUPS})
    return found


def group_options() -> dict[str, list[tuple[str, str]]]:
    """``{group: [(option, description)]}``: the YAML files of each group (never the schemas)."""
    return {g: [(p.stem, _comment(p)) for p in sorted((conf_dir() / g).glob("*.yaml"))]
            for g in GROUPS}


def top_level_keys() -> list[tuple[str, str, str]]:
    """``(key, default, comment)`` of ``conf/config.yaml``'s own keys."""
    rows = []
    for line in (conf_dir() / "config.yaml").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")) and ":" in line:
            key, _, rest = line.partition(":")
            if key in ("defaults", "hydra"):
                continue
            value, _, comment = rest.partition("#")
            rows.append((key.strip(), value.strip(), comment.strip()))
    return rows


def _type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        inner = " or ".join(_type(a) for a in rest)
        return f"{inner} or null" if len(rest) < len(args) else inner
    if origin in (list, tuple, typing.Sequence) or str(origin) == "<class 'collections.abc.Sequence'>":
        return f"list[{_type(args[0])}]" if args and args[0] is not Ellipsis else "list"
    if origin is dict:
        return "dict"
    if hint is Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if value == "???":
        return "required"
    if isinstance(value, tuple):
        value = list(value)
    return "null" if value is None else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").removesuffix("...").strip()


def fields_table(cls, prefix: str = "", skip: tuple = ("_target_",)) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        rows.append(f"| `{prefix}{f.name}` | {_type(hints[f.name])} | `{_default(f)}` |")
    return rows


def _preset(group: str, name: str) -> dict:
    data = yaml.safe_load((conf_dir() / group / f"{name}.yaml").read_text()) or {}
    data.pop("defaults", None)
    return data


def _flat(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += _flat(value, f"{prefix}{key}.")
        else:
            shown = "null" if value is None else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            out.append(f"{prefix}{key}={shown}")
    return out


PROBLEM_SCHEMAS = (("logistic, thin_slab", schemas.LogisticProblemSchema),
                   ("neuron, intersection", schemas.NeuronProblemSchema),
                   ("contrastive", schemas.ContrastiveProblemSchema),
                   ("python, annulus", schemas.PythonProblemSchema))
MODEL_SCHEMAS = (("digits", schemas.DigitsModelSchema), ("file", schemas.FileModelSchema),
                 ("torchvision, timm", schemas.NamedModelSchema),
                 ("exported, torchscript", schemas.ProgramModelSchema))

INTRO = """\
# The command line

<!-- Generated by `python -m feassample.cli.docs` from conf/ and the schemas of
feassample/cli/schemas.py; edit those (or the templates in feassample/cli/docs.py) and rerun it.
tests/cli/test_cli_docs.py fails when this file drifts. -->

`feassample` (or `python -m feassample`) is a [Hydra](https://hydra.cc) application
(`version_base="1.3"`); `feassample --help` prints a summary of this page. Its config groups
mirror the library's plug-in points. Choose an option with `group=option` and set any key with
`group.key=value`. Each `problem` and `model` config names its builder by `_target_`, one of
feassample's own (the registry of `feassample/cli/targets.py`; any other `_target_` is refused);
your own code comes in by `problem.factory`, `model.cls`, `sampler._target_` and
`objective._target_`.

Before Hydra runs anything, the `feassample` entry point (`feassample.cli.app.main`, also behind
`python -m feassample`) composes the config of every job the command line asks for (each job of
a `-m` sweep over Hydra's basic sweeper) and checks it, so a bad input is **one line on stderr,
exit code 2, and nothing written**: no output directory, no log, no `.hydra` record. The line
names the argument as you wrote it, with a "did you mean" for a group option or a key
(`problem=nueron`: `did you mean 'neuron'?`; `+sampler.num=100`: `did you mean 'n'?`, the wording
of the Python API's errors too) and lists
only the options you can choose. Every node is validated against the structured-config schemas
of `feassample/cli/schemas.py` (derived from `NeuronInverseSet`'s constructor and the samplers'
`Config` dataclasses): an unknown key (`problem.zz=1`, or one added with `+`), a wrong type
(`sampler.n=many`) or an override the grammar cannot read (`problem.unit=classifier.fc2[5]`:
a unit is written `classifier.fc2:5`). Then come bad values (`sampler.k=20 sampler.n=10`), a
plug-in's options, missing required keys (`model.cls`, `problem.factory`, a unit), malformed
unit strings and bands (an equality band needs `problem.tol > 0`), files that do not exist, a
generator name that is not known, an input-space problem with no input range, a
`hydra.run.dir` that already holds a run, or, for a `-m` sweep of Hydra's basic sweeper, a job
directory (`hydra.sweep.dir`/`hydra.sweep.subdir`) that does (continue it with `resume=`; its
`.hydra` record is left as it was, and no job of the sweep starts), and then everything that building the problem finds (an unknown layer, a unit
out of range, an unsafe model file; for a sweep each job's config is checked and its problem is
built by the job itself). The check
keeps nothing: the run builds the problem again (for the zoo's models ~15 ms; other models read
their weights file twice). Errors during the run itself (ValueError, TypeError,
FileNotFoundError) are one line too, with exit code 2.

Exit codes: **0** every requested sample certified (status `success`); **2** bad input;
**3** the run ended `infeasible`, `partial` or `interrupted` (fewer certified samples than
asked; for `problem=contrastive`, no explanation that passed its check): `metrics.json` says
which. A `-m` sweep exits 3 when any of its jobs does (jobs of the basic launcher, which run in
this process). `--help`, `--cfg` and a `--config-dir` of your own are passed to Hydra unchecked
(the app's callback checks the last).

Defaults are the Python API's (tests/cli/test_cli_defaults.py compares each with the
constructor's or dataclass's own). The exceptions: `problem.generator`/`problem.encoder` are
`auto` (the model config's; `None` in Python), `problem=logistic` gives the example slab `d=2,
z1=0.7, z2=0.95` (required arguments of `LogisticHalfspace.random`), and the presets
`sampler=joint` (`n=100`, `seeding.max_outer=4`, `options.joint_until=converged`),
`sampler=paper` (`seeding.optimizer=gd`, `seeding.lr=0.01`, `options.band_step=null`),
`objective=paper` (`normalize=false`) and `objective=none` (`weight=0`) are the choices they are
named for. `problem.code_radius` is `null` (no code ball), as in `NeuronInverseSet`.

Relative paths (`model.cls`, `model.state_dict`, `model.weights`, `model.path`,
`problem.factory`, `resume`, `sampler._target_`, `objective._target_`) are resolved against the
directory you launch `feassample` from.
"""

UNITS = """\
## Units and bands of neuron problems

| you want | write |
|---|---|
| one unit | `problem=neuron problem.unit=layer4:17 'problem.band=[2,4]'` |
| a position of a channel | `problem.unit=layer4:17:3:3` (channel 17 at y=3, x=3) |
| a model's output | `problem.unit=output:243` |
| several, one band | `problem=intersection 'problem.units=[fc2:3,fc2:5]' 'problem.band=[4,8]'` |
| several, a band each | `'problem.units=[fc2:3,fc2:5]' 'problem.bands=[[4,8],[3,9]]'` |
| several, as entries | `'problem.units=[{unit: "fc2:3", band: [4,8]}, {unit: "fc2:5", z1: 3, z2: 9}]'` |
| the old keys | `problem.units.0.layer=fc2 problem.units.0.unit=3 problem.units.0.z1=4 problem.units.0.z2=8` |

A unit's own `band` or `z1`/`z2` wins over `problem.bands`, which wins over the shared
`problem.band`. `problem.unit` and `problem.units` are exclusive. Only `model=digits` brings
defaults for neuron problems: `problem.generator=auto` is `digits_vae`, `problem.encoder=auto` is
`features.pool2`, and with no unit given `problem=neuron` samples `classifier.fc2:3` in [8, 12]
and `problem=intersection` `classifier.fc2:3` and `classifier.fc2:8` in [4, 8]. Every other model
starts with no generator, no encoder and no unit. `problem.generator` is `auto`, `null` (sample
inputs directly), `fourier` (the decorrelated Fourier parametrization) or `pixels`
(`feassample.models.params`, sized from `problem.input_shape`/`input_range` or the model's
metadata), or a zoo generator's name. See [models.md](models.md).
"""

EXAMPLES = """\
## Examples

```bash
feassample                                           # 2-D slab, 0.7 <= sigmoid(w.x + c) <= 0.95
feassample problem.z1=0.6 problem.z2=0.8 sampler.n=1000
feassample problem=thin_slab                         # d = 784, z in [0.7, 0.701]
feassample problem=annulus problem.kwargs.r_outer=2.5
feassample problem=python problem.factory=path/to/mine.py:make   # your file; package:Class only for a FeasibleSet subclass
feassample problem=neuron                            # the digits CNN's "3" logit in [8, 12]
feassample problem=neuron problem.unit=classifier.fc2:5 'problem.band=[6,9]'
feassample problem=intersection 'problem.units=[classifier.fc2:3,classifier.fc2:8]' 'problem.band=[4,8]'
feassample model=torchvision model.arch=resnet18 model.weights=resnet18.pth problem=neuron \\
  problem.unit=layer4:17 'problem.band=[2,4]' problem.generator=fourier 'problem.input_shape=[3,64,64]'
feassample model=file model.cls=net.py:Net model.state_dict=net.pt 'model.input_range=[0,1]' \\
  problem=neuron problem.unit=fc2:1 'problem.band=[0,0.2]' 'problem.input_shape=[1,16,16]'
feassample sampler=joint                             # eq. (15) over all n = 100 at once
feassample sampler=walk sampler.options.walk_lr=0.02 sampler.seeding.max_outer=4
feassample sampler=langevin sampler.options.thin=5   # a baseline with its typed options
feassample objective=repulsive sampler=walk          # a kernel repulsion against the pool's points
feassample objective=paper sampler=paper             # the paper's algorithm as published
feassample sampler.dtype=float64 sampler.device=cuda
feassample -m problem.z1=0.5,0.7,0.9                 # multirun: multirun/DATE/TIME/{0,1,2}/
feassample --cfg job problem=neuron                  # print the composed config, run nothing
```
"""

OUTPUTS = """\
## Outputs

Each run writes into Hydra's output directory (`outputs/DATE/TIME/`, or
`multirun/DATE/TIME/N/` in a sweep; change it with `hydra.run.dir=...` / `hydra.sweep.dir=...`):

| file | contents |
|---|---|
| `samples/samples.pt`, `samples/sampleset.json` | the `SampleSet` (`fs.SampleSet.load(dir)`) |
| `metrics.json` | feasible fraction, status, message, steps, model evaluations, wall seconds, and `coverage` against exact iid samples (KS p-value of `w.x`, boundary-bias z, NN ratio, fill ratio, energy z) |
| `plot.png` | 2-D: samples over the shaded set; higher d: histogram of `w.x` against the exact law; images: a grid; histograms of each constraint value against its band |
| `report.html` | one self-contained page (images embedded, no network): the samples, the facets with their shares, the rarity curve, the diagnostics and the command and config that reproduce the run ([analysis.md](analysis.md)) |
| `app.log`, `.hydra/` | the log and the composed config |

`metrics.json` also holds the run's rarity curve (`rarity`) and facets (`facets`). A sweep's
directory gets `summary.md`, `summary.csv`, `summary.png` and `report.html` from
`feassample-summary` (run by the sweep's callback, or by hand: `feassample-summary DIR`);
`feassample-summary --overlap DIR` adds the overlap matrix `P(B | A)` between its runs
(`overlap.md`, `overlap.json`, `overlap.png`, [analysis.md](analysis.md)). `feassample-export RUN` writes a
run's samples as ArviZ netCDF (`RUN/samples.nc`; needs `feassample[arviz]`).

The library logs through `logging` only; the app's handlers come from Hydra.
"""


def render_markdown() -> str:
    """The whole of ``docs/cli.md``."""
    defaults, options = group_defaults(), group_options()
    out = [INTRO, "## Config groups", ""]
    out += ["| group | option | what it is |", "|---|---|---|"]
    for group in GROUPS:
        for name, text in options[group]:
            shown = f"`{name}` (default)" if defaults.get(group) == name else f"`{name}`"
            out.append(f"| `{group}` | {shown} | {text.replace('|', '/')} |")
    out += ["", "## Top-level keys", "", "| key | default | what it does |", "|---|---|---|"]
    out += [f"| `{k}` | `{v}` | {c} |" for k, v, c in top_level_keys()]
    out += ["", UNITS, "## Problem keys", ""]
    for names, cls in PROBLEM_SCHEMAS:
        out += [f"`problem={names}` (`{cls.__name__}`):", ""] + fields_table(cls, "problem.") + [""]
    out += ["## Model keys", ""]
    for names, cls in MODEL_SCHEMAS:
        out += [f"`model={names}` (`{cls.__name__}`):", ""] + fields_table(cls, "model.") + [""]
    out += ["## Samplers and their typed options", "",
            "Every `sampler=` option has the run's keys and the seed phase's `sampler.seeding.*`; "
            "its `sampler.options.*` are the method's `Config` (a misspelled option is refused "
            "when the config is composed). Defaults are the dataclasses'; a preset's own values "
            "are listed under it.", "", "Run keys (`SamplerConfig`):", ""]
    run_fields = [f for f in dataclasses.fields(SamplerConfig) if f.name in schemas.RUN_FIELDS]
    hints = typing.get_type_hints(SamplerConfig)
    out += ["| key | type | default |", "|---|---|---|"]
    out += [f"| `sampler.{f.name}` | {_type(hints[f.name])} | `{_default(f)}` |" for f in run_fields]
    out += ["", "Seed phase (`SeedConfig`):", ""] + fields_table(SeedConfig, "sampler.seeding.") + [""]
    presets = {name: _preset("sampler", name) for name, _ in options["sampler"]}
    for method, cls in builtin_samplers().items():
        using = [n for n, data in presets.items() if data.get("method") == method]
        out += [f"### `{method}` (`{cls.Config.__name__}`)", ""]
        for name in using:
            extra = [s for s in _flat(presets[name]) if not s.startswith("method=")]
            out.append(f"- `sampler={name}`" + (f": {', '.join(f'`{s}`' for s in extra)}" if extra else ""))
        out += [""] + fields_table(cls.Config, "sampler.options.") + [""]
    out += ["### `plugin`", "",
            "`sampler=plugin sampler._target_=path/to/file.py:Class`: a `Sampler` subclass of your own "
            "([extending.md](extending.md)); its `sampler.options.*` are checked against the class's "
            "`Config` before the run directory is created.", "",
            "## Objective keys", ""] + fields_table(schemas.ObjectiveSchema, "objective.", skip=())
    out += ["", EXAMPLES, OUTPUTS]
    return "\n".join(out).rstrip() + "\n"


HELP_EXAMPLES = (
    ("the digits CNN's '3' logit in [8, 12] through the VAE decoder", "feassample problem=neuron"),
    ("a ResNet-18 channel from weights on disk, through the Fourier parametrization",
     "feassample model=torchvision model.arch=resnet18 model.weights=resnet18.pth problem=neuron "
     "problem.unit=layer4:17 'problem.band=[2,4]' problem.generator=fourier 'problem.input_shape=[3,64,64]'"),
    ("a sweep over the band's lower end with the paper's walk",
     "feassample -m sampler=walk problem.z1=0.5,0.7,0.9 sampler.n=200"),
)


def render_help() -> str:
    """``conf/hydra/help/feassample.yaml``: Hydra's help template, written for this app."""
    defaults, options = group_defaults(), group_options()
    lines = ["feassample: certified, diverse samples of feasible sets {x : lo <= h(x) <= hi}",
             "(neuron inverse sets of a network's units, slabs, problems of your own).", "",
             "Usage: feassample [GROUP=OPTION ...] [KEY=VALUE ...]", "",
             "Config groups (GROUP=OPTION; the default is starred):"]
    for group in GROUPS:
        names = [f"{n}*" if defaults.get(group) == n else n for n, _ in options[group]]
        lines.append(f"  {group:<10} {GROUP_ROLE[group]}: {', '.join(names)}")
    lines += ["", "Common overrides:",
              "  sampler.n=500 sampler.k=10 sampler.seed=0    samples, walkers, seed",
              "  sampler.device=cuda sampler.dtype=float64    where and in what precision",
              "  sampler.options.KEY=V                        the method's typed options",
              "  problem.unit=layer4:17 'problem.band=[2,4]'  one unit of problem=neuron",
              "  'problem.units=[fc2:3,fc2:5]' 'problem.band=[4,8]'   problem=intersection",
              "  problem.generator=auto|null|fourier|pixels   what inputs are decoded from",
              "  model.weights=PATH model.path=PATH model.cls=FILE.py:Class model.state_dict=PATH",
              "  'model.input_range=[0,1]'                    models that state no input range",
              "  progress=false plot=false resume=RUN_DIR hydra.run.dir=DIR", "",
              "Examples:"]
    for text, command in HELP_EXAMPLES:
        lines += [f"  # {text}", f"  {command}"]
    lines += ["", "Hydra flags: --cfg job (print the composed config and stop), -m (a sweep),",
              "--hydra-help. Every option and key: docs/cli.md. Relative paths are resolved",
              "against the directory you launch from; bad input is one line on stderr."]
    assert not any("$" in line for line in lines), "Hydra's help template treats $ specially"
    body = "\n".join(f"  {line}" if line else "" for line in lines)
    return ("# Generated by python -m feassample.cli.docs (do not edit): the app's --help.\n"
            "app_name: feassample\nheader: ''\nfooter: ''\ntemplate: |\n" + body + "\n")


def targets() -> dict[Path, str]:
    """``{path: text}`` of every generated file."""
    return {ROOT / "docs" / "cli.md": render_markdown(),
            conf_dir() / "hydra" / "help" / "feassample.yaml": render_help()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feassample.cli.docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a file would change")
    args = parser.parse_args(argv)
    stale = []
    for path, text in targets().items():
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if args.check and stale:
        print("out of date (run python -m feassample.cli.docs): " + ", ".join(map(str, stale)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
