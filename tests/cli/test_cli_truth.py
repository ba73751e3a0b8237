"""What the command line tells a user is true: every bad input is one line on stderr with exit
code 2 before anything is written (Hydra's own composition errors included, with a "did you
mean" and only the options a user can choose), a refused run leaves another run's record as it
was, and the exit code says whether every requested sample was certified (0) or not (3)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from feassample.cli import app

ROOT = Path(__file__).resolve().parents[2]
FAST = ["sampler.n=12", "sampler.k=4", "progress=false", "plot=false", "coverage=false"]

#: (command line, what the one line must say)
BAD = [
    (["problem=nueron"], ["problem=nueron", "did you mean 'neuron'?", "logistic"]),
    (["sampler=smcc"], ["sampler=smcc", "did you mean 'smc'?"]),
    (["problem.zz=1"], ["problem.zz=1", "'zz' is not a key"]),
    (["problem.sclae=logit"], ["did you mean 'scale'?"]),
    (["+sampler.num=100"], ["sampler.num=100", "did you mean 'n'?"]),
    (["sampler.options.partcles=10"], ["sampler.options.partcles", "did you mean 'particles'?"]),
    (["+sampler.options.partcles=10"], ["no option 'partcles'", "did you mean 'particles'?"]),
    (["treads=2"], ["treads=2", "did you mean 'threads'?"]),
    (["sampler.n=many"], ["sampler.n=many", "could not be converted to Integer"]),
    (["problem=neuron", "problem.unit=classifier.fc2[5]"],
     ["problem.unit=classifier.fc2[5]", "problem.unit=classifier.fc2:5"]),
    (["problem.z1=0.9", "problem.z2=0.5"], ["z1 < z2"]),
    (["problem=neuron", "problem.unit=classifier.fc2:3", "problem.band=[5,5]"], ["problem.tol"]),
    (["-m", "sampler.n=12,many"], ["sampler.n=many"]),
    (["-m", "problem=logistic,nueron"], ["did you mean 'neuron'?"]),
    (["-m", "sampler.n=12,8", "sampler.k=10"], ["k"]),  # the second job's n < k
    # Hydra builds callbacks and launchers from a _target_ before any check: none may be named
    (["+hydra.callbacks.x._target_=feassample.models.files.load_object", "+hydra.callbacks.x.spec=evil.py:x"],
     ["+hydra.callbacks.x._target_", "may not add or change one"]),
    (["hydra.callbacks.summary._target_=torch.load"], ["hydra.callbacks.summary._target_"]),
    (["hydra.launcher._target_=feassample.models.files.load_object"], ["choose them by group"]),
]


@pytest.mark.parametrize("args,says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_command_line_is_one_line_exit_2_and_writes_nothing(args, says, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["feassample"])
    with pytest.raises(SystemExit) as exit_:
        app.main(args)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("feassample: "), err
    assert "_schema" not in err and "Traceback" not in err and out == ""
    for text in says:
        assert text in lines[0], (text, lines[0])
    assert list(tmp_path.iterdir()) == []  # no outputs/, multirun/ or log


def test_a_hydra_callback_from_the_command_line_runs_no_code(tmp_path):
    (tmp_path / "evil.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')\n")
    done = _cli(["+hydra.callbacks.x._target_=feassample.models.files.load_object",
                 f"+hydra.callbacks.x.spec={tmp_path / 'evil.py'}:x", *FAST], tmp_path)
    assert done.returncode == 2 and "may not add or change one" in done.stderr, done.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "outputs").exists()


def _cli(args, cwd) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("feassample")  # the console script
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "feassample"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_refused_run_into_a_run_directory_leaves_its_record_untouched(tmp_path):
    run_dir = tmp_path / "run"
    first = _cli([*FAST, f"hydra.run.dir={run_dir}"], tmp_path)
    assert first.returncode == 0, first.stderr
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert run_dir / ".hydra" / "overrides.yaml" in files
    again = _cli([*FAST, "problem.d=3", f"hydra.run.dir={run_dir}"], tmp_path)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds a run" in lines[0] and "resume=" in lines[0]
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files


def test_a_refused_sweep_into_a_sweep_holding_runs_leaves_every_record_untouched(tmp_path):
    sweep = tmp_path / "sweep"
    first = _cli(["-m", "sampler.seed=0,1", *FAST, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert first.returncode == 0, first.stderr
    files = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    assert sweep / "1" / ".hydra" / "overrides.yaml" in files
    # job 0 is free again, job 1 still holds its run: the sweep is refused before either starts
    shutil.rmtree(sweep / "0")
    files = {p: b for p, b in files.items() if p.parts[len(sweep.parts)] != "0"}
    again = _cli(["-m", "sampler.seed=5,6", *FAST, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "job 1" in lines[0] and "already holds a run" in lines[0], again.stderr
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == files
    assert not (sweep / "0").exists()  # job 0 did not start either


@pytest.mark.parametrize("name", ["app.log", "metrics.json", "plot.png", ".hydra/config.yaml"])
def test_a_link_in_the_run_directory_is_refused_and_its_target_untouched(tmp_path, name):
    target = tmp_path / "precious.txt"
    target.write_text("mine\n")
    run_dir = tmp_path / "run"
    (run_dir / name).parent.mkdir(parents=True)
    (run_dir / name).symlink_to(target)
    done = _cli([*FAST, f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "symbolic link" in lines[0] and name.split("/")[-1] in lines[0], done.stderr
    assert target.read_text() == "mine\n" and (run_dir / name).is_symlink()
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / ("summary.md" if name == "app.log" else "0/" + name.split("/")[-1])).symlink_to(target)
    done = _cli(["-m", "sampler.seed=0,1", *FAST, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 2 and "symbolic" in done.stderr, done.stderr
    assert target.read_text() == "mine\n" and not (sweep / "1").exists()


def test_the_apps_own_files_replace_a_link_instead_of_writing_through_it(tmp_path):
    """Past the preflight (a link made while the run goes, or through the Python functions): the
    app's files are written to a temporary name and renamed over the link."""
    from feassample.cli.summary import write_summary
    from feassample.viz.figure import new_figure, save_figure

    target = tmp_path / "precious.txt"
    target.write_text("mine\n")
    (tmp_path / "plot.png").symlink_to(target)
    save_figure(new_figure(), tmp_path / "plot.png")
    assert target.read_text() == "mine\n" and not (tmp_path / "plot.png").is_symlink()
    run = tmp_path / "sweep" / "0"
    first = _cli([*FAST, f"hydra.run.dir={run}"], tmp_path)
    assert first.returncode == 0, first.stderr
    for name in ("summary.md", "summary.csv", "summary.png"):
        (tmp_path / "sweep" / name).symlink_to(target)
    write_summary(tmp_path / "sweep")
    assert target.read_text() == "mine\n"
    assert "status" in (tmp_path / "sweep" / "summary.md").read_text()


