# defi-agent image. Build: docker build -t defi-agent .
# Run:   docker run --rm --env-file .env -v $PWD/agent.toml:/app/agent.toml:ro \
#          -v $PWD/keys:/app/keys:ro -v defi-agent-data:/app/data defi-agent run --config agent.toml
# The devnet toolchain (Anvil, Uniswap artifacts) is included, so `demo` and `dry-run` work too.
FROM python:3.11-slim-bookworm

ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm make \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir uv

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY anvil/package.json anvil/package-lock.json anvil/
RUN npm ci --prefix anvil --ignore-scripts --no-audit --no-fund
# The console's chart library, served by the agent (no CDN).
COPY console/package.json console/package-lock.json console/
RUN npm ci --prefix console --ignore-scripts --no-audit --no-fund
COPY agent agent
COPY strategies strategies
COPY abis abis
COPY contracts contracts
COPY scripts scripts
RUN mkdir -p agent/console/static/vendor \
 && cp console/node_modules/uplot/dist/uPlot.iife.min.js console/node_modules/uplot/dist/uPlot.min.css \
       agent/console/static/vendor/
RUN uv sync --frozen --no-dev --python python3

RUN useradd --system --uid 10001 --home /app agent && mkdir -p /app/data /app/keys \
 && chown -R agent /app/data /app/anvil
USER agent
# Metrics and /health bind to 127.0.0.1 by default; publish them deliberately if you need to.
ENTRYPOINT ["defi-agent"]
CMD ["--help"]
