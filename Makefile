# Developer entry points. The README's two commands are `make run` and `make test`;
# .ci/run goes through this file too, so it is the one source of truth.

PYTHON      ?= python3
VENV        := .venv
VENV_PY     := $(VENV)/bin/python
PIP_EXTRAS  ?= test,dev
# What `make bench` installs: every pool it compares, the plots, the C driver column
# (mysqlclient builds against libmariadb-dev) and the profilers.
BENCH_EXTRAS ?= dev,mysqlclient,bench
# One stamp per set of extras: re-installed whenever pyproject.toml changes *or* a run asks
# for extras this venv has not had yet (`make test` then `.ci/run`, which adds mysqlclient
# and bench, installs them instead of silently skipping their tests).
comma       := ,
VENV_STAMP  := $(VENV)/.fpp-installed-$(subst $(comma),-,$(PIP_EXTRAS))
PYTEST_ARGS ?=
RUN_ARGS    ?=
BENCH_ARGS  ?=

.DEFAULT_GOAL := help
.PHONY: help .venv venv test run lint bench clean-venv

help:
	@echo "make test   run the test suite (PYTEST_ARGS='-k pool -x' to pass options)"
	@echo "make run    start the example app (RUN_ARGS='--port 8000')"
	@echo "make lint   ruff check"
	@echo "make bench  quick benchmark run, every pool and plot (installs [$(BENCH_EXTRAS)])"
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

# Its own extras, through a sub-make so the stamp follows them; exits non-zero when a
# pool is skipped or a scenario fails (see benchmarks/report.py exit_status).
bench:
	@$(MAKE) --no-print-directory .venv PIP_EXTRAS=$(BENCH_EXTRAS)
	$(VENV_PY) -m benchmarks --quick $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
