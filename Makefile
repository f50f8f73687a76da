# Two commands on a fresh machine: `make run` (serve) and `make test` (every check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs, each with its stamp: `make run` needs the package and its runtime
# dependencies only; `make test` and the tools need the dev extras too.
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-dev
# `make bench` also needs the benchmark baselines (torch, torchmetrics: the bench extra).
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test lint typecheck pytest openapi client bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,oracles]"
	touch $@ $(RUNTIME_STAMP)

# `make run HOST=0.0.0.0 PORT=9100 WORKERS=2`: variables given on the command line become
# flags. Otherwise nothing is forced, so XENTROPY_HOST, XENTROPY_PORT (or PORT) and the
# other XENTROPY_* settings from the environment apply, then the defaults (127.0.0.1:8000).
given = $(if $(filter command line,$(origin $(1))),$(2) $($(1)))
SERVE_FLAGS = $(call given,HOST,--host) $(call given,PORT,--port) $(call given,WORKERS,--workers)

run: $(RUNTIME_STAMP)  ## set up (runtime only) and serve, on 127.0.0.1:8000 by default
	$(BIN)/xentropy serve $(strip $(SERVE_FLAGS))

test: system-deps lint typecheck pytest  ## set up and run every check

# Debian tools some tests drive (headless Chromium for /docs, wrk for load, librsvg's
# rsvg-convert for the diagrams), as command:package; installed when missing and we are
# root with apt-get, otherwise those tests are skipped.
SYSTEM_TOOLS := chromium:chromium wrk:wrk rsvg-convert:librsvg2-bin
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
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

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,oracles,bench]"
	touch $@

bench: $(BENCH_STAMP)  ## every benchmark (python -m bench SECTION --quick for one, shorter)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
