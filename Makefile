# The README's commands are the truth: `make test` and `make demo`. Every target builds what it needs.
SHELL := /bin/bash
PYTHON ?= python3
# The router `make demo` tells the story with: istio (a VirtualService) or gateway-api (an HTTPRoute).
ROUTER ?= istio
VENV := .venv
VENV_STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: test lint unit envtest e2e integration tools tools-cold image venv cluster demo demo-up demo-down bench clean

# uv installs the locked packages: the same wheels as pip, from the index pip is configured with
# (tools/pip_settings.py hands it pip's settings), unpacked from its cache and byte-compiled on both cores (8 s
# where pip took 24 on a clean clone). Byte-compiled because the machine may set PYTHONDONTWRITEBYTECODE:
# without .pyc files every reconciler, step worker and test process would compile pulumi, kubernetes and the
# rest again on each start. --system-certs: the platform's certificate store, as pip uses it (uv's own roots
# refuse an index reached through a TLS proxy of the machine's).
UV := $(VENV)/bin/python tools/pip_settings.py uv pip install -q --python $(VENV)/bin/python --no-deps --system-certs
# The Makefile too: its recipe decides what the venv holds (uv, since; a venv made before lacks it).
$(VENV_STAMP): requirements.lock pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip==25.3 uv==0.13.9
	$(UV) --compile-bytecode -r requirements.lock
	$(UV) --no-build-isolation -e .
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

# mypy's cache lives outside the work tree (like the tools' builds), so a fresh clone checks in a second what
# an unchanged tree held; mypy still reads every file and rechecks what differs from the cache.
MYPY_CACHE_DIR ?= $(HOME)/.cache/canaryapp/mypy
lint: venv
	ruff check .
	ruff format --check .
	MYPY_CACHE_DIR=$(MYPY_CACHE_DIR) mypy
	lint-imports

# Three tiers (docs: how the tests are organised). unit: no tool, only the venv; envtest: the reconciler
# in-process against the local API server with a recording stack runner; e2e: everything real.
UNIT_TESTS := tests/unit tests/stacks tests/devenv
# Four test processes (pytest-xdist) on 2 cores, each with its own local cluster in the tiers that have one:
# the e2e tests mostly wait (on the cluster, intervals, Prometheus), so four keep both cores busier. A test
# module is one unit of work (its module fixtures start once); units go out in the order tests/conftest.py
# sorts them, longest first. Not --dist loadgroup: xdist 3.8 marks a group by renaming item._nodeid, which
# pytest 9 no longer reads, so its groups were split over both workers (the fault suite started two worlds).
PYTEST_WORKERS ?= 4
XDIST := -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

unit: venv
	pytest -n $(PYTEST_WORKERS) $(UNIT_TESTS)

envtest: venv tools
	pytest $(XDIST) tests/envtest

e2e: venv tools image
	pytest $(XDIST) tests/integration

integration: venv tools image
	pytest $(XDIST) tests/envtest tests/integration

# All three tiers in one run, so the cheap tests fill the gaps the e2e tests' waits leave on the workers.
test: venv tools lint image
	pytest $(XDIST)

cluster: venv tools
	canaryapp-dev cluster

demo: venv tools
	canaryapp-dev demo --router $(ROUTER)

demo-up: venv tools
	canaryapp-dev demo-up

demo-down: venv
	canaryapp-dev demo-down

bench: venv tools
	$(VENV)/bin/python bench/step_latency.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
