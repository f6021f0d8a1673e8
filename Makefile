# Set-up is two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Both create the project's own virtual environment in .venv and install what they need into it, at the exact
# versions of constraints.txt: the versions the suite was last proven with. pyproject.toml keeps ranges.
# `make test-latest` runs the suite against the newest releases (its own .venv-latest), `make test-oldest` against
# the oldest releases the docs claim; update constraints.txt (`make pins`) only after `make test-latest` passes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fope-installed
CORE_STAMP := $(VENV)/.fope-core-installed
CONSTRAINTS ?= constraints.txt
# CPU machines get the CPU build explicitly (a bare `torch` would pull a multi-GB CUDA build);
# machines with an NVIDIA driver get the newest torch the package's range allows. Override with TORCH_SPEC=...
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.5' || echo 'torch==2.13.0')
# The oldest releases docs/transformers.md and README claim to support.
OLDEST ?= transformers==5.0.0

.PHONY: venv test lint demo demo-quick bench clean test-latest test-oldest pins

venv: $(STAMP)

# The demo needs only the core install (`pip install fope`); the suite adds the dev extra (every optional engine).
$(CORE_STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -c $(CONSTRAINTS) -e .
	touch $@

$(STAMP): $(CORE_STAMP)
	$(PY) -m pip install -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts

demo: $(CORE_STAMP)
	$(PY) -m fope demo

demo-quick: $(CORE_STAMP)
	$(PY) -m fope demo --quick

bench: $(STAMP)
	$(PY) benchmarks/bench_positions.py

# The suite against the newest release of every dependency (no constraints), in its own environment.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install "$(TORCH_SPEC)"
	.venv-latest/bin/python -m pip install --upgrade -e ".[dev]"
	.venv-latest/bin/python -m pip list --format=freeze | grep -i -E '^(transformers|tokenizers|lm.eval|safetensors|numpy|datasets|accelerate|ray|torchtitan|triton)='
	.venv-latest/bin/python -m pytest

# The suite against the oldest releases the docs claim (OLDEST), in its own environment.
test-oldest:
	rm -rf .venv-oldest
	$(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/python -m pip install "$(TORCH_SPEC)"
	.venv-oldest/bin/python -m pip install -e ".[dev]" $(OLDEST)
	.venv-oldest/bin/python -m pytest

# Rewrite constraints.txt from the newest releases: run after `make test-latest` passed, commit the result.
pins:
	test -x .venv-latest/bin/python || { echo "run make test-latest first"; exit 2; }
	{ echo "# Exact versions the test suite was last proven with (make test-latest, then make pins)."; \
	  echo "# torch is installed by the Makefile (CPU build 2.13.0 on CPU machines) and is not pinned here."; \
	  .venv-latest/bin/python -m pip list --format=freeze --exclude-editable | grep -v -i -E '^(torch|fope|pip|setuptools|wheel)=='; \
	} > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .venv-latest .venv-oldest build src/*.egg-info .pytest_cache .ruff_cache
