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

# The model every command works on: a name in models/ or a packaged model's directory.
MODEL_NAME ?= penguins
MODEL_DIR := $(patsubst %/,%,$(if $(findstring /,$(MODEL_NAME)),$(MODEL_NAME),models/$(MODEL_NAME)))

# Build tools (SAM CLI, cfn-lint) live in their own venv: SAM pins its own boto3.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cksum < requirements/tools.txt | cut -d' ' -f1)
SAM := $(TOOLS)/bin/sam
export SAM_CLI_TELEMETRY := 0
AWS_REGION ?= us-east-1
ARCH ?= arm64
# The runtime the functions get: the one the model's manifest names, unless SERVING_RUNTIME
# (onnx or sklearn) overrides it.
MANIFEST_RUNTIME = $(shell python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runtime"]["serving"])' $(MODEL_DIR)/model.json 2>/dev/null)
SERVING_RUNTIME ?=
RUNTIME_CHOSEN = $(or $(SERVING_RUNTIME),$(MANIFEST_RUNTIME))
RUNTIME_FLAG = $(if $(SERVING_RUNTIME),--runtime $(SERVING_RUNTIME))
HOST_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)

.PHONY: help setup lint test edge model package demo serve invoke batch drift versions rollback openapi bench lock clean tools lint-template build build-host size test-built lock-tools checkov

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
	$(BIN)/ruff check src tests functions scripts bench examples
	$(BIN)/ruff format --check src tests functions scripts bench examples
	$(BIN)/mypy

test: lint tools checkov edge  ## lint, then the whole test suite (schemathesis and the body fuzzer: fixed seed, a few hundred examples), then the edge module's Node tests
	$(BIN)/pytest -q
	cd edge && SKLAMBDA_EDGE_BUNDLE=$(abspath $(EDGE_OUT)/$(notdir $(MODEL_DIR))) node --test

# The edge module's JavaScript dependencies (onnxruntime-web, onnxruntime-node), from the lock.
# Without install scripts: onnxruntime-node's would fetch optional GPU binaries from outside
# the npm registry; the CPU ones are in its package.
EDGE_STAMP := edge/node_modules/.installed-$(shell cat edge/package.json edge/package-lock.json | cksum | cut -d' ' -f1)
$(EDGE_STAMP): edge/package.json edge/package-lock.json
	@echo "==> installing edge/node_modules from edge/package-lock.json"
	@cd edge && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@rm -f edge/node_modules/.installed-* && touch $@

EDGE_OUT ?= dist/edge
edge: setup $(EDGE_STAMP) $(MODEL_DIR)/model.json  ## the edge bundle of MODEL_NAME in dist/edge/<name>/: graph, manifest, JavaScript module, static page, onnxruntime-web
	$(PY) -m sklambda_tools.edge --model $(MODEL_DIR) --out $(EDGE_OUT)

