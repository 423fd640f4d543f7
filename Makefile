# Two commands matter: `make demo` and `make test`. Both set everything up first.
# The machine's own Python is used; no tool may download an interpreter or a toolchain.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup postgresql test lint demo bench clean

setup: $(VENV)/.synced anvil/node_modules/.installed postgresql

# The tests start a throwaway PostgreSQL server (tests/pg.py) from Debian's binaries. Install
# them where they are missing and we can (root with apt-get); otherwise say so and go on: the
# PostgreSQL tests will then fail naming what to install.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "$$DEFI_AGENT_PG_BIN" ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql (the PostgreSQL journal tests need its server binaries)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
			|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
				--no-install-recommends postgresql) \
			|| echo "warning: could not install postgresql; the PostgreSQL tests will fail"; \
	else \
		echo "warning: PostgreSQL server binaries missing and not root: run" \
			"'sudo apt-get install postgresql' (the PostgreSQL tests need them)"; \
	fi

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
