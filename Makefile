# The README's commands are the truth: `make test` and `make demo`. Every target builds what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: test lint unit integration tools tools-cold venv cluster demo demo-up demo-down bench clean

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

lint: venv
	ruff check .
	ruff format --check .
	mypy
	lint-imports

unit: venv tools
	pytest tests/unit tests/stacks

test: venv tools lint
	pytest

integration: venv tools
	pytest tests/integration

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
