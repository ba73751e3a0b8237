"""The resume checks and the shard plan as functions: the law-changing settings are derived from
``SamplerConfig``'s fields, the saved settings rebuild from their record, and what differs is named."""
from __future__ import annotations

import json
from dataclasses import field, fields, make_dataclass
from pathlib import Path

import pytest

import feassample as fs
from feassample.core.sampling import SamplerConfig
from feassample.rundir.resume import (LAW, check_same_problem, check_same_settings, law_fields,
                                      resumed_config, saved_config)
from feassample.rundir.shards import Shard, asked_shard, resumed_shard
from feassample.rundir.storage import checkpoint_record

RUN = Path("run")


def _saved(problem, cfg: SamplerConfig) -> dict:
    """``run.json`` as a resume reads it back (through JSON)."""
    return json.loads(json.dumps(checkpoint_record(problem, cfg), default=str))


def test_every_setting_changes_the_law_but_n_device_and_initial_codes():
    assert set(LAW) == {f.name for f in fields(SamplerConfig)} - {"n", "device", "initial_codes"}
    assert set(LAW) == {"method", "k", "seed", "objective", "diversity_weight", "normalize",
                        "objective_options", "seeding", "options", "dtype"}


def test_a_field_added_without_metadata_changes_the_law():
    extended = make_dataclass("Extended", [("temperature", float, field(default=1.0)),
                                           ("label", str, field(default="", metadata={"law": False}))],
                              bases=(SamplerConfig,), frozen=True)
    assert "temperature" in law_fields(extended) and "label" not in law_fields(extended)
    assert law_fields(extended)[: len(LAW)] == LAW


def test_every_law_setting_is_recorded():
    # a law field missing from record() would be compared as None against None: never refused
    assert set(LAW) <= set(SamplerConfig().record())


@pytest.mark.parametrize("settings", [{"method": "cover", "budget": 20, "lr": 0.2},
                                      {"method": "smc", "dtype": "float64", "objective": "none"},
                                      {"method": "walk", "diversity_weight": 0.5, "max_outer": 3}])
def test_the_saved_settings_rebuild_from_their_record(settings):
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    cfg = SamplerConfig.build(n=40, k=5, seed=3, **settings)
    again = saved_config(_saved(p, cfg))
    assert again.record() == json.loads(json.dumps(cfg.record()))
    assert SamplerConfig.from_record(cfg.record(), n=90).n == 90


def test_a_law_setting_missing_from_an_old_record_is_refused():
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    cfg = SamplerConfig.build(n=40, k=5, method="cover")
    saved = _saved(p, cfg)
    check_same_settings(RUN, saved, SamplerConfig.build(cfg, n=80, device="cpu"))  # not the law: fine
    del saved["sampler"]["dtype"]
    with pytest.raises(ValueError, match=r"other settings \(dtype: saved None, now 'float32'\)"):
        check_same_settings(RUN, saved, cfg)


def test_a_resume_names_the_saved_method_before_applying_settings():
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    saved = _saved(p, SamplerConfig.build(n=40, k=5, method="cover"))
    with pytest.raises(ValueError, match="method 'cover', not 'walk'"):
        resumed_config(RUN, saved, 80, None, {"method": "walk"})
    with pytest.raises(ValueError, match=r"other settings \(seed: saved 0, now 4\)"):
        resumed_config(RUN, saved, 80, None, {"seed": 4})
    cfg = resumed_config(RUN, saved, 80, None, {"device": "cpu"})
    assert (cfg.n, cfg.k, cfg.method_name) == (80, 5, "cover")


def test_a_record_without_fingerprint_is_another_problem():
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    saved = _saved(p, SamplerConfig(n=40, k=5))
    check_same_problem(RUN, saved, p)
    del saved["fingerprint"]
    with pytest.raises(ValueError, match=r"another problem: its definition, w64 differ"):
        check_same_problem(RUN, saved, p)


def test_a_resume_builds_the_settings_once_in_the_facade(tmp_path, monkeypatch):
    p = fs.LogisticHalfspace.random(8, 0.6, 0.8)
    fs.sample(p, n=20, k=5, method="cover", run_dir=tmp_path)
    calls = []
    real = SamplerConfig.build.__func__
    monkeypatch.setattr(SamplerConfig, "build",
                        classmethod(lambda cls, *a, **kw: calls.append(1) or real(cls, *a, **kw)))
    assert len(fs.sample(p, n=30, resume=tmp_path)) == 30
    assert len(calls) <= 2  # the facade's and (until it takes a built config) the core sample's


def test_a_shard_records_its_plan_and_a_resume_keeps_it():
    plan = asked_shard(100, 7, 5, 1, 4)
    assert (plan.n, plan.n_total, plan.base_seed) == (25, 100, 7)
    assert plan.record() == {"shard": 1, "shards": 4, "n_total": 100, "base_seed": 7, "seed": plan.seed}
    assert Shard.from_record(plan.record()) == plan
    assert asked_shard(100, 7, 5, None, None) is None
    with pytest.raises(ValueError, match="give both shard= and shards="):
        asked_shard(100, 7, 5, 1, None)
    with pytest.raises(ValueError, match="gets n=25 samples, fewer than k=30 walkers"):
        asked_shard(100, 7, 30, 1, 4)
    saved = {"shard": plan.record()}
    assert resumed_shard(RUN, saved, None) == plan
    with pytest.raises(ValueError, match="was shard 1 of 4, not shard 2 of 4"):
        resumed_shard(RUN, saved, asked_shard(100, 7, 5, 2, 4))
    with pytest.raises(ValueError, match="was not a shard, not shard 1 of 4"):
        resumed_shard(RUN, {}, plan)
    assert resumed_shard(RUN, {}, None) is None
