# migtune: two set-up commands, `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint system-deps bench clean

$(BIN)/python:
	scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

## demo: create .venv, install migtune, diagnose the bundled 32 GiB Proxmox log (answer first)
demo: $(VENV)/.installed
	$(BIN)/migtune explain --brief examples/proxmox-32GiB-not-converging.log

## system-deps: Debian packages the tests need (QEMU 10 from bookworm-backports, guest kernel, Chromium)
system-deps:
	scripts/install-system-deps.sh

## test: install everything the tests need and run lint plus the whole suite
test: system-deps $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

## bench: the benchmark scripts (figures, not pass/fail)
bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
