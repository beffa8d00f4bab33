# Two entry points: `make demo` and `make test`. Both bootstrap what is missing:
# the virtualenv with the pinned lock, the package, and the JVM jars from Maven Central.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python

.PHONY: demo test test-deploy test-unit bootstrap prereqs jars test-deps lint bench down

demo: bootstrap
	$(BIN)/dse demo

test: bootstrap test-deps
	$(BIN)/python -m pytest --ignore=tests/deploy $(PYTEST_ARGS)

# the compose deployment built and run for real: Debian's Docker Engine and docker-compose (installed
# when absent, like test-deps; the daemon started for the run), images from a debootstrap base
test-deploy: bootstrap
	@$(PYTHON) src/dse_platform/runtime/debian_packages.py docker compose debootstrap
	$(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

# no service, under a minute: the pure pieces (tests/unit mirrors src/dse_platform)
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bootstrap: prereqs $(STAMP) jars

prereqs:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "missing prerequisite: Python 3.11 ('$(PYTHON)' not found): install it (Debian: apt-get install python3.11, or pyenv install 3.11) or run make PYTHON=/path/to/python3.11"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null || { echo "missing prerequisite: Python 3.11 ('$(PYTHON)' is $$($(PYTHON) --version 2>&1)): install 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	@$(PYTHON) src/dse_platform/runtime/debian_packages.py venv java maven

$(STAMP): requirements.txt pyproject.toml
	rm -f $(VENV)/.installed-*
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@# unpacked wheels no environment uses any more: they filled a 92 GB disk over a few dozen fresh-clone installs
	$(BIN)/uv cache prune -q
	touch $@

jars: $(STAMP)
	@$(BIN)/dse doctor >/dev/null
	$(BIN)/dse jars

# The test suite runs the database tests against a real PostgreSQL server and drives the UIs with Playwright
# through Debian's Chromium (Playwright never downloads a browser): installed when absent (as root or with
# passwordless sudo; otherwise make stops naming the command to run).
test-deps:
	@$(PYTHON) src/dse_platform/runtime/debian_packages.py postgresql chromium

lint: bootstrap
	$(BIN)/ruff check src dags jobs plugins tests bench

# every benchmark on a private platform (var/bench/platform, free ports; stopped after when started here), a table,
# bench/results/<UTC timestamp>.json and latest.md; QUICK=1: fewer repeats and smaller data, under 5 minutes
bench: bootstrap
	$(BIN)/python bench/run_all.py $(if $(QUICK),--quick)

down:
	$(BIN)/dse down
