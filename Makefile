# p2pai: `make run` starts the console with two local peers, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q -e tests/plugin_pkg
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/p2pai console --interface 127.0.0.1 --local 2

demo: $(STAMP)
	$(BIN)/p2pai demo

lint: $(STAMP)
	$(BIN)/ruff check netcore tui tests benchmarks assets/models
	$(BIN)/ruff format --check netcore tui tests benchmarks assets/models
	$(BIN)/lint-imports  # the layers' import contracts (pyproject.toml, docs/architecture.md)

typecheck: $(STAMP)
	$(BIN)/mypy

# ruff and mypy first (a style or type error fails the suite), then pytest. pytest exits 5
# when it collected no test: that must fail, never pass silently.
test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

check: test

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/p2pai bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
