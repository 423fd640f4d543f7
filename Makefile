# Two commands matter: `make demo` and `make test`. Both set everything up first.
# The machine's own Python is used; no tool may download an interpreter or a toolchain.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The console's chart library: pinned in console/package.json, copied where the agent serves it.
CONSOLE_VENDOR := agent/console/static/vendor

.PHONY: setup postgresql test lint demo bench clean browser

setup: $(VENV)/.synced anvil/node_modules/.installed postgresql \
	$(CONSOLE_VENDOR)/uPlot.iife.min.js browser

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

console/node_modules/.installed: console/package.json console/package-lock.json
	npm ci --prefix console --ignore-scripts --no-audit --no-fund
	@touch $@

$(CONSOLE_VENDOR)/uPlot.iife.min.js: console/node_modules/.installed
	mkdir -p $(CONSOLE_VENDOR)
	cp console/node_modules/uplot/dist/uPlot.iife.min.js console/node_modules/uplot/dist/uPlot.min.css $(CONSOLE_VENDOR)/

# The browser tests drive Debian's chromium (never a downloaded browser). Installed here when
# missing and we may (root with apt-get); otherwise a warning, and those tests fail loudly.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver \
	      || echo "warning: could not install chromium: the browser tests will fail"; \
	  else echo "warning: /usr/bin/chromium missing (apt-get install chromium as root): the browser tests will fail"; fi; \
	fi

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
	rm -rf $(VENV) anvil/node_modules console/node_modules $(CONSOLE_VENDOR) .mypy_cache .ruff_cache .pytest_cache
