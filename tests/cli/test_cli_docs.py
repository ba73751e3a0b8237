"""docs/cli.md and the app's --help are generated from conf/ and the schemas: they list exactly
the options the app accepts, and never the internal schemas."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from feassample.cli import app
from feassample.cli import docs as cli_docs

ROOT = Path(__file__).resolve().parents[2]
CONF = Path(app.config_dir())


def test_docs_cli_md_and_the_help_template_match_what_the_generator_writes():
    for path, text in cli_docs.targets().items():
        assert path.read_text() == text, f"{path} is stale: run python -m feassample.cli.docs"


def test_the_generated_page_lists_every_option_of_every_group_and_every_sampler_option():
    page = (ROOT / "docs" / "cli.md").read_text()
    for group in cli_docs.GROUPS:
        for yaml_file in (CONF / group).glob("*.yaml"):
            assert f"| `{group}` | `{yaml_file.stem}`" in page
    for method, cls in cli_docs.builtin_samplers().items():
        assert f"### `{method}` (`{cls.Config.__name__}`)" in page
        for f in dataclasses.fields(cls.Config):
            assert f"`sampler.options.{f.name}`" in page
    assert "_schema" not in page.replace("Schema`", "")  # class names only, never an option
    assert "| `sampler` | `smc` (default)" in page


def test_help_is_written_for_the_app_and_lists_no_internal_schema():
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    out = subprocess.run([sys.executable, "-m", "feassample", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "powered by Hydra" not in out.stdout and "_schema" not in out.stdout
    assert out.stdout.count("feassample ") >= 3  # the three examples
    for group in cli_docs.GROUPS:
        line = next(l for l in out.stdout.splitlines() if l.strip().startswith(group + " "))
        listed = {name.rstrip("*") for name in line.split(": ", 1)[1].split(", ")}
        assert listed == {p.stem for p in (CONF / group).glob("*.yaml")}
