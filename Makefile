# One Makefile for people and CI: `make demo` runs the main job, `make test` the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration e2e bench clean tools

# promtool checks the Prometheus alert rules and runs their unit tests (tests/unit/test_dashboards.py);
# only the binary is needed, unpacked from Debian's package without installing (and so without
# starting) a server. Fetched once into .tools/ (a file target: idempotent); a promtool on PATH wins.
PROMTOOL_LOCAL := .tools/prometheus/usr/bin/promtool

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(PROMTOOL_LOCAL):
	mkdir -p .tools
	cd .tools && { apt-get download prometheus >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null && apt-get download prometheus >/dev/null; }; } \
	  && dpkg -x prometheus_*.deb prometheus && rm -f prometheus_*.deb \
	  || echo "could not fetch promtool; its tests will fail under CI=true" >&2

tools: $(if $(shell command -v promtool 2>/dev/null),,$(PROMTOOL_LOCAL))

demo: $(STAMP)
	$(BIN)/shadowline demo

lint: $(STAMP)
	$(BIN)/ruff check services tests migrations
	$(BIN)/ruff format --check services tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) lint tools
	PROMTOOL="$${PROMTOOL:-$$(command -v promtool || ls "$(abspath $(PROMTOOL_LOCAL))" 2>/dev/null)}" \
	  $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/shadowline bench append

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