FUZZ_EXAMPLES ?= 10000
FUZZ_BODY_EXAMPLES ?= 5000
FUZZ_SPLIT_EXAMPLES ?= 300
.PHONY: fuzz
fuzz: setup  ## long runs: schemathesis from docs/openapi.json (10,000), the body fuzzer (5,000), messy files through the split path (300 each); random seed, SEED=n replays
	@seed=$(or $(SEED),$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')); \
	  echo "==> fuzz seed $$seed (replay: make fuzz SEED=$$seed)"; \
	  SKLAMBDA_FUZZ_SEED=$$seed SKLAMBDA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SKLAMBDA_FUZZ_BODY_EXAMPLES=$(FUZZ_BODY_EXAMPLES) \
	  SKLAMBDA_FUZZ_SPLIT_EXAMPLES=$(FUZZ_SPLIT_EXAMPLES) \
	  $(BIN)/pytest -q -p no:cacheprovider --hypothesis-show-statistics \
	  tests/integration/test_schemathesis.py \
	  tests/unit/test_predict_api.py::test_fuzzed_requests_get_a_bounded_answer_and_never_a_5xx \
	  tests/integration/test_split_path.py::test_a_messy_csv_file_split_anywhere_gives_the_single_paths_outputs \
	  tests/integration/test_split_path.py::test_a_messy_json_lines_file_split_anywhere_gives_the_single_paths_outputs

model: setup  ## train, gate and package the example model into models/penguins
	$(PY) -m sklambda_tools.examples.penguins --out models/penguins

package: setup  ## package your own pipeline: make package MODEL=pipe.joblib DATA=holdout.csv TARGET=y
	@test -n "$(MODEL)" -a -n "$(DATA)" -a -n "$(TARGET)" || \
	  { echo "usage: make package MODEL=<pipeline.joblib> DATA=<holdout.csv> TARGET=<column> [NAME=..] [TRAIN=..] [GATE=..] [RUNTIME=auto|onnx|sklearn] [DESCRIPTION=..] [VERSION=..] [NULLABLE=a,b] [NOT_NULLABLE=c] [ACCEPT_VERSION_MISMATCH=1] [CHAMPION=<model dir or model.json>|none]"; exit 2; }
	$(PY) -m sklambda_tools.package --model "$(MODEL)" --data "$(DATA)" --target "$(TARGET)" \
	  $(if $(NAME),--name "$(NAME)") $(if $(GATE),--gate "$(GATE)") $(if $(RUNTIME),--runtime "$(RUNTIME)") \
	  $(if $(TRAIN),--train-data "$(TRAIN)") $(if $(DESCRIPTION),--description "$(DESCRIPTION)") \
	  $(if $(VERSION),--version "$(VERSION)") $(if $(NULLABLE),--nullable "$(NULLABLE)") \
	  $(if $(NOT_NULLABLE),--not-nullable "$(NOT_NULLABLE)") \
	  $(if $(ACCEPT_VERSION_MISMATCH),--accept-version-mismatch) \
	  $(if $(CHAMPION),$(if $(filter none,$(CHAMPION)),--no-champion,--champion "$(CHAMPION)"))

# Only the example is trained when missing; any other name must be a packaged model: nothing
# retrains or overwrites a committed model unless asked to (`make model`).
$(MODEL_DIR)/model.json:
	@if [ "$(MODEL_NAME)" = penguins ]; then $(MAKE) model; else \
	  echo "no model '$(MODEL_NAME)' ($(MODEL_DIR)/model.json); the models are: $$(ls models/*/model.json 2>/dev/null | cut -d/ -f2 | tr '\n' ' ')(make package ... NAME=$(MODEL_NAME) packages one)" >&2; \
	  exit 2; fi

demo: setup $(EDGE_STAMP) $(MODEL_DIR)/model.json  ## the whole system locally: train and gate, API, batch in S3, metrics, drift, rollout, the edge
	$(PY) scripts/demo.py --model $(MODEL_DIR)

AUTH ?= NONE
PORT ?= 3000
serve: setup $(MODEL_DIR)/model.json  ## the API on http://127.0.0.1:$(PORT) (AUTH=NONE|API_KEY|IAM); edits apply without a rebuild
	$(PY) scripts/serve.py --port $(PORT) --auth $(AUTH) --model $(MODEL_DIR) $(RUNTIME_FLAG)

invoke: setup $(MODEL_DIR)/model.json  ## run a function once, as sam local invoke would: make invoke FN=PredictFunction EVENT=events/predict-single.json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=<event file> [PARAMS='Name=Value ...']"; exit 2; }
	$(PY) scripts/invoke.py "$(FN)" "$(EVENT)" --model $(MODEL_DIR) \
	  $(if $(SERVING_RUNTIME),--param ServingRuntime=$(SERVING_RUNTIME)) $(foreach p,$(PARAMS),--param $(p))

drift: setup $(MODEL_DIR)/model.json  ## drift of a CSV against the model's training baselines: make drift DATA=samples/birds-shifted.csv
	@test -n "$(DATA)" || { echo "usage: make drift DATA=<file.csv> [MODEL_NAME=...]"; exit 2; }
	$(PY) -m sklambda_tools.drift --data "$(DATA)" --model $(MODEL_DIR)

# The deployed stack: STACK, else samconfig.toml's stack_name, else sklambda. The region only
# when AWS_REGION is given (command line or environment), else boto3's (AWS_DEFAULT_REGION, the
# profile): the Makefile's own default is the build's.
VERSIONS_ARGS = $(if $(STACK),--stack "$(STACK)") $(if $(filter-out file default undefined,$(origin AWS_REGION)),--region "$(AWS_REGION)")
versions: setup  ## the deployed functions' versions and the one each alias `live` serves: make versions [STACK=..] [AWS_REGION=..]
	$(PY) -m sklambda_tools.versions list $(VERSIONS_ARGS)

# The usage check runs under make -n too (+).
rollback: setup  ## point the API's alias `live` at version VERSION (batch and drift follow its release): make rollback VERSION=<n> [STACK=..]
	+@test -n "$(VERSION)" || { echo "usage: make rollback VERSION=<n> [STACK=...] [AWS_REGION=...] (make versions lists the versions)" >&2; exit 2; }
	$(PY) -m sklambda_tools.versions rollback --version "$(VERSION)" $(VERSIONS_ARGS)

FILE ?= samples/birds.csv
batch: setup $(MODEL_DIR)/model.json  ## score FILE through the batch function in an embedded S3 (SPLIT_BYTES= forces the split path, WORKERS= its processes, CHUNK_ROWS= BatchChunkRows); outputs to out/
	$(PY) scripts/batch.py "$(FILE)" --out out --model $(MODEL_DIR) $(RUNTIME_FLAG) \
	  $(if $(SPLIT_BYTES),--split-bytes "$(SPLIT_BYTES)") $(if $(WORKERS),--workers "$(WORKERS)") \
	  $(if $(CHUNK_ROWS),--chunk-rows "$(CHUNK_ROWS)")

bench: setup build-host $(EDGE_STAMP)  ## benchmarks: online latency (and V2 beside /predict), batch throughput and memory, the split path, cold starts, capture and the drift job, the pre-traffic check, the edge page
	@mkdir -p out/bench
	$(PY) bench/online.py --json out/bench/online.json
	$(PY) bench/oip.py --json out/bench/oip.json
	$(PY) bench/batch.py --json out/bench/batch.json
	$(PY) bench/split.py --json out/bench/split.json
	$(PY) bench/scale_costs.py --json out/bench/split.json
	$(PY) bench/cold_start.py --json out/bench/cold_start.json
	$(PY) bench/monitoring.py --json out/bench/monitoring.json
	$(PY) bench/hardening.py --json out/bench/hardening.json
	$(PY) bench/rollout.py --json out/bench/rollout.json
	$(PY) bench/edge.py --json out/bench/edge.json

# docs/openapi.json documents the example model; another model's document goes to out/.
OPENAPI_OUT = $(if $(filter models/penguins,$(MODEL_DIR)),docs/openapi.json,out/$(notdir $(MODEL_DIR))/openapi.json)
openapi: setup $(MODEL_DIR)/model.json  ## write the OpenAPI document of the routes and the model (penguins: docs/openapi.json; others: out/<name>/openapi.json)
	$(PY) scripts/openapi.py --model $(MODEL_DIR) --out $(OPENAPI_OUT)

$(TOOLS_STAMP): requirements/tools.txt
	@echo "==> creating $(TOOLS) from requirements/tools.txt"
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/tools.txt
	@rm -f $(TOOLS)/.installed-* && touch $@

tools: $(TOOLS_STAMP)  ## create .venv-tools (SAM CLI, cfn-lint) from the pinned requirements

# checkov in a venv of its own: it pins boto3 1.35, aws-sam-cli 1.43 (see requirements/checkov.txt).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements/checkov.txt | cut -d' ' -f1)
CHECKOV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov \
  --framework cloudformation --skip-download --compact --quiet

$(CHECKOV_STAMP): requirements/checkov.txt
	@echo "==> creating $(CHECKOV_VENV) from requirements/checkov.txt"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/checkov.txt
	@rm -f $(CHECKOV_VENV)/.installed-* && touch $@

checkov: $(CHECKOV_STAMP)  ## create .venv-checkov (checkov) from its pinned requirements

# checkov reads template.yaml, then the CloudFormation SAM makes of it (the stage, roles and
# permissions SAM generates); its skips are in the resources' Metadata, each with its reason.
lint-template: tools $(CHECKOV_STAMP)  ## sam validate --lint (cfn-lint 1.53.3), then checkov on template.yaml and on its SAM transform
	$(SAM) validate --lint --region $(AWS_REGION)
	$(CHECKOV) -f template.yaml
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && set -x && \
	  $(TOOLS)/bin/python scripts/transform.py template.yaml --region $(AWS_REGION) \
	    $(foreach p,$(PARAMS),--parameter $(p)) > "$$out/transformed.json" && \
	  $(CHECKOV) -f "$$out/transformed.json"

# The model layer gets $(MODEL_DIR); then scripts/stamp_build.py writes the release (model, code,
# runtime) into the built template, so that a new one publishes new versions behind the alias
# `live`, and makes the model's runtime (or SERVING_RUNTIME) and SNAPSTART its defaults.
SNAPSTART ?= None
build: $(MODEL_DIR)/model.json lint-template setup  ## sam build of MODEL_NAME for ARCH (arm64, the default, or x86_64) into .aws-sam/build, stamped with its release (SNAPSTART=PublishedVersions for SnapStart); no Docker
	MODEL_NAME=$(abspath $(MODEL_DIR)) SKLAMBDA_ARCH=$(ARCH) $(SAM) build --build-dir .aws-sam/build --region $(AWS_REGION) \
	  --parameter-overrides Architecture=$(ARCH) ServingRuntime=$(RUNTIME_CHOSEN) SnapStart=$(SNAPSTART)
	$(PY) scripts/stamp_build.py .aws-sam/build --model $(MODEL_DIR) --runtime $(RUNTIME_CHOSEN) --snapstart $(SNAPSTART) --arch $(ARCH)

size: setup  ## unpacked size of each function with its layers in .aws-sam/build (the runtime it was built for); fails above 250 MB
	$(PY) scripts/size.py --build-dir .aws-sam/build $(if $(SERVING_RUNTIME),--parameter ServingRuntime=$(SERVING_RUNTIME))

HOST_BUILD_DIR ?= .aws-sam/build-host
build-host: $(MODEL_DIR)/model.json lint-template setup  ## build MODEL_NAME for this machine (its architecture and Python) into $(HOST_BUILD_DIR)
	MODEL_NAME=$(abspath $(MODEL_DIR)) SKLAMBDA_ARCH=$(HOST_ARCH) SKLAMBDA_PYTHON=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	  $(SAM) build --build-dir $(HOST_BUILD_DIR) --region $(AWS_REGION) --parameter-overrides Architecture=$(HOST_ARCH) ServingRuntime=$(RUNTIME_CHOSEN) SnapStart=$(SNAPSTART)
	$(PY) scripts/stamp_build.py $(HOST_BUILD_DIR) --model $(MODEL_DIR) --runtime $(RUNTIME_CHOSEN) --snapstart $(SNAPSTART) --arch $(HOST_ARCH)

test-built: build-host  ## what `sam local invoke` would run: the built functions, isolated, with every event
	SKLAMBDA_BUILD_DIR=$(HOST_BUILD_DIR) SKLAMBDA_SAM=$(SAM) $(BIN)/pytest -q tests/built

lock-tools:  ## re-pin requirements/tools.txt from requirements/tools.in in a scratch venv
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip==$(PIP_VERSION) && .venv-lock/bin/pip install --quiet -r requirements/tools.in
	{ sed -n '1p' requirements/tools.txt; .venv-lock/bin/pip freeze --all | grep -v -E '^(pip|wheel)=='; } > requirements/tools.txt.new
	mv requirements/tools.txt.new requirements/tools.txt && rm -rf .venv-lock

lock:  ## re-pin requirements/dev.txt from requirements/dev.in in a scratch venv
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip==$(PIP_VERSION) && .venv-lock/bin/pip install --quiet -r requirements/dev.in
	{ sed -n '1,2p' requirements/dev.txt; .venv-lock/bin/pip freeze --all | grep -v -E '^(pip|wheel)=='; } > requirements/dev.txt.new
	mv requirements/dev.txt.new requirements/dev.txt && rm -rf .venv-lock

clean:  ## remove the venvs and build output
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
