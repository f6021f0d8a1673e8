# Set-up is two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Both create the project's own virtual environment in .venv and install what they need into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fope-installed
# CPU machines get the CPU build explicitly (a bare `torch` would pull a multi-GB CUDA build);
# machines with an NVIDIA driver get the newest torch the package's range allows. Override with TORCH_SPEC=...
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.5' || echo 'torch==2.13.0')

.PHONY: venv test lint demo demo-quick bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $@

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

demo: $(STAMP)
	$(PY) -m fope demo

demo-quick: $(STAMP)
	$(PY) -m fope demo --quick

bench: $(STAMP)
	$(PY) benchmarks/bench_positions.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
