# Every target bootstraps its own virtual environment from pyproject.toml's pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed

.PHONY: run test check lint typecheck bench clean node soak

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ordercast run $(ARGS)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# The model-based delivery suite (tests/conformance) on more seeds, for MINUTES in total
# across its three configurations: make soak SEEDS=1,2,3 MINUTES=10
SEEDS ?=
MINUTES ?= 10
soak: $(STAMP)
	CONFORMANCE_SOAK_MINUTES=$(MINUTES) CONFORMANCE_SEEDS=$(SEEDS) ORDERCAST_REQUIRE_SERVICES=1 \
		$(BIN)/pytest tests/conformance -k soak -x -s $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) tests/node/node_modules ordercast.db*
