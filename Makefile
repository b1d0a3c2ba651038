# StudyShare developer commands. `make help` lists them.
SERVICES := $(notdir $(patsubst %/Dockerfile,%,$(wildcard services/*/Dockerfile)))
VERSION  := 0.1.0
DOCKER   ?= docker

.PHONY: help test lint images k8s k8s-check deploy-tools

help:
	@echo "make test          all tests (pytest, testpaths in pyproject.toml)"
	@echo "make lint          ruff check + format check"
	@echo "make images        build one image per service (needs a Docker engine; not part of test)"
	@echo "make k8s           regenerate deploy/k8s/base/generated from contracts/"
	@echo "make k8s-check     fail when deploy/k8s/base/generated drifts from contracts/"
	@echo "make deploy-tools  install the pinned kubectl/kustomize the deploy tests use"

test: deploy-tools
	uv run pytest -q

lint:
	uv run ruff check .
	uv run ruff format --check deploy

images:
	@command -v $(DOCKER) >/dev/null 2>&1 || { \
	  echo "make images: '$(DOCKER)' not found; build the images where a Docker engine exists" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make images: no Docker engine answers ('$(DOCKER) info' failed); start one or build elsewhere" >&2; exit 1; }
	@set -e; for service in $(SERVICES); do \
	  echo "== studyshare-$$service:$(VERSION)"; \
	  $(DOCKER) build -f services/$$service/Dockerfile -t studyshare-$$service:$(VERSION) .; \
	done

k8s:
	uv run python deploy/k8s/generate.py

k8s-check:
	uv run python deploy/k8s/generate.py --check

deploy-tools:
	bash deploy/install-tools.sh
