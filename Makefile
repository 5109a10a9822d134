# One target per job. Every target that needs Python builds .venv from the pinned lock first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP_VERSION := 25.3
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.txt pyproject.toml | cksum | cut -d' ' -f1)

MODEL_NAME ?= penguins
MODEL_DIR := models/$(MODEL_NAME)

.PHONY: help setup lint test model package demo openapi bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.txt pyproject.toml
	@echo "==> creating $(VENV) from requirements/dev.txt"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv from the pinned requirements

lint: setup  ## ruff (lint and format) and mypy
	$(BIN)/ruff check src tests functions scripts bench
	$(BIN)/ruff format --check src tests functions scripts bench
	$(BIN)/mypy

test: lint  ## lint, then the whole test suite
	$(BIN)/pytest -q

model: setup  ## train, gate and package the example model into models/penguins
	$(PY) -m sklambda.examples.penguins --out models/penguins

package: setup  ## package your own pipeline: make package MODEL=pipe.joblib DATA=holdout.csv TARGET=y
	@test -n "$(MODEL)" -a -n "$(DATA)" -a -n "$(TARGET)" || \
	  { echo "usage: make package MODEL=<pipeline.joblib> DATA=<holdout.csv> TARGET=<column> [NAME=..] [GATE=..] [RUNTIME=auto|onnx|sklearn]"; exit 2; }
	$(PY) -m sklambda.package --model "$(MODEL)" --data "$(DATA)" --target "$(TARGET)" \
	  $(if $(NAME),--name "$(NAME)") $(if $(GATE),--gate "$(GATE)") $(if $(RUNTIME),--runtime "$(RUNTIME)") \
	  $(if $(TRAIN),--train-data "$(TRAIN)")

$(MODEL_DIR)/model.json:
	$(MAKE) model

demo: setup $(MODEL_DIR)/model.json  ## train if needed, then show the model scoring a sample
	$(PY) scripts/demo.py --model $(MODEL_DIR)

bench: setup  ## benchmarks against naive baselines: online latency and cold start, batch throughput and memory
	$(PY) bench/online.py --json out/bench/online.json
	$(PY) bench/batch.py --json out/bench/batch.json

openapi: setup  ## write docs/openapi.json from the routes and models/$(MODEL_NAME)/model.json
	$(PY) scripts/openapi.py --model $(MODEL_DIR)

lock:  ## re-pin requirements/dev.txt from requirements/dev.in in a scratch venv
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip==$(PIP_VERSION) && .venv-lock/bin/pip install --quiet -r requirements/dev.in
	{ sed -n '1,2p' requirements/dev.txt; .venv-lock/bin/pip freeze --all | grep -v -E '^(pip|wheel)=='; } > requirements/dev.txt.new
	mv requirements/dev.txt.new requirements/dev.txt && rm -rf .venv-lock

clean:  ## remove the venv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
