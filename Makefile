# eventlake — `make up` runs the stack on the bundled samples, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

SUPERSET_VENV := .venv-superset
SUPERSET_STAMP := $(SUPERSET_VENV)/.installed-$(shell cat dashboards/requirements.txt dashboards/constraints.txt | cksum | cut -d' ' -f1)
# `make up SUPERSET=0` (or EVENTLAKE_SUPERSET=0 in the environment) runs the pipeline without Superset.
SUPERSET ?= $(or $(EVENTLAKE_SUPERSET),1)
ifeq ($(SUPERSET),0)
STACK_DEPS := install
else
STACK_DEPS := install superset-venv
endif

# `make up LAKE=s3`: the lake on a local S3 server (Ceph RGW, installed from Debian when missing).
LAKE ?= local
ifeq ($(LAKE),s3)
STACK_DEPS += packages-s3
endif

# The trackers' browser bundles (posthog-js, Snowplow's browser tracker) the browser tests load, from npm.
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed-$(shell cat $(BROWSER_DIR)/package-lock.json | cksum | cut -d' ' -f1)

.PHONY: install superset-venv browser-clients packages packages-s3 up demo test lint lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.5,<1"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

# Bytecode compiled ahead (the dependencies' at install, ours on every call: only changed files), so
# a process never compiles its imports, also where PYTHONDONTWRITEBYTECODE is set: `import dagster`
# 1.4 -> 0.6 s, each Dagster process, CLI call and test subprocess included.
install: $(STAMP)  ## create .venv and install the locked dependencies
	@$(BIN)/python -m compileall -q ingest_api pipelines warehouse dashboards scripts

$(SUPERSET_STAMP): dashboards/requirements.txt dashboards/constraints.txt
	@test -x $(SUPERSET_VENV)/bin/python || $(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/python -m pip install --quiet "uv>=0.5,<1"
	$(SUPERSET_VENV)/bin/uv pip install --quiet --compile-bytecode --python $(SUPERSET_VENV)/bin/python \
		-r dashboards/requirements.txt -c dashboards/constraints.txt
	@rm -f $(SUPERSET_VENV)/.installed-* && touch $@

superset-venv: $(SUPERSET_STAMP)  ## Superset's own venv (it pins SQLAlchemy 1.4 / pandas 2)

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	npm ci --prefix $(BROWSER_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error
	@rm -f $(BROWSER_DIR)/node_modules/.installed-* && touch $@

browser-clients: $(BROWSER_STAMP)  ## the trackers' browser bundles for the browser tests (npm ci)

# `exec`: the stack's CLI is make's own child (no shell between), so a SIGTERM to make reaches it and
# stops the stack, and the CLI stops it too when make dies of a SIGKILL (scripts/stack.py).
up: $(STACK_DEPS)  ## start API + Dagster, replay the samples, print DAU/MAU, serve until Ctrl-C
	exec env EVENTLAKE_SUPERSET=$(SUPERSET) $(BIN)/python scripts/stack.py up --lake $(LAKE)

demo: $(STACK_DEPS)  ## the same as `up`, then stop (CI's smoke test of the main job)
	exec env EVENTLAKE_SUPERSET=$(SUPERSET) $(BIN)/python scripts/stack.py demo --lake $(LAKE)

packages:  ## the Debian packages of the servers the tests start (Chromium, Node.js, Ceph RGW, HAProxy, Redis, PostgreSQL)
	bash scripts/debian_packages.sh all

packages-s3:  ## the Debian packages of the local S3 server (Ceph RGW)
	bash scripts/debian_packages.sh s3

test: packages install superset-venv browser-clients  ## unit and integration tests (Superset and browser ones included)
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:  ## remove everything the running system wrote
	rm -rf data
