"""Run directories never lose or mix samples: disk use linear in n d, one run per directory
(fingerprint, settings, overwrite), an exclusive lock, stray files never loaded, a crash between a
shard and its state trimmed on resume, and signals inside a write."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import feassample as fs
from feassample.rundir.lock import RunDirectoryBusy
from feassample.rundir import storage
from feassample.rundir.storage import load_checkpoint, shard_files

ROOT = Path(__file__).resolve().parents[2]


def slab(w_seed: int = 0, d: int = 16):
    return fs.LogisticHalfspace.random(d, 0.6, 0.8, w_seed=w_seed)


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_disk_use_is_linear_in_n_d(tmp_path):
    p = slab(d=784)
    s = fs.sample(p, n=20_000, k=10, method="rejection", run_dir=tmp_path)
    raw = sum(t.numel() * t.element_size() for t in (s.x, s.codes, s.values, s.feasible))
    assert _bytes(tmp_path) <= 2 * raw  # was 15.7 MB per 10-row shard at n = 5,000
    rows = sum(s.codes.shape[1] * 4 + s.values.shape[1] * 4 for _ in range(1)) * len(s)
    assert _bytes(tmp_path / "checkpoint" / "shards") <= 1.05 * rows  # each shard holds its rows only


def test_resume_with_other_weights_is_refused_naming_them(tmp_path):
    fs.sample(slab(0), n=40, k=5, run_dir=tmp_path)
    with pytest.raises(ValueError, match=r"another problem: its .*w64.* differ"):
        fs.sample(slab(1), n=80, resume=tmp_path)   # same shape and bands, other w


def test_resume_with_other_law_settings_is_refused(tmp_path):
    p = slab()
    fs.sample(p, method="cover", n=40, k=5, run_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings .*options"):
        fs.sample(p, n=80, resume=tmp_path, config=fs.SamplerConfig(method="cover", n=80, k=5, options={"budget": 20}))
    with pytest.raises(ValueError, match="method 'cover', not 'walk'"):
        fs.sample(p, n=80, resume=tmp_path, method="walk")
    assert len(fs.sample(p, n=80, resume=tmp_path)) == 80  # the saved settings: fine


def test_a_directory_holds_one_run_unless_overwritten(tmp_path):
    fs.sample(slab(0), n=40, k=5, run_dir=tmp_path)
    with pytest.raises(ValueError, match="already holds a run: continue it with resume="):
        fs.sample(slab(1), n=40, k=5, run_dir=tmp_path)
    s = fs.sample(slab(1), n=30, k=5, run_dir=tmp_path, overwrite=True)
    again = fs.sample(slab(1), n=30, resume=tmp_path)
    assert torch.equal(again.codes, s.codes) and len(shard_files(tmp_path / "checkpoint" / "shards")) >= 1


HOLD = """
import sys, time, torch, feassample as fs
torch.set_num_threads(1)
def slow(phase, state, info):
    open(sys.argv[2], "w").close()
    time.sleep(0.05)
