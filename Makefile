# b2fs: every target installs what it needs (system packages, .venv, the package) first.
# Re-running is fast: stamps skip the steps whose inputs did not change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make
PYTEST_ARGS ?=

.PHONY: all setup system-deps lint test demo demo-stop bench bench-quick clean

all: test

$(STAMPS):
	@mkdir -p $(STAMPS)

# System packages (fuse3, libfuse3-dev, pkg-config, and the programs the tests drive).
$(STAMPS)/system-deps: scripts/install-system-deps.sh | $(STAMPS)
	@./scripts/install-system-deps.sh
	@touch $@

system-deps: $(STAMPS)/system-deps

# The virtualenv with b2fs installed in editable mode plus the test tools.
$(STAMPS)/venv: pyproject.toml $(STAMPS)/system-deps | $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

setup: $(STAMPS)/venv

lint: setup
	$(BIN)/ruff format --check b2fs tests benchmarks
	$(BIN)/ruff check b2fs tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	@$(BIN)/python -m b2fs.demo start

demo-stop: setup
	@$(BIN)/python -m b2fs.demo stop

bench: setup
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python -m benchmarks --quick $(BENCH_ARGS)

clean:
	rm -rf $(STAMPS) $(VENV) .pytest_cache .mypy_cache .ruff_cache
