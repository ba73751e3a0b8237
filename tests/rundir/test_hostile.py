"""A run directory cannot be turned against its user: no link inside it is followed, no file it
did not write is deleted, empty names are refused; merge runs no code named by a data file and
refuses tampered, truncated, copied and out-of-domain shards naming them; a signal during the
final save leaves the samples complete or absent, and a run killed before its first state goes on.

Exceptions are matched as ``ValueError`` with their message (not by our own class), so each test
also runs against code that has none of this."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

import feassample as fs
from feassample.cli import merge as merge_cli
from feassample.core.result import SampleSet
from feassample.rundir import storage
from feassample.rundir.merge import merge_shards


def slab():
    return fs.LogisticHalfspace.random(16, 0.6, 0.8)


def _sample(run_dir, **kw):
    settings = dict(n=30, k=5, seed=0)
    settings.update(kw)
    return fs.sample(slab(), run_dir=run_dir, **settings)


# --- links, foreign files, names ----------------------------------------------------------------

def test_a_linked_lock_is_refused_and_its_target_is_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's data")
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "lock").symlink_to(victim)
    with pytest.raises(ValueError, match=r"checkpoint/lock is a symbolic link"):
        _sample(run)
    assert victim.read_text() == "the user's data"


def test_a_hard_linked_lock_is_refused_and_its_target_is_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's data")
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    os.link(victim, run / "checkpoint" / "lock")
    with pytest.raises(ValueError, match=r"checkpoint/lock is not a lock file of its own"):
        _sample(run)
    assert victim.read_text() == "the user's data"


def test_a_linked_shards_folder_is_refused_and_nothing_is_written_through_it(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "shards").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=r"checkpoint/shards is a symbolic link"):
        _sample(run)
    assert list(elsewhere.iterdir()) == []


def test_a_samples_link_made_during_the_run_is_refused_at_the_final_save(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"

    def plant(phase, state, info):
        if not (run / "samples").is_symlink():
            (run / "samples").symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(ValueError, match=r"samples is a symbolic link"):
        _sample(run, callbacks=[plant])
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(ValueError, match=r"samples is a symbolic link"):  # overwrite: not through it
        _sample(run, overwrite=True)
    assert list(elsewhere.iterdir()) == [] and elsewhere.is_dir()


def test_files_the_run_did_not_write_survive_resume_and_overwrite(tmp_path):
    run = tmp_path / "run"

    def stop(phase, state, info):
        if phase == "cover" and state.rounds == 2:
            raise KeyboardInterrupt

    _sample(run, method="cover", n=60, callbacks=[stop])
    mine = [run / "checkpoint" / ".notes", run / "checkpoint" / "shards" / ".keep",
            run / "checkpoint" / "shards" / "README.txt"]
    for f in mine:
        f.write_text("mine")
    assert len(fs.sample(slab(), n=60, resume=run)) == 60
    assert all(f.read_text() == "mine" for f in mine)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    manifest = run / "checkpoint" / "manifest.jsonl"
    if manifest.exists():                              # a manifest line naming a file elsewhere
        with manifest.open("a") as fh:
            fh.write(json.dumps({"path": "../victim.txt", "sha256": "0" * 64}) + "\n")
            fh.write(json.dumps({"path": "checkpoint/../../victim.txt", "sha256": "0" * 64}) + "\n")
    _sample(run, overwrite=True)                       # a new run in the same folder
    assert all(f.read_text() == "mine" for f in mine + [victim])


def test_an_empty_or_file_run_dir_is_refused_before_any_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"run_dir='' is empty"):
        _sample("")
    assert list(tmp_path.iterdir()) == []              # nothing written into the current directory
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"run_dir='.*a_file' exists and is not a folder"):
        _sample(tmp_path / "a_file")
    with pytest.raises(ValueError, match=r"resume='' is empty"):
        fs.sample(slab(), n=30, resume="")


def test_a_foreign_shard_in_the_checkpoint_is_refused_naming_it(tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"

    def stop(phase, state, info):
        if phase == "cover" and state.rounds == 25:
            raise KeyboardInterrupt

    for d, seed in ((run, 0), (other, 1)):
        _sample(d, method="cover", n=60, seed=seed, callbacks=[stop])
    shard = storage.shard_files(run / "checkpoint" / "shards")[-1]
    ours = shard.read_bytes()
    shutil.copyfile(storage.shard_files(other / "checkpoint" / "shards")[-1], shard)  # same columns
    assert shard.read_bytes() != ours
    with pytest.raises(ValueError, match=f"{shard.name} is not a readable feassample checkpoint file"):
        fs.sample(slab(), n=60, resume=run)


# --- merge: tampered, truncated, copied, out of the domain ----------------------------------

@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three shards of one job (30 rows), made once; each test works on a copy."""
    root = tmp_path_factory.mktemp("shards")
    for i in range(3):
        fs.sample(slab(), n=30, k=5, seed=11, shard=i, shards=3, run_dir=root / f"s{i}")
    return root


