# StudyShare: common commands (`make help`). Everything runs through uv: one workspace, one
# uv.lock pinning every dependency.

# uv from PATH, else the one installed with pip
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VERSION  := 0.1.0
DOCKER   ?= docker

.PHONY: help sync portal-assets nginx run infra test lint format contracts images k8s k8s-check deploy-tools test-peers bench readme-screenshots

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

sync: ## install every package of the workspace from uv.lock, and the portal's pinned htmx
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==0.13.9"
	$(UV) sync --frozen
	python3 portal/install_assets.py

portal-assets: ## the portal's third-party files (npm pack, integrity checked; portal/assets.json)
	python3 portal/install_assets.py

nginx: ## Debian's nginx-light, which the local gateway runs (as a child process, never a service)
	bash scripts/install-nginx.sh

run: sync nginx ## the whole platform on one machine, demo data, gateway URL printed; Ctrl-C stops it
	$(UV) run studyshare-dev run

infra: sync ## only the broker (9092) and the database (27017)
	$(UV) run studyshare-dev infra

test: test-peers sync deploy-tools ## every test (unit, integration, end-to-end, k8s manifests), on two workers
	$(UV) run pytest -n 2

readme-screenshots: test-peers sync ## the README's portal screenshots (docs/screenshots/), taken by the browser tests
	$(UV) run python scripts/readme_screenshots.py

bench: sync ## the benchmark table (figures side by side with their targets)
	sh bench/install.sh >/dev/null
	$(UV) run python -m bench

lint: ## ruff lint and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

format: ## ruff format and safe fixes
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

contracts: ## regenerate contracts/schemas and contracts/asyncapi.yaml
	$(UV) run python -m studyshare.contracts.generate

k8s: ## regenerate deploy/k8s/base/generated from contracts/
	$(UV) run python deploy/k8s/generate.py

k8s-check: ## fail when deploy/k8s/base/generated drifts from contracts/
	$(UV) run python deploy/k8s/generate.py --check

deploy-tools: ## the pinned kubectl the manifest tests render with
	bash deploy/install-tools.sh

test-peers: ## Debian packages the tests use as real peers (kcat, oathtool, dcmtk, chromium, npm, promtool, nginx)
	bash scripts/install-test-peers.sh

images: ## one image per service (needs a Docker engine; not part of test)
	@command -v $(DOCKER) >/dev/null 2>&1 || { \
	  echo "make images: '$(DOCKER)' not found; build the images where a Docker engine exists" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make images: no Docker engine answers ('$(DOCKER) info' failed); start one or build elsewhere" >&2; exit 1; }
	@$(UV) run python -c 'from studyshare.contracts.routes import SERVICES; \
	  print("\n".join(f"{s.name} {s.package} {s.port}" for s in SERVICES))' | \
	while read -r service package port; do \
	  echo "== studyshare-$$service:$(VERSION)"; \
	  $(DOCKER) build --build-arg SERVICE=$$service --build-arg MODULE=studyshare.$$package \
	    --build-arg PORT=$$port --build-arg WORKER_PORT=$$((port + 100)) \
	    -t studyshare-$$service:$(VERSION) . || exit 1; \
	done
