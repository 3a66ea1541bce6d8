# The two commands of README.md: `make demo` and `make test`.
# Everything they need is installed here, from package registries only.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
COLD_HOME ?= $(CURDIR)/.cold
export COLD_HOME

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/cold-assets demo

# pytest exits 5 when it collected no test; CI must treat that as a failure, and it does
# because make propagates any non-zero exit.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider cold_assets_tests

bench: install
	$(BIN)/cold-assets bench

clean:
	rm -rf $(COLD_HOME)
