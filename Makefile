# Two entry points (see README Quickstart): `make demo` and `make test`.
# Both create .venv with only the system Python, install the CPU build of torch
# first when none is present (a bare `torch` requirement could pull a CUDA build),
# then the project with its test and vision extras (torchvision 0.28.0 and timm: about 50 s and
# 166 MB on top of torch, measured in a fresh venv; feassample.models makes torchvision's model
# definitions import on the CPU torch, docs/models.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow test-wheel test-slurm bench bench-compare bench-throughput figures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,vision,arviz]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/feassample

# FEASSAMPLE_REQUIRE_VISION=1 / _ARVIZ=1: the torchvision/timm and ArviZ tests fail instead of
# skipping (setup installs them); the report's browser test is required where a Chromium is found
# (scripts/ensure-chromium.sh installs one as root with apt-get).
# JOBS pytest workers (pytest-xdist; each test runs one torch thread); --dist loadfile keeps a
# file's tests on one worker, in order. JOBS=0 runs them in this process.
JOBS ?= 2
test: $(STAMP)
	FEASSAMPLE_REQUIRE_VISION=1 FEASSAMPLE_REQUIRE_ARVIZ=1 \
	FEASSAMPLE_REQUIRE_BROWSER=$$(bash scripts/ensure-chromium.sh) \
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile

test-slow: $(STAMP)
	FEASSAMPLE_REQUIRE_VISION=1 $(BIN)/python -m pytest -q -m slow

# Build the wheel and the editable wheel (no setuptools warning allowed), install the wheel in a
# fresh venv, load the zoo and run the demo outside the checkout (tests/test_packaging.py, also
# part of `make test`; ~30 s).
test-wheel: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_packaging.py

# A real one-node Slurm cluster on this machine (root; installs slurm-wlm and munge with apt when
# missing) and the sweeps of docs/reliability.md through it; about 3-4 minutes on 2 cores.
# Not part of `make test`. `make test-slurm SLURM_KEEP=DIR` keeps the sweeps and logs in DIR.
test-slurm: $(STAMP)
	bash scripts/slurm-local.sh $(if $(SLURM_KEEP),--keep $(SLURM_KEEP))

bench: $(STAMP)
	$(BIN)/python -m benchmarks.slab --threads 1

bench-compare: $(STAMP)
	$(BIN)/python -m benchmarks.compare

bench-throughput: $(STAMP)
	$(BIN)/python -m benchmarks.throughput

figures: $(STAMP)
	for f in examples/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
