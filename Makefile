# Two commands on a fresh machine: `make run` (serve) and `make test` (every check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest openapi client bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,oracles]"
	touch $(STAMP)

run: $(STAMP)  ## set up and serve on 127.0.0.1:8000
	$(BIN)/xentropy serve --host 127.0.0.1 --port 8000

test: system-deps lint typecheck pytest  ## set up and run every check

# Debian tools some tests drive (headless Chromium for /docs, wrk for load); installed
# when missing and we are root with apt-get, otherwise those tests are skipped.
SYSTEM_TOOLS := chromium wrk
system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: missing$$missing; the tests that need them will be skipped"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check xentropy app tests bench

typecheck: $(STAMP)
	$(BIN)/mypy xentropy app

pytest: $(STAMP)
	$(BIN)/python -m pytest

openapi: $(STAMP)  ## write openapi/openapi.json from the app
	$(BIN)/xentropy export-openapi openapi/openapi.json

client: $(STAMP)  ## generate the Python client into openapi/clients/python/ (not committed)
	$(BIN)/openapi-python-client generate --path openapi/openapi.json \
	  --config openapi/client-config.yaml --meta setup \
	  --output-path openapi/clients/python --overwrite

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
