# The README's commands are the truth: `make test` and `make demo`. Every target builds what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: test lint unit integration tools tools-cold image venv cluster demo demo-up demo-down bench clean

$(VENV_STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip==25.3
	$(VENV)/bin/pip install -q --no-deps -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV_STAMP)

tools:
	@tools/ensure.sh

# Builds the whole toolchain with empty, temporary Go and tools caches and prints each tool's wall time.
tools-cold:
	@tools/cold.sh

# The reconciler image, with podman: its Debian base, the pinned binaries of `make tools` and the locked
# packages; each image is tagged by a hash of its inputs and built only when missing (tools/image/build.sh).
image: venv tools
	@tools/image/build.sh >/dev/null

lint: venv
	ruff check .
	ruff format --check .
	mypy
	lint-imports

unit: venv tools
	pytest tests/unit tests/stacks

# Two test processes (pytest-xdist), each with its own local cluster: the integration tests mostly wait.
PYTEST_WORKERS ?= 2

test: venv tools lint image
	pytest -n $(PYTEST_WORKERS) --dist loadgroup

integration: venv tools image
	pytest -n $(PYTEST_WORKERS) --dist loadgroup tests/integration

cluster: venv tools
	canaryapp-dev cluster

demo: venv tools
	canaryapp-dev demo

demo-up: venv tools
	canaryapp-dev demo-up

demo-down: venv
	canaryapp-dev demo-down

bench: venv tools
	$(VENV)/bin/python bench/step_latency.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
