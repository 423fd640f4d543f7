# Two commands matter: `make demo` and `make test`. Both set everything up first.
# The machine's own Python is used; no tool may download an interpreter or a toolchain.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup test lint demo bench clean

setup: $(VENV)/.synced anvil/node_modules/.installed

$(VENV)/.synced: pyproject.toml uv.lock
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

anvil/node_modules/.installed: anvil/package.json anvil/package-lock.json
	npm ci --prefix anvil --ignore-scripts --no-audit --no-fund
	@touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict agent strategies

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/defi-agent demo

bench: setup
	@for s in scripts/bench_*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done

clean:
	rm -rf $(VENV) anvil/node_modules .mypy_cache .ruff_cache .pytest_cache
