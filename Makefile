# One entry point for people and CI. Everything a fresh machine lacks is installed here.
#   make up         set up, start the local control plane and the operator (foreground; Ctrl-C stops)
#   make down       stop what `make up` started, from another shell
#   make kind       set up, create a kind cluster and install the chart with helm (the operator as a Pod)
#   make kind-down  delete the kind cluster
#   make image      build the operator's container image with podman
#   make test       set up, lint, type-check and run the whole test suite (fast tier and kind tier)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# Debian packages: SoftHSM2 for the pkcs11 provider's tests; podman, runc and mmdebstrap for the kind tier.
DEBIAN_PACKAGES := softhsm2 podman runc mmdebstrap

.PHONY: setup system-packages binaries up down kind kind-down image test lint unit integration bench clean crds lock

$(STAMP): pyproject.toml
	@command -v go >/dev/null || { echo "Go 1.26+ is needed to build the control plane (https://go.dev/dl)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) system-packages binaries

# Installed with apt-get (as root) only when missing.
system-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing $$missing with apt-get..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm once into ~/.cache/vaop.
binaries: $(STAMP)
	$(BIN)/python -m vaopdev binaries

up: setup
	$(BIN)/python -m vaopdev up

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m vaopdev down; else echo "nothing to stop"; fi

kind: setup
	$(BIN)/python -m vaopdev kind

kind-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m vaopdev kind-down; else echo "nothing to remove"; fi

image: setup
	$(BIN)/python -m vaopdev image

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not kind" $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache

# The chart ships a copy of crds/ (templates/crds.yaml renders it, so helm upgrade upgrades the CRDs).
crds:
	cp crds/*.yaml charts/video-analyzer-operator/files/crds/

# The image's dependencies, every extra and the build backend, pinned with hashes from the index.
lock: $(STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	  --extra pkcs11 --extra azure --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml
