# Developer entry points. The README's two commands are `make run` and `make test`;
# .ci/run goes through this file too, so it is the one source of truth.

PYTHON      ?= python3
VENV        := .venv
VENV_PY     := $(VENV)/bin/python
# Re-installed whenever pyproject.toml changes.
VENV_STAMP  := $(VENV)/.fpp-installed
PIP_EXTRAS  ?= test,dev
PYTEST_ARGS ?=
RUN_ARGS    ?=

.DEFAULT_GOAL := help
.PHONY: help .venv venv test run lint bench clean-venv

help:
	@echo "make test   run the test suite (PYTEST_ARGS='-k pool -x' to pass options)"
	@echo "make run    start the example app (RUN_ARGS='--port 8000')"
	@echo "make lint   ruff check"
	@echo "make bench  quick benchmark run"
	@echo "make .venv  create/refresh the virtualenv in $(VENV)"

.venv venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -e '.[$(PIP_EXTRAS)]'
	@touch $@

test: $(VENV_STAMP)
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

run: $(VENV_STAMP)
	$(VENV)/bin/flask --app example_app run $(RUN_ARGS)

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .

bench: $(VENV_STAMP)
	$(VENV_PY) -m benchmarks --quick

clean-venv:
	rm -rf $(VENV)