def test_exit_code_3_when_not_every_sample_is_certified_and_0_when_all_are(tmp_path):
    partial = _cli(["problem=thin_slab", "sampler=rejection", *FAST,
                    f"hydra.run.dir={tmp_path / 'thin'}"], tmp_path)
    assert partial.returncode == 3, partial.stderr
    status = json.loads((tmp_path / "thin" / "metrics.json").read_text())["status"]
    assert status in ("partial", "infeasible")
    done = _cli([*FAST, f"hydra.run.dir={tmp_path / 'done'}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "done" / "metrics.json").read_text())["status"] == "success"


@pytest.mark.slow
def test_a_sweep_exits_3_when_one_job_is_not_fully_certified(tmp_path):
    sweep = _cli(["-m", "problem=logistic,thin_slab", "sampler=rejection", *FAST,
                  f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert sweep.returncode == 3, sweep.stderr  # one job of two is partial
    assert len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 2


def test_python_dash_m_feassample_is_the_same_entry_point(tmp_path):
    res = subprocess.run([sys.executable, "-m", "feassample", "problem=nueron"], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "did you mean 'neuron'" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_summary_of_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    from feassample.cli import summary
    with pytest.raises(SystemExit) as exit_:
        summary.main([str(tmp_path / "no" / "such")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "is not a directory" in err
