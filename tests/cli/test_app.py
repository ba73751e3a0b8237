"""The Hydra app: every config composes and instantiates, runs write their outputs, the schema
refuses bad overrides, and a multirun writes one directory per value."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import feassample as fs
from feassample.cli import app, build, sampler

ROOT = Path(__file__).resolve().parents[2]
CONF = Path(app.config_dir())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_the_config_folder_is_the_repositorys_conf():
    assert (CONF / "config.yaml").is_file()
    assert {"logistic", "annulus"} <= set(_options("problem"))


@pytest.mark.parametrize("group", ["problem", "sampler", "objective", "model"])
def test_every_config_in_every_group_composes_and_instantiates(group):
    options = _options(group)
    assert options, f"no configs in {group}/"
    for name in options:
        cfg = _compose([f"{group}={name}"])
        if group == "sampler" and name == "plugin":  # a template: its class must be given
            with pytest.raises(ValueError, match="sampler._target_"):
                sampler.sampler_config(cfg, ROOT)
            cfg = _compose(["sampler=plugin", "sampler._target_=examples/extending_sampler.py:BoxMetropolis"])
        scfg = sampler.sampler_config(cfg, ROOT)
        assert isinstance(scfg, fs.SamplerConfig)
        if group == "problem" and name == "python":  # a template: its factory must be given
            with pytest.raises(ValueError, match="problem.factory"):
                build.build_problem(cfg, ROOT)
            cfg = _compose(["problem=python", "problem.factory=examples/custom_problem.py:annulus"])
        if group == "model":
            templates = {"file": "model.cls", "torchvision": "model.arch", "timm": "model.arch",
                         "exported": "model.path", "torchscript": "model.path"}
            if name in templates:  # a template: class, architecture or file must be given
                with pytest.raises(ValueError, match=templates[name]):
                    build.build_model(cfg, ROOT)
                continue
            assert isinstance(build.build_model(cfg, ROOT), torch.nn.Module)
            cfg = _compose([f"model={name}", "problem=neuron"])
        problem = build.build_problem(cfg, ROOT)
        assert isinstance(problem, fs.FeasibleSet)


@pytest.mark.parametrize("override,error", [
    ("problem.zz=1", ConfigCompositionException),       # misspelled key
    ("sampler.n=many", ConfigCompositionException),     # wrong type
    ("sampler.lrr=0.1", ConfigCompositionException),
])
def test_the_schema_refuses_unknown_keys_and_wrong_types(override, error):
    with pytest.raises(error):
        _compose([override])


def test_a_bad_value_fails_before_any_work():
    cfg = _compose(["sampler.k=20", "sampler.n=10"])
    with pytest.raises(ValueError, match="k .* must be <= n"):
        sampler.sampler_config(cfg)


def test_a_run_writes_samples_metrics_and_plot(tmp_path):
    cfg = _compose(["sampler.n=60", "sampler.k=6", "progress=false", "reference_draws=3"])
    metrics = app.run(cfg, tmp_path, ROOT)
    assert metrics["status"] == "success" and metrics["feasible_fraction"] == 1.0
    saved = fs.SampleSet.load(tmp_path / "samples")
    assert len(saved) == 60 and bool(saved.feasible.all())
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= on_disk["coverage"]["ks_p"] <= 1.0
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    # the default smc estimates log P(set); the slab's exact volume (SlabLaw) is reported beside it
    from feassample.problems.slab_truth import SlabLaw
    problem = build.build_problem(cfg, ROOT)
    exact = SlabLaw(problem.w64, problem.a, problem.b).log_volume()
    assert on_disk["coverage"]["log_prob_exact"] == pytest.approx(exact)
    assert abs(on_disk["log_prob"] - exact) < 4 * on_disk["log_prob_se"]


def test_the_custom_python_problem_runs_from_the_app(tmp_path):
    cfg = _compose(["problem=annulus", "sampler.n=50", "sampler.k=5", "progress=false"])
    metrics = app.run(cfg, tmp_path, ROOT)
    assert metrics["status"] == "success" and metrics["feasible_fraction"] == 1.0
    assert (tmp_path / "plot.png").is_file()


def test_a_missing_factory_file_is_reported(tmp_path):
    cfg = _compose(["problem=annulus", "problem.factory=nowhere/none.py:f"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build.build_problem(cfg, tmp_path)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "feassample", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_two_value_multirun_writes_two_run_dirs(tmp_path):
    sweep = tmp_path / "sweep"
    out = _cli(["-m", "problem.z1=0.5,0.7", "sampler.n=40", "sampler.k=4", "progress=false",
                "reference_draws=2", f"hydra.sweep.dir={sweep}"], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
    assert [p.name for p in runs] == ["0", "1"]
    z1s = [(p / ".hydra" / "overrides.yaml").read_text() for p in runs]
    assert "problem.z1=0.5" in z1s[0] and "problem.z1=0.7" in z1s[1]


def test_the_cli_reports_a_misspelled_override(tmp_path):
    out = _cli(["problem.zz=1", f"hydra.run.dir={tmp_path / 'run'}"], ROOT)
    assert out.returncode != 0
    assert "zz" in out.stderr


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_run_a_two_job_sweep_and_summarize_it(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=5"]
    out = _cli(["-m", "problem.z1=0.5,0.7", "sampler.n=30", "sampler.k=5", "progress=false",
                "coverage=false", f"hydra/launcher={launcher}", *extra, f"hydra.sweep.dir={sweep}"], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "success" and metrics["feasible_fraction"] == 1.0
    table = (sweep / "summary.md").read_text()
    assert "problem.z1=0.5" in table and "problem.z1=0.7" in table
    assert (sweep / "summary.png").stat().st_size > 5_000


def test_feassample_summary_cli_collects_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    out = _cli(["-m", "problem.z1=0.5,0.7", "sampler.n=20", "sampler.k=5", "progress=false",
                "coverage=false", "plot=false", f"hydra.sweep.dir={sweep}"], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep / "summary.md").unlink()
    res = subprocess.run([sys.executable, "-m", "feassample.cli.summary", str(sweep)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (sweep / "summary.md").is_file() and "| 0 |" in res.stdout and "| 1 |" in res.stdout


def test_the_app_resumes_a_killed_run(tmp_path):
    first = tmp_path / "first"
    cfg = _compose(["problem.d=64", "sampler.n=200", "sampler.k=10", "progress=false", "coverage=false"])
    from feassample.api import sample as api_sample
    problem = build.build_problem(cfg, ROOT)

    def stop(phase, state, info):
        if phase == "smc" and state.rounds == 1:  # the default method (rejection here), after one batch
            raise KeyboardInterrupt

    part = api_sample(problem, n=200, k=10, seed=0, run_dir=first, callbacks=[stop])
    assert part.status == "interrupted"
    cfg2 = _compose(["problem.d=64", "sampler.n=200", "sampler.k=10", "progress=false",
                     "coverage=false", f"resume={first}"])
    metrics = app.run(cfg2, tmp_path / "second", ROOT)
    assert metrics["status"] == "success" and metrics["n_returned"] == 200


def test_a_neuron_run_writes_an_image_grid_and_certified_samples(tmp_path):
    cfg = _compose(["problem=neuron", "sampler.n=40", "sampler.k=5", "progress=false"])
    metrics = app.run(cfg, tmp_path, ROOT)
    assert metrics["status"] == "success" and metrics["feasible_fraction"] == 1.0
    s = fs.SampleSet.load(tmp_path / "samples")
    from feassample.models import load_classifier
    with torch.no_grad():
        logit3 = load_classifier()(s.x)[:, 3]   # an independent forward pass of the model
    assert bool(((logit3 >= 8.0) & (logit3 <= 12.0)).all())
    assert (tmp_path / "plot.png").stat().st_size > 20_000


def test_an_intersection_run_and_a_band_given_as_a_pair(tmp_path):
    cfg = _compose(["problem=intersection", "sampler.n=30", "sampler.k=5", "progress=false",
                    "problem.units=[classifier.fc2:3,classifier.fc2:8]", "problem.bands=[[4,8],[3.0,9.0]]"])
    metrics = app.run(cfg, tmp_path, ROOT)
    assert metrics["status"] == "success"
    s = fs.SampleSet.load(tmp_path / "samples")
    assert s.values.shape == (30, 2) and bool(((s.values[:, 1] >= 3) & (s.values[:, 1] <= 9)).all())


NET_PY = """
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.fc1 = nn.Linear(256, hidden)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(hidden, 3)
    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))
