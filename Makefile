# kube-transcode: `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN      := .venv/bin
PYTEST   := $(BIN)/pytest
STATE    ?= $(CURDIR)/.local

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setting up

.PHONY: deps
deps: ## Install everything: Debian packages, the locked Python environment, the pinned Go tools.
	hack/deps.sh

.PHONY: python
python: ## Install only the locked Python environment (.venv, from requirements/dev.txt).
	hack/python.sh

.PHONY: lock
lock: ## Re-pin Python dependencies after editing pyproject.toml (writes requirements/*.txt).
	hack/lock.sh

##@ Local stack (real control plane, RabbitMQ, MinIO; no containers)

.PHONY: up
up: deps ## Start the local stack, install the chart and transcode an example.
	$(BIN)/kt-devstack --state $(STATE) up

.PHONY: down
down: python ## Stop every process of the local stack.
	$(BIN)/kt-devstack --state $(STATE) down

.PHONY: status
status: python ## Show the local stack's processes and endpoints.
	$(BIN)/kt-devstack --state $(STATE) status

.PHONY: kind-up
kind-up: ## Where Docker exists: kind cluster, images built and loaded, chart installed.
	hack/kind-up.sh

.PHONY: kind-down
kind-down: ## Delete the kind cluster.
	hack/tools.sh kind && "$${KT_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/kube-transcode}/bin/kind" delete cluster --name kube-transcode

##@ Quality

.PHONY: lint
lint: python ## ruff (lint and format check) and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: fmt
fmt: python ## Format and autofix with ruff.
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: deps lint ## Install everything, then run lint and every test (unit, integration, e2e).
	$(PYTEST) -m "unit or integration or e2e"

.PHONY: test-unit
test-unit: python ## Unit tests only (no servers).
	$(PYTEST) -m unit

.PHONY: test-integration
test-integration: deps ## Integration tests (real RabbitMQ, MinIO, FFmpeg, apiserver).
	$(PYTEST) -m integration

.PHONY: test-e2e
test-e2e: deps ## End-to-end tests through kubectl and helm.
	$(PYTEST) -m e2e

##@ Benchmarks

.PHONY: bench
bench: deps ## Run the benchmarks; results go to bench-results/.
	$(BIN)/python -m benchmarks

##@ Clean up

.PHONY: clean
clean: down ## Stop the stack and remove its state folder.
	rm -rf $(STATE)