@pytest.fixture
def job(shards, tmp_path):
    shutil.copytree(shards, tmp_path / "job")
    return tmp_path / "job"


def _rewrite(folder: Path, edit, fix_digest: bool) -> None:
    """Edit a saved shard's tensors in place; ``fix_digest``: as an attacker who also rewrites
    the digest in sampleset.json."""
    tensors = torch.load(folder / "samples.pt", weights_only=True)
    edit(tensors)
    torch.save(tensors, folder / "samples.pt")
    if fix_digest:
        meta = json.loads((folder / "sampleset.json").read_text())
        meta.setdefault("digests", {})["samples.pt"] = hashlib.sha256(
            (folder / "samples.pt").read_bytes()).hexdigest()
        (folder / "sampleset.json").write_text(json.dumps(meta))


def test_the_merge_of_good_shards_still_works(job):
    merged = merge_shards([job], problem=slab())
    assert len(merged) == 30 and merged.stats["recertified"] and merged.stats["domain_checked"]


def test_a_shard_copied_into_another_is_refused(job):
    shutil.copyfile(job / "s0" / "samples" / "samples.pt", job / "s1" / "samples" / "samples.pt")
    with pytest.raises(ValueError, match=r"s1/samples/samples.pt does not match the SHA-256"):
        merge_shards([job], problem=slab())
    meta0 = json.loads((job / "s0" / "samples" / "sampleset.json").read_text())
    meta1 = json.loads((job / "s1" / "samples" / "sampleset.json").read_text())
    meta1["digests"] = meta0["digests"]                    # the digest copied along
    (job / "s1" / "samples" / "sampleset.json").write_text(json.dumps(meta1))
    with pytest.raises(ValueError, match=r"appear in more than one shard .*s0 and .*s1"):
        merge_shards([job], problem=slab())


def test_a_flipped_value_in_x_is_refused_with_or_without_its_digest(job):
    folder = job / "s2" / "samples"

    def flip(t):
        t["x"] = t["x"].clone()                            # x shares the codes' storage here
        t["x"][3, 0] = 3.99e35

    _rewrite(folder, flip, fix_digest=False)
    with pytest.raises(ValueError, match=r"s2/samples/samples.pt does not match the SHA-256"):
        merge_shards([job], problem=slab())
    _rewrite(folder, lambda t: None, fix_digest=True)
    with pytest.raises(ValueError, match=r"1 merged row\(s\) \(in .*job/s2\) hold inputs x that are not the decoding"):
        merge_shards([job], problem=slab())


def test_a_flipped_mantissa_bit_in_codes_is_refused(job):
    def flip(t):
        t["codes"].view(torch.int32)[0, 0] ^= 1            # the last bit: still feasible

    _rewrite(job / "s1" / "samples", flip, fix_digest=False)
    with pytest.raises(ValueError, match=r"s1/samples/samples.pt does not match the SHA-256"):
        merge_shards([job], problem=slab())


def test_without_recheck_codes_outside_the_box_are_still_refused(job):
    def outside(t):
        t["codes"][0] = 5.0                                # the box is [0, 1]
        t["x"][0] = 5.0

    _rewrite(job / "s0" / "samples", outside, fix_digest=False)
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        merge_shards([job], problem=slab(), recheck=False)
    _rewrite(job / "s0" / "samples", lambda t: None, fix_digest=True)
    with pytest.raises(ValueError, match=r"1 merged row\(s\) \(in .*job/s0\) have codes outside the domain"):
        merge_shards([job], problem=slab(), recheck=False)


