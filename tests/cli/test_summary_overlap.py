"""``feassample-summary --overlap``: the overlap matrix of a sweep against the slabs' exact
``P(B | A)``."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import feassample as fs

ROOT = Path(__file__).resolve().parents[2]


def test_a_sweeps_overlap_matrix_matches_the_nested_slabs_exact_ratio(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweep = tmp_path / "sweep"
    run = subprocess.run([sys.executable, "-m", "feassample", "-m", "problem.z1=0.6,0.7", "problem.z2=1.0",
                          "problem.d=16", "sampler.n=400", "progress=false", "plot=false", "coverage=false",
                          f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "feassample.cli.summary", "--overlap", str(sweep)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "P(B | A)" in out.stdout and (sweep / "overlap.md").is_file()
    matrix = json.loads((sweep / "overlap.json").read_text())
    assert matrix["runs"] == ["0", "1"]
    lo = fs.LogisticHalfspace.random(16, 0.6, 1.0).law.log_volume()
    hi = fs.LogisticHalfspace.random(16, 0.7, 1.0).law.log_volume()
    # B = the z1=0.7 slab lies inside A = the z1=0.6 one: P(B | A) = P(B) / P(A); P(A | B) = 1
    lp, se = matrix["log_prob"][0][1], matrix["log_prob_se"][0][1]
    assert abs(lp - (hi - lo)) <= 3 * se, (lp, hi - lo, se)
    assert matrix["log_prob"][1][0] == 0.0 and matrix["inside"][1][0] == 400
    assert matrix["log_prob"][0][0] == 0.0
    page = (sweep / "report.html").read_text()
    assert "Overlaps P(B | A)" in page and 'alt="overlap matrix"' in page
    assert (sweep / "overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_overlap_matrix_runs_no_code_named_by_a_sampleset(tmp_path):
    """A run's ``sampleset.json`` edited to name a factory file: the summary rebuilds problems by
    feassample-merge's rule (built-in kinds only), leaves that run out with the reason, runs
    nothing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweep = tmp_path / "sweep"
    run = subprocess.run([sys.executable, "-m", "feassample", "-m", "problem.z1=0.6,0.7", "problem.d=8",
                          "sampler.n=40", "progress=false", "plot=false", "coverage=false",
                          f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')\ndef make():\n    raise SystemExit\n")
    meta = sweep / "1" / "samples" / "sampleset.json"
    saved = json.loads(meta.read_text())
    saved["config"]["app"]["problem"] = {"_target_": "feassample.cli.build.python_problem",
                                         "factory": f"{evil}:make"}
    meta.write_text(json.dumps(saved))
    out = subprocess.run([sys.executable, "-m", "feassample.cli.summary", "--overlap", str(sweep)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert not (tmp_path / "PWNED").exists()
    if out.returncode == 0:  # the edited run is left out with its reason, the other one stays
        matrix = json.loads((sweep / "overlap.json").read_text())
        assert matrix["runs"] == ["0"] and "1" in matrix["left_out"], matrix
    else:  # or the edited file is refused outright (its digest no longer matches): one line
        assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr, out.stderr
