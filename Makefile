# One entry point for people and CI. Everything a fresh machine lacks is installed here.
#   make up     set up, start the local control plane and the operator (foreground; Ctrl-C stops)
#   make down   stop what `make up` started, from another shell
#   make test   set up, lint, type-check and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup system-packages binaries up down test lint unit integration bench clean crds

$(STAMP): pyproject.toml
	@command -v go >/dev/null || { echo "Go 1.26+ is needed to build the control plane (https://go.dev/dl)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) system-packages binaries

# SoftHSM2 (Debian) for the pkcs11 provider's tests; installed only when missing.
system-packages:
	@test -e /usr/lib/softhsm/libsofthsm2.so || { \
	  echo "Installing softhsm2 with apt-get..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2; }

# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm once into ~/.cache/vaop.
binaries: $(STAMP)
	$(BIN)/python -m vaop.devcluster.binaries

up: setup
	$(BIN)/python -m vaop dev up

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m vaop dev down; else echo "nothing to stop"; fi

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache

# The chart ships a copy of crds/ (Helm installs CRDs only from the chart's own crds/ folder).
crds:
	cp crds/*.yaml charts/video-analyzer-operator/crds/
