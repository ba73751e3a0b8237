"""The committed example reports of the digits zoo's units (docs/examples/): three units through
the app (one run each, as a user would type them), then ``feassample-summary --overlap`` over
them: each run's ``report.html`` and the sweep's, with the overlap matrix P(B | A) (its
heatmap also as ``docs/img/analysis_overlap.png``).

    .venv/bin/python examples/digits_report.py   # writes docs/examples/digits_*.html
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "examples"
#: (run folder, overrides): two fc1 units whose inverse sets hold two digits each, and the logit of 3
UNITS = [("fc1_12", ["problem=neuron", "problem.unit=classifier.fc1:12", "problem.band=[11.5,40]"]),
         ("fc1_58", ["problem=neuron", "problem.unit=classifier.fc1:58", "problem.band=[18.9,40]"]),
         ("fc2_3", ["problem=neuron", "problem.unit=classifier.fc2:3", "problem.band=[8,12]"])]


def main(out: Path = OUT, n: int = 300) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="feassample-digits-report-") as tmp:
        sweep = Path(tmp) / "digits_units"
        for name, overrides in UNITS:
            cmd = [sys.executable, "-m", "feassample", *overrides, f"sampler.n={n}", "progress=false",
                   f"hydra.run.dir={sweep / name}"]
            subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        subprocess.run([sys.executable, "-m", "feassample.cli.summary", "--overlap", str(sweep)],
                       check=True, cwd=ROOT, env=env)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sweep / "report.html", out / "digits_units_report.html")
        shutil.copyfile(sweep / "fc1_12" / "report.html", out / "digits_fc1_12_report.html")
        shutil.copyfile(sweep / "overlap.png", ROOT / "docs" / "img" / "analysis_overlap.png")
        print((sweep / "overlap.md").read_text())
        for f in ("digits_units_report.html", "digits_fc1_12_report.html"):
            print(f"wrote {out / f} ({(out / f).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
