"""Every command README.md and docs/*.md show (in their code blocks: lines starting with
``feassample``, ``feassample-summary``, ``feassample-merge``, ``python examples/...`` or
``python -m ...``) is run here, with a short run appended (``sampler.n=12 sampler.k=4``, no
progress bar, no plot, no coverage report), in a scratch directory holding the checkout's ``examples/`` and the
user files the commands name; a doc whose command stops working fails this test.

The feassample commands run in this process (``feassample.cli.app.main``: the console script's
own entry point), the others as subprocesses. Placeholders are filled from the runs before them:
``outputs/DATE/TIME`` is the newest run directory, ``multirun/DATE/TIME`` the newest sweep."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import test_cli_errors
import torch

from feassample.cli import app, merge, summary

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = re.compile(r"^(feassample(-summary|-merge)?|python examples/|python -m )")
#: appended to every feassample run (the last value of a key wins)
SHORT = ["sampler.n=12", "sampler.k=4", "progress=false", "plot=false", "coverage=false"]
SHARDED = ["sampler.n=64", "sampler.k=4", "progress=false", "plot=false", "coverage=false"]  # 8 shards of 8

#: commands not run here (by a text they contain), and why
SKIPPED = {
    "model=torchvision": "needs a ResNet state_dict file (tests download nothing)",
    "submitit_slurm": "needs a Slurm cluster",
    "feassample-merge runs/n197": "merges the Slurm shards of the command above it",
    "feassample-merge runs/annulus": "merges the shards of a problem=python job (the same merge with "
                                     "--problem-factory runs in tests/rundir/test_hostile.py)",
    "feassample-merge runs/mynet": "merges the shards of a model=file job (--model-cls: a file of "
                                   "your own, shown as path/to/net.py)",
    "--weights ~/resnet18": "needs a ResNet state_dict file (tests download nothing)",
    "pip install": "installs packages",
}
if not torch.cuda.is_available():
    SKIPPED["sampler.device=cuda"] = "needs a CUDA device"
#: commands that take minutes (run with -m slow), and why
SLOW = {
    "python -m benchmarks.coverage": "a benchmark: every case over 10 seeds (minutes)",
    "python -m feassample.cli.train_zoo": "trains the zoo's models (minutes)",
    "python examples/torchvision_resnet.py": "a ResNet-18 on CPU",
    "problem=contrastive": "CDeepEx explanations: an optimization per restart",
}
#: the user files the documented commands name, made in the scratch directory
NET_PY = test_cli_errors.NET_PY  # the same small net the CLI error tests use
MINE_PY = """
import feassample as fs
def make():
    return fs.LogisticHalfspace.random(d=3, z1=0.6, z2=0.9)
"""


def documented() -> list[tuple[str, str]]:
    """``(where, command)`` for each command in a code block of the docs (continuations joined)."""
    found = []
    for doc in DOCS:
        inside, pending, start = False, "", 0
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                inside, pending = not inside, ""
                continue
            if not inside:
                continue
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            if pending:
                text, start = pending + " " + text, start
            elif PROGRAMS.match(text):
                start = number
            else:
                continue
            if text.endswith("\\"):
                pending = text[:-1].strip()
                continue
            pending = ""
            found.append((f"{doc.relative_to(ROOT)}:{start}", text))
    return found


COMMANDS = documented()


def _marks(command: str):
    for text, why in SKIPPED.items():
        if text in command:
            return [pytest.mark.skip(reason=why)]
    return [pytest.mark.slow] if any(text in command for text in SLOW) else []


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The scratch directory every command runs in: the checkout's examples/ and benchmarks/,
    the net.py/net.pt of docs/cli.md and docs/models.md, and path/to/mine.py."""
    from feassample.models import load_object

    ws = tmp_path_factory.mktemp("docs")
    for name in ("examples", "benchmarks"):
        (ws / name).symlink_to(ROOT / name)
    (ws / "net.py").write_text(NET_PY)
    torch.save(load_object(f"{ws}/net.py:Net")().state_dict(), ws / "net.pt")
    (ws / "path" / "to").mkdir(parents=True)
    (ws / "docs" / "img").mkdir(parents=True)
    (ws / "path" / "to" / "mine.py").write_text(MINE_PY)
    torch.manual_seed(0)  # the exported conv's weights: unseeded, some draws made its band partial
    conv = torch.nn.Sequential()
    conv.add_module("conv", torch.nn.Conv2d(3, 4, 3))
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(conv.eval(), (torch.rand(2, 3, 6, 6),),
                                  dynamic_shapes={"input": {0: batch}})
    torch.export.save(program, ws / "net.pt2")
    return ws


def _newest(root: Path) -> str:
    runs = sorted(p for p in root.glob("*/*") if p.is_dir())
    assert runs, f"no run under {root} for a placeholder"
    return str(runs[-1].relative_to(root.parent))


def _fill(command: str, ws: Path) -> str:
    words = " ".join(shlex.split(command, comments=True))  # a placeholder in a comment is prose
    if "outputs/DATE/TIME" in words:
        command = command.replace("outputs/DATE/TIME", _newest(ws / "outputs"))
    if "multirun/DATE/TIME" in words:
        command = command.replace("multirun/DATE/TIME", _newest(ws / "multirun"))
    return command


def _call(entry, args) -> int:
    argv = sys.argv
    try:
        entry(args)
        return 0
    except SystemExit as err:
        return 0 if err.code is None else int(err.code) if isinstance(err.code, int) else 1
    finally:
        sys.argv = argv


RUNS: list[str] = []  # the feassample runs so far (each gets its own directory)


def run_documented(command: str, ws: Path) -> int:
    tokens = shlex.split(_fill(command, ws), comments=True)
    if tokens[:3] == ["python", "-m", "feassample"]:
        tokens = ["feassample", *tokens[3:]]
    if tokens[:3] == ["python", "-m", "feassample.cli.summary"]:
        tokens = ["feassample-summary", *tokens[3:]]
    program, args = tokens[0], tokens[1:]
    if program == "feassample":
        if not {"--help", "--cfg", "-c", "--hydra-help"} & set(args):
            args = args + (SHARDED if any(a.startswith("shards=") for a in args) else SHORT)
            # a directory of its own (Hydra's default names one per second: fast runs collide)
            RUNS.append(command)
            if not any(a.startswith("hydra.run.dir=") for a in args):
                args.append(f"hydra.run.dir=outputs/{len(RUNS):03d}/run")
            if not any(a.startswith("hydra.sweep.dir=") for a in args):
                args.append(f"hydra.sweep.dir=multirun/{len(RUNS):03d}/sweep")
        return _call(app.main, args)
    if program == "feassample-merge":
        return _call(merge.main, args)
    if program == "feassample-summary":
        return _call(summary.main, args)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *tokens[1:]], cwd=ws, env=env, timeout=1800).returncode


@pytest.mark.parametrize("where,command", [pytest.param(w, c, marks=_marks(c), id=f"{w} {c}")
                                           for w, c in COMMANDS])
def test_a_documented_command_runs(where, command, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    assert run_documented(command, workdir) == 0, f"{where}: {command}"


def test_the_docs_show_commands_and_every_skip_names_one():
    assert len(COMMANDS) >= 40
    for text in [*SKIPPED, *SLOW]:
        if text == "sampler.device=cuda" or text == "pip install":
            continue
        assert any(text in c for _, c in COMMANDS), f"stale entry {text!r}: no documented command has it"