fs.sample(fs.LogisticHalfspace.random(16, 0.6, 0.8), n=4000, k=5, run_dir=sys.argv[1], callbacks=[slow])
"""


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    run, started = tmp_path / "run", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run), str(started)], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while not started.exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(RunDirectoryBusy, match=f"in use by PID {proc.pid}"):
            fs.sample(slab(), n=40, k=5, run_dir=run, overwrite=True)
        with pytest.raises(RunDirectoryBusy, match=f"in use by PID {proc.pid}"):
            fs.sample(slab(), n=40, resume=run)
    finally:
        proc.kill()
        proc.wait()
    resumed = fs.sample(slab(), n=100, resume=run)  # the lock died with its holder
    assert resumed.status == "success"


def test_stray_linked_temporary_and_foreign_files_are_never_loaded(tmp_path):
    p = slab()
    full = fs.sample(p, n=120, k=5, seed=1)

    def stop(phase, state, info):
        if phase == "cover" and state.rounds == 30:
            raise KeyboardInterrupt

    fs.sample(p, n=120, k=5, seed=1, run_dir=tmp_path, callbacks=[stop])
    shards = tmp_path / "checkpoint" / "shards"
    first = shard_files(shards)[0]
    junk = {"codes": torch.full((7, 16), 0.5), "values": torch.zeros(7, 1)}
    torch.save(junk, shards / "000001_copy.pt")                  # a stray copy
    (shards / "999999.pt").symlink_to(first)                       # a linked shard
    (shards / ".000123.pt.tmpx").write_bytes(b"half a write")      # a killed write's temporary
    resumed = fs.sample(p, n=120, resume=tmp_path)
    assert torch.equal(resumed.codes, full.codes)
    assert not (shards / ".000123.pt.tmpx").exists()               # cleaned on open
    (shards / "000000.pt").write_bytes(b"")                        # a truncated shard: named
    with pytest.raises(ValueError, match="000000.pt is not a readable feassample checkpoint file"):
        load_checkpoint(tmp_path)


def test_rows_written_after_the_last_state_are_trimmed_on_resume(tmp_path):
    """A kill between a shard's write and its state's write leaves rows the state does not
    count: the resume rewrites that shard (new file, fsync, rename) and stays bit-identical."""
    p = slab()
    full = fs.sample(p, method="cover", n=150, k=5, seed=2)

    def stop(phase, state, info):
        if phase == "cover" and state.rounds == 40:
            raise KeyboardInterrupt

    fs.sample(p, method="cover", n=150, k=5, seed=2, run_dir=tmp_path, callbacks=[stop])
    shards = tmp_path / "checkpoint" / "shards"
    saved, _ = load_checkpoint(tmp_path)
    count = saved.rows["codes"].shape[0]
    last = [f for f in shard_files(shards) if torch.load(f, weights_only=True)["codes"].shape[0] >= 3][-1]
    extra = {k: v[:3].clone() for k, v in torch.load(last, weights_only=True).items()}  # same columns
    # the orphan shard, written as the run writes (entered in its manifest first)
    storage._save(shards / f"{int(shard_files(shards)[-1].name[:6]) + 1:06d}.pt", extra)
    resumed = fs.sample(p, n=150, resume=tmp_path)
    assert torch.equal(resumed.codes, full.codes)
    on_disk = sum(torch.load(f, weights_only=True)["codes"].shape[0] for f in shard_files(shards))
    assert on_disk == 150 and count < 150


SLOW_WRITES = """
import sys, time, torch, feassample as fs
import feassample.rundir.storage as io
torch.set_num_threads(1)
real = io._save
def slow_save(path, obj):
    if path.name == "state.pt":
        open(sys.argv[2], "w").close()      # the parent signals us now: inside a write
        time.sleep(0.3)
    real(path, obj)
