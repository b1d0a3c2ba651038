# StudyShare: common commands. Everything runs through uv (one workspace, one uv.lock).

# uv from PATH, else the one `make sync` installs with pip
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: sync run infra test lint format contracts

sync: ## install every package of the workspace from uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user uv
	$(UV) sync --frozen

run: ## the whole platform on one machine, demo data, gateway URL printed; Ctrl-C stops it
	$(UV) run studyshare-dev run

infra: ## only the broker (9092) and the database (27017)
	$(UV) run studyshare-dev infra

test: ## every test (unit, integration, end-to-end)
	$(UV) run pytest

lint: ## ruff lint and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

format: ## ruff format and safe fixes
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

contracts: ## regenerate contracts/schemas and contracts/asyncapi.yaml
	$(UV) run python -m studyshare.contracts.generate
