"""Sharding one big job: m independent jobs (their own seeds, their own run directories) whose
union, checked and certified again by ``feassample-merge``, is one sample of n."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import feassample as fs
from feassample.rundir.shards import shard_plan
from feassample.rundir.merge import merge_shards

ROOT = Path(__file__).resolve().parents[2]


def slab():
    return fs.LogisticHalfspace.random(16, 0.6, 0.8)


def test_the_plan_splits_n_and_gives_each_shard_its_own_seed():
    plans = [shard_plan(1001, 7, i, 4) for i in range(4)]
    assert [n for n, _ in plans] == [251, 250, 250, 250] and sum(n for n, _ in plans) == 1001
    assert len({s for _, s in plans}) == 4 and 7 not in {s for _, s in plans}
    assert shard_plan(1001, 7, 2, 4) == plans[2]          # deterministic
    assert shard_plan(50, 7, 0, 1) == (50, 7)              # one shard is the unsharded run
    for args, msg in [((10, 0, 4, 4), "shard must be in 0..3"), ((10, 0, 0, 0), "shards must be >= 1"),
                      ((3, 0, 0, 4), "cannot be split"), ((10, 0, 1.5, 4), "shard must be an integer")]:
        with pytest.raises(ValueError, match=msg):
            shard_plan(*args)


def _run_shards(tmp_path, shards=3, n=90, **kw):
    p = slab()
    for i in range(shards):
        fs.sample(p, n=n, k=5, seed=11, shard=i, shards=shards, run_dir=tmp_path / f"s{i}", **kw)
    return p


def test_shards_merge_into_one_certified_sample_of_n(tmp_path):
    p = _run_shards(tmp_path)
    merged = merge_shards([tmp_path], problem=p)
    assert len(merged) == 90 and merged.stats["shards"] == 3 and merged.stats["recertified"]
    assert bool(p.membership(merged.x.double()).all())  # the exact membership test, not ours
    parts = [fs.SampleSet.load(tmp_path / f"s{i}" / "samples") for i in range(3)]
    assert torch.equal(merged.codes, torch.cat([s.codes for s in parts]))
    assert len({tuple(s.codes[0].tolist()) for s in parts}) == 3  # independent seeds, other samples
    alone = fs.sample(p, n=30, k=5, seed=parts[1].config["shard"]["seed"])
    assert torch.equal(alone.codes, parts[1].codes)  # a shard is an ordinary run with its seed
    # the shards' log P(set) estimates (the default smc) combine by inverse variance
    ses = [s.stats["log_prob_se"] for s in parts]
    assert merged.stats["shard_log_prob"] == [s.stats["log_prob"] for s in parts]
    assert merged.stats["log_prob_se"] == pytest.approx(1 / math.sqrt(sum(1 / se ** 2 for se in ses)))
    assert merged.stats["log_prob_se"] < min(ses)
    assert abs(merged.stats["log_prob"] - p.law.log_volume()) < 4 * merged.stats["log_prob_se"]


def test_the_merge_refuses_missing_foreign_and_uncertified_shards(tmp_path):
    p = _run_shards(tmp_path / "a")
    with pytest.raises(ValueError, match=r"shard\(s\) \[1\] of 3 are missing"):
        merge_shards([tmp_path / "a" / "s0", tmp_path / "a" / "s2"], problem=p)
    fs.sample(p, n=90, k=5, seed=12, shard=1, shards=3, run_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="another job: base_seed=12"):
        merge_shards([tmp_path / "a" / "s0", tmp_path / "b", tmp_path / "a" / "s2"], problem=p)
    shutil.copytree(tmp_path / "a" / "s1", tmp_path / "dup")
    with pytest.raises(ValueError, match="shard 1 appears twice"):
        merge_shards([tmp_path / "a", tmp_path / "dup"], problem=p)
    other = fs.LogisticHalfspace.random(16, 0.85, 0.95)  # a band the samples are not in
    with pytest.raises(ValueError, match="fail an independent certificate"):
        merge_shards([tmp_path / "a"], problem=other)
    s1 = fs.SampleSet.load(tmp_path / "a" / "s1" / "samples")
    s1.feasible[3] = False
    s1.save(tmp_path / "a" / "s1" / "samples")
    with pytest.raises(ValueError, match=r"shard 1\) holds 1 uncertified row"):
        merge_shards([tmp_path / "a"], problem=p)


def test_a_killed_shard_resumes_then_merges(tmp_path):
    p = slab()

    def stop(phase, state, info):
        if phase == "cover" and state.rounds == 20:
            raise KeyboardInterrupt

    for i in range(2):
        fs.sample(p, method="cover", n=80, k=5, seed=3, shard=i, shards=2, run_dir=tmp_path / f"s{i}",
                  callbacks=[stop] if i == 1 else [])
    with pytest.raises(ValueError, match="status 'interrupted': resume it"):
        merge_shards([tmp_path], problem=p)
    fs.sample(p, n=80, shard=1, shards=2, resume=tmp_path / "s1")
    merged = merge_shards([tmp_path], problem=p)
    assert len(merged) == 80 and merged.status == "success"


def test_a_sharded_sweep_from_the_command_line_merges_and_certifies(tmp_path):
    sweep = tmp_path / "sweep"
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    out = subprocess.run([sys.executable, "-m", "feassample", "-m", "shards=3", "shard=0,1,2",
                          "problem.d=16", "sampler.n=60", "sampler.k=5", "progress=false", "coverage=false",
                          "plot=false", f"hydra.sweep.dir={sweep}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    merged_dir = tmp_path / "merged"
    out = subprocess.run([sys.executable, "-m", "feassample.cli.merge", str(sweep), "--out", str(merged_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "60 samples merged from 3 shards, all certified (certified again)" in out.stdout
    merged = fs.SampleSet.load(merged_dir)
    assert len(merged) == 60 and bool(merged.feasible.all())
    bad = subprocess.run([sys.executable, "-m", "feassample", "shard=3", "shards=3", "progress=false",
                          f"hydra.run.dir={tmp_path / 'never'}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "shard must be in 0..2" in bad.stderr + bad.stdout
    assert not (tmp_path / "never").exists()