io._save = slow_save
s = fs.sample(fs.LogisticHalfspace.random(16, 0.6, 0.8), n=3000, k=5, seed=0, method="cover", run_dir=sys.argv[1])
print("STATUS", s.status, len(s))
"""


# SIGTERM: 24 s on 2 busy cores, marked slow; the deferral inside a write is the same for both
# signals (SIGINT here), and SIGTERM between rounds stays in the default suite (test_extending.py).
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_signal_inside_a_write_saves_after_it_and_resumes_bit_identically(tmp_path, sig):
    run, inside = tmp_path / "run", tmp_path / "inside"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITES, str(run), str(inside)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (inside.exists() and len(shard_files(run / "checkpoint" / "shards")) > 2):
        time.sleep(0.02)
    inside.unlink()
    while not inside.exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)                      # lands during the 0.3 s write of state.pt
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "STATUS interrupted" in out and "Traceback" not in err
    p = fs.LogisticHalfspace.random(16, 0.6, 0.8)
    saved, _ = load_checkpoint(run)
    n = max(200, saved.rows["codes"].shape[0] + 50)  # the resumed run makes rows of its own
    resumed = fs.sample(p, n=n, resume=run)
    assert torch.equal(resumed.codes, fs.sample(p, method="cover", n=n, k=5, seed=0).codes)


@pytest.mark.parametrize("settings", [{"lr": 1e6}, {"max_outer": 1, "inner_steps": 1}])
def test_the_status_agrees_with_the_certificate(settings):
    p = fs.LogisticHalfspace.random(64, 0.7, 0.701)
    s = fs.sample(p, n=40, k=10, seed=0, **settings)
    certified = int(s.feasible.sum())
    expected = "success" if certified >= 40 else ("partial" if certified else "infeasible")
    assert s.status == expected, (s.status, certified, s.stats["message"])


def test_the_app_refuses_to_resume_with_other_weights_or_settings(tmp_path):
    from hydra import compose, initialize_config_dir

    from feassample.cli import app

    def cfg(*extra):
        with initialize_config_dir(config_dir=app.config_dir(), version_base="1.3"):
            return compose(config_name="config", overrides=["sampler=cover", "problem.d=16", "sampler.n=40", "sampler.k=5",
                                                            "progress=false", "coverage=false", "plot=false",
                                                            *extra])
    first = tmp_path / "first"
    app.run(cfg(), first, ROOT)
    with pytest.raises(ValueError, match="another problem: its .*w64"):
        app.run(cfg("problem.w_seed=1", f"resume={first}"), tmp_path / "b", ROOT)
    with pytest.raises(ValueError, match="other settings .*budget"):
        app.run(cfg("sampler.options.budget=20", f"resume={first}"), tmp_path / "c", ROOT)
    assert app.run(cfg("sampler.n=60", f"resume={first}"), tmp_path / "d", ROOT)["status"] == "success"


def test_the_papers_walk_keeps_a_point_once():
    """An optimizer's walker pinned against a box corner returns the same point every round; the
    walk keeps it once (it used to return 51 copies of one point out of 60 here)."""
    corner = fs.from_functions(lambda x: (x[:, 0] + x[:, 1]).unsqueeze(1), lo=[1.8], hi=[2.0],
                               code_shape=(2,), box=(0.0, 1.0))
    s = fs.sample(corner, n=60, k=5, seed=0, method="walk", walk_lr=5.0, optimizer="gd", max_idle=30,
                  band_step=None)  # the plain walk: band_step's fold moves it off the corner
    _, counts = torch.unique(s.codes, dim=0, return_counts=True)
    assert int(counts.max()) <= 5          # at most one row per walker's seed, never a run of repeats
    assert s.status == "partial" and "stalled" in s.stats["message"]   # and the run says why it is short
    s = fs.sample(corner, n=60, k=5, seed=0, method="walk", walk_lr=5.0, optimizer="gd", max_idle=30)
    _, counts = torch.unique(s.codes, dim=0, return_counts=True)
    assert s.status == "success" and int(counts.max()) <= 5   # with the default band_step: it moves on


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root and mount rights needed; skipped with the reason otherwise)."""
    where = tmp_path / "tiny"
    where.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({got.stderr.strip() or 'mount failed'})")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_one_line_and_the_data_written_stays_valid(tiny_disk):
    p = fs.LogisticHalfspace.random(64, 0.6, 0.8)
    run = tiny_disk / "run"
    with pytest.raises(fs.core.result.DiskFull, match=r"disk full: writing \S+ needs [\d,]+ bytes in .*tiny"):
        fs.sample(p, method="cover", n=20_000, k=10, run_dir=run)
    saved, _ = load_checkpoint(run)                    # what reached the disk is a valid checkpoint
    kept = saved.rows["codes"]
    assert kept.shape[0] > 0 and bool(p.membership(kept.double()).all())
    assert not [f for f in (run / "checkpoint" / "shards").iterdir() if f.name.startswith(".")]