def test_a_truncated_shard_is_one_line_naming_it(job, tmp_path, capsys):
    path = job / "s1" / "samples" / "samples.pt"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SystemExit) as stop:
        merge_cli.main([str(job), "--out", str(tmp_path / "merged"), "--no-recheck"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "merged").exists()


EVIL = """
from pathlib import Path
Path({marker!r}).write_text("ran")
import feassample as fs
def make():
    Path({marker!r}).write_text("ran")
    return fs.LogisticHalfspace.random(16, 0.6, 0.8)
"""


def test_merge_runs_no_code_named_in_a_shards_config(job, tmp_path, capsys):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.py"
    evil.write_text(EVIL.format(marker=str(marker)))
    targets = [{"_target_": "feassample.cli.build.python_problem", "factory": f"{evil}:make", "kwargs": {}},
               {"_target_": "feassample.models.files.load_object", "spec": f"{evil}:make"},
               {"_target_": "torch.load", "f": str(evil), "weights_only": False}]
    for problem in targets:
        for i in range(3):
            meta_path = job / f"s{i}" / "samples" / "sampleset.json"
            meta = json.loads(meta_path.read_text())
            meta["config"]["app"] = {"problem": problem}
            meta_path.write_text(json.dumps(meta))
        with pytest.raises(SystemExit) as stop:
            merge_cli.main([str(job), "--out", str(tmp_path / "merged")])
        assert stop.value.code == 2, problem
        assert not marker.exists(), f"{problem['_target_']} ran the shard's code"
    # your own factory, named on the command line, certifies them again; the shard's is never run
    mine = tmp_path / "mine.py"
    mine.write_text("import feassample as fs\ndef make():\n    return fs.LogisticHalfspace.random(16, 0.6, 0.8)\n")
    for i in range(3):
        meta_path = job / f"s{i}" / "samples" / "sampleset.json"
        meta = json.loads(meta_path.read_text())
        meta["config"]["app"] = {"problem": targets[0]}
        meta_path.write_text(json.dumps(meta))
    with pytest.raises(SystemExit) as stop:
        merge_cli.main([str(job), "--out", str(tmp_path / "merged")])
    assert "--problem-factory path/to/file.py:function" in capsys.readouterr().err
    assert merge_cli.main([str(job), "--out", str(tmp_path / "unchecked"), "--no-recheck"]) == 0
    assert not marker.exists()                             # --no-recheck: not rebuilt, not run
    assert merge_cli.main([str(job), "--out", str(tmp_path / "merged"), "--problem-factory", f"{mine}:make"]) == 0
    assert "certified again" in capsys.readouterr().out and not marker.exists()
    assert len(SampleSet.load(tmp_path / "merged")) == 30


# --- signals in the final save, a run killed before its first state ------------------------

def test_an_interrupt_inside_the_final_save_leaves_the_samples_complete_or_absent(tmp_path, monkeypatch):
    run = tmp_path / "run"
    full = fs.sample(slab(), n=30, k=5, seed=0)
    real = SampleSet.save

    def half_then_interrupted(self, path):
        real(self, path)
        (Path(path) / "sampleset.json").unlink()         # the second file never made it
        raise KeyboardInterrupt

    monkeypatch.setattr(SampleSet, "save", half_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        _sample(run)
    monkeypatch.setattr(SampleSet, "save", real)
    samples = run / "samples"
    assert not samples.exists() or len(SampleSet.load(samples)) == 30   # never half
    resumed = fs.sample(slab(), n=30, resume=run)
    assert torch.equal(resumed.codes, full.codes) and len(SampleSet.load(samples)) == 30


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_a_signal_during_the_final_save_waits_for_it(tmp_path, monkeypatch, sig):
    run = tmp_path / "run"
    real = SampleSet.save

    def signalled(self, path):
        os.kill(os.getpid(), sig)                          # delivered while the samples are written
        return real(self, path)

    monkeypatch.setattr(SampleSet, "save", signalled)
    try:
        s = _sample(run)
    except KeyboardInterrupt:
        pytest.fail("the signal broke the final save")
    assert s.status == "success" and len(SampleSet.load(run / "samples")) == 30


class Killed(BaseException):
    """A kill: nothing after it runs."""


def test_a_run_killed_before_its_first_state_resumes_or_restarts(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = storage.RunWriter.save_state

    def killed(self, *args):
        raise Killed

    monkeypatch.setattr(storage.RunWriter, "save_state", killed)
    with pytest.raises(Killed):
        _sample(run)
    monkeypatch.setattr(storage.RunWriter, "save_state", real)
    assert (run / "checkpoint" / "run.json").is_file() and not (run / "checkpoint" / "state.pt").exists()
    full = fs.sample(slab(), n=30, k=5, seed=0)
    shutil.copytree(run, tmp_path / "again")
    assert torch.equal(fs.sample(slab(), n=30, resume=run).codes, full.codes)
    assert torch.equal(_sample(tmp_path / "again").codes, full.codes)   # no overwrite=True needed


SIGTERM_IN_SAVE = """
import os, signal, sys, torch, feassample as fs
from feassample.core.result import SampleSet
torch.set_num_threads(1)
real = SampleSet.save
def signalled(self, path):
    os.kill(os.getpid(), signal.SIGTERM)   # what Slurm sends, while the samples are written
    return real(self, path)
SampleSet.save = signalled
s = fs.sample(fs.LogisticHalfspace.random(16, 0.6, 0.8), n=30, k=5, seed=0, run_dir=sys.argv[1])
print("STATUS", s.status, len(SampleSet.load(os.path.join(sys.argv[1], "samples"))))
"""


def test_sigterm_during_the_final_save_waits_for_it(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", SIGTERM_IN_SAVE, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "STATUS success 30" in out.stdout, out.stderr[-2000:]
