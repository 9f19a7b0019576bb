# parcours — the two set-up commands are `make demo` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2
PACKAGES := journey features training serving parcours

.PHONY: install demo test unit integration lint typecheck bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv (if missing) and install parcours with its test extras

demo: install  ## simulate, validate, build features, train, and serve on 127.0.0.1:$(PORT)
	PORT=$(PORT) $(BIN)/parcours demo --port $(PORT)

lint: install  ## ruff
	$(BIN)/ruff check .

typecheck: install  ## mypy
	$(BIN)/mypy $(PACKAGES)

test: lint typecheck  ## lint, type-check, then unit and integration tests
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

clean:  ## remove runtime state of the default workspace (data, feature store, mlruns, logs)
	rm -rf data feature_store mlruns logs quarantine reports