"""


def test_your_own_model_from_a_class_file_and_a_state_dict(tmp_path):
    (tmp_path / "net.py").write_text(NET_PY)
    from feassample.models import load_object
    torch.manual_seed(0)
    net = load_object(f"{tmp_path}/net.py:Net")(hidden=8)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    cfg = _compose(["model=file", f"model.cls={tmp_path}/net.py:Net", f"model.state_dict={tmp_path}/net.pt",
                    "+model.kwargs.hidden=8", "problem=neuron", "problem.generator=null",
                    "problem.encoder=null", "problem.units.0.layer=fc2", "problem.units.0.unit=1",
                    "problem.units.0.z1=0.0", "problem.units.0.z2=0.2", "sampler.n=20", "sampler.k=5",
                    "problem.input_shape=[1,16,16]", "model.input_range=[0,1]",  # no digits defaults
                    "progress=false"])
    metrics = app.run(cfg, tmp_path / "run", ROOT)
    assert metrics["status"] == "success"
    s = fs.SampleSet.load(tmp_path / "run" / "samples")
    with torch.no_grad():
        f = net(s.x)[:, 1]
    assert bool(((f >= 0.0) & (f <= 0.2)).all())


def test_a_pickle_with_code_is_refused_as_weights(tmp_path):
    (tmp_path / "net.py").write_text(NET_PY)
    import pickle
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(print))
    from feassample.models import load_model_file
    with pytest.raises(ValueError, match="weights_only"):
        load_model_file(f"{tmp_path}/net.py:Net", str(tmp_path / "evil.pt"))
