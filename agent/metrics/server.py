"""Prometheus metrics on a per-agent registry, and the /metrics + /health HTTP server.

Each ``AgentMetrics`` owns its own ``CollectorRegistry`` (never prometheus-client's global
default), so two agents or two tests never share counters. Labels are bounded and secret-free:
RPC endpoints are reduced to their host (``agent.redaction.redact_endpoint``), channels
and feeds to names.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from agent.errors import ConfigError
from agent.events import (
    HEAD_SOURCE,
    Event,
    EventBus,
    FeedFresh,
    FeedsChecked,
    FeedStale,
    HeadRefused,
    HeadResumed,
    HeadSeen,
    HeadStalled,
    PoolsDrifted,
    PoolsLoading,
    PoolsSkipped,
    PriceOutlier,
    PriceOutlierCleared,
    Tick,
    TradeSent,
)
from agent.redaction import redact_endpoint
from agent.types import Reading

logger = logging.getLogger(__name__)

NAMESPACE = "defi_agent"
# Tick latency from block seen to decisions made: the target is tens of milliseconds.
TICK_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RPC_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AgentMetrics:
    """All of the agent's metrics, registered on a registry this object creates.

    Units: seconds for latencies and staleness, USD for PnL and equity, a 0..1 ratio for
    drawdown.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.ticks = Counter(
            "ticks", "Blocks processed by the tick loop", namespace=NAMESPACE, registry=registry
        )
        self.tick_latency = Histogram(
            "tick_latency_seconds",
            "Block seen to decisions made, excluding RPC round trips",
            namespace=NAMESPACE,
            buckets=TICK_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.rpc_requests = Counter(
            "rpc_requests",
            "JSON-RPC requests by endpoint host, method and outcome",
            ["endpoint", "method", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.rpc_latency = Histogram(
            "rpc_request_seconds",
            "JSON-RPC round trip time by endpoint host",
            ["endpoint"],
            namespace=NAMESPACE,
            buckets=RPC_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.opportunities = Counter(
            "opportunities",
            "Opportunities found, per strategy",
            ["strategy"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.trades = Counter(
            "trades",
            "Trades by final or intermediate status (sent, filled, reverted, failed)",
            ["status"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.risk_rejections = Counter(
            "risk_rejections",
            "Opportunities refused by the risk gate, per reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.realised_pnl_usd = Gauge(
            "realised_pnl_usd",
            "Realised profit and loss since start, USD, net of gas",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.equity_usd = Gauge(
            "equity_usd", "Portfolio equity, USD", namespace=NAMESPACE, registry=registry
        )
        self.drawdown_ratio = Gauge(
            "drawdown_ratio",
            "Drawdown from the equity peak, 0..1",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.feed_staleness = Gauge(
            "feed_staleness_seconds",
            "Age of the latest good reading, per feed source",
            ["source"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.strategy_errors = Counter(
            "strategy_errors",
            "Strategy evaluations that raised or timed out",
            ["strategy", "error_class"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.alerts = Counter(
            "alerts",
            "Alert deliveries per channel and outcome",
            ["channel", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.trading_halted = Gauge(
            "trading_halted",
            "1 while trading is halted or paused",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.head_block = Gauge(
            "head_block",
            "Latest chain head seen by the block source",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.head_stalled = Gauge(
            "head_stalled",
            "1 while the chain head has not advanced for a few block times",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.heads_skipped = Counter(
            "heads_skipped",
            "Chain heads the engine never worked on: a newer head was there when it was ready",
            namespace=NAMESPACE,
            registry=registry,
        )
        # The lag gauges are computed when scraped, from the newest head seen and the block of
        # the engine's latest tick: a stuck engine shows a growing lag, not its last good one.
        self.lag = HeadLag()
        self.head_lag_blocks = Gauge(
            "head_lag_blocks",
            "Chain head seen minus the block of the engine's latest tick",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.head_lag_blocks.set_function(self.lag.blocks)
        self.head_lag_seconds = Gauge(
            "head_lag_seconds",
            "Now minus the timestamp of the block of the engine's latest tick (seconds; "
            "negative while the chain's clock runs ahead of ours)",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.head_lag_seconds.set_function(self.lag.seconds)
        self.heads_refused = Counter(
            "heads_refused",
            "Implausible chain heads refused, by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.pool_drift = Counter(
            "pool_drift",
            "Pools whose event-advanced state differed from the chain at the spot check",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.pools_loaded = Gauge(
            "pools_loaded",
            "Pools with a state (the background first load has read them)",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.pools_loading = Gauge(
            "pools_loading",
            "Pools the background first load has not loaded yet",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.pools_skipped = Gauge(
            "pools_skipped_low_liquidity",
            "Discovered pools not watched: under market.min_liquidity_usd",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.price_outliers = Gauge(
            "price_outlier_pools",
            "Pools whose price is ignored for USD valuation as an outlier",
            namespace=NAMESPACE,
            registry=registry,
        )

    # Recording helpers keep label spelling in one place.

    def record_tick(self, latency_s: float) -> None:
        """One processed block; ``latency_s`` from block seen to decisions made (seconds)."""
        self.ticks.inc()
        self.tick_latency.observe(latency_s)

    def record_rpc_request(
        self, endpoint_url: str, method: str, *, ok: bool, latency_s: float | None = None
    ) -> None:
        """One JSON-RPC call; ``endpoint_url`` may hold a key, only its host is kept."""
        endpoint = redact_endpoint(endpoint_url)
        self.rpc_requests.labels(endpoint, method, "ok" if ok else "error").inc()
        if latency_s is not None:
            self.rpc_latency.labels(endpoint).observe(latency_s)

    def record_opportunities(self, strategy: str, count: int) -> None:
        self.opportunities.labels(strategy).inc(count)

    def record_trade(self, status: str) -> None:
        self.trades.labels(status).inc()

    def record_risk_rejection(self, reason: str) -> None:
        self.risk_rejections.labels(reason).inc()

    def add_realised_pnl(self, pnl_usd: float) -> None:
        """Add one settled trade's realised PnL (USD, may be negative)."""
        self.realised_pnl_usd.inc(pnl_usd)

    def set_portfolio(self, equity_usd: float, drawdown_ratio: float) -> None:
        self.equity_usd.set(equity_usd)
        self.drawdown_ratio.set(drawdown_ratio)

    def set_feed_staleness(self, source: str, age_s: float) -> None:
        self.feed_staleness.labels(source).set(age_s)

    def observe_readings(self, readings: Iterable[Reading[Any]], now: float | None = None) -> None:
        """Staleness gauges from feed readings (``now`` is ``time.time()`` seconds)."""
        now = time.time() if now is None else now
        for reading in readings:
            self.set_feed_staleness(reading.source, max(0.0, reading.age_s(now)))

    def record_strategy_error(self, strategy: str, error_class: str) -> None:
        self.strategy_errors.labels(strategy, error_class).inc()

    def record_alert_delivery(self, channel: str, outcome: str) -> None:
        self.alerts.labels(channel, outcome).inc()

    def set_halted(self, halted: bool) -> None:
        self.trading_halted.set(1 if halted else 0)

    def subscribe(self, events: EventBus) -> None:
        """Keep the gauges and counters that events drive up to date."""
        events.subscribe(self._on_event, name="metrics")

    def _on_event(self, event: Event) -> None:
        self.lag.observe(event)
        if isinstance(event, FeedsChecked):
            for source, age_s in event.ages_s:
                self.set_feed_staleness(source, age_s)
        elif isinstance(event, Tick):
            self.heads_skipped.inc(event.heads_skipped)
        elif isinstance(event, HeadSeen):
            self.head_block.set(event.number)
        elif isinstance(event, HeadStalled):
            self.head_stalled.set(1)
        elif isinstance(event, HeadResumed):
            self.head_stalled.set(0)
        elif isinstance(event, TradeSent):
            self.record_trade("sent")
        elif isinstance(event, HeadRefused):
            self.heads_refused.labels(reason=event.reason).inc()
        elif isinstance(event, PriceOutlier):
            self.price_outliers.inc()
        elif isinstance(event, PriceOutlierCleared):
            self.price_outliers.dec()
        elif isinstance(event, PoolsDrifted):
            self.pool_drift.inc(len(event.pools))
        elif isinstance(event, PoolsLoading):
            self.pools_loaded.set(event.loaded)
            self.pools_loading.set(event.total - event.loaded)
        elif isinstance(event, PoolsSkipped):
            self.pools_skipped.set(event.skipped)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class HeadLag:
    """How far behind the chain the engine acts, from events: the newest head seen
    (``HeadSeen``) and the block and block timestamp of the latest tick (``Tick``).

    ``blocks()`` is the head minus that block; ``seconds()`` the time since that block's
    timestamp on ``clock`` (``time.time`` seconds), negative when the chain's clock runs ahead
    of ours. Both are 0 before the first tick.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.head: int | None = None
        self.block: int | None = None
        self.block_timestamp: float | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, HeadSeen):
            self.head = event.number
        elif isinstance(event, Tick):
            self.block, self.block_timestamp = event.block, event.block_timestamp

    def blocks(self) -> float:
        if self.block is None:
            return 0.0
        return float(max(0, (self.head or self.block) - self.block))

    def seconds(self) -> float:
        if self.block_timestamp is None:
            return 0.0
        return self._clock() - self.block_timestamp


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What /health reports. ``status`` is ``degraded`` while trading is halted or a required
    source is stale (``stale_feeds``: the chain head when it stopped advancing, required feeds);
    ``stale_optional`` are stale sources that do not degrade it. Ages are seconds."""

    halted: bool = False
    paused: bool = False
    stale_feeds: tuple[str, ...] = ()
    last_block: int | None = None
    last_tick_age_s: float | None = None
    details: dict[str, str] = field(default_factory=dict)
    last_head: int | None = None
    head_age_s: float | None = None
    stale_optional: tuple[str, ...] = ()
    stale_pools: int = 0
    loading_pools: int = 0  # not loaded yet by the background first load (not stale)
    head_lag_blocks: int = 0
    head_lag_s: float | None = None
    heads_skipped: int = 0

    @property
    def status(self) -> str:
        return "degraded" if self.halted or self.stale_feeds else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "halted": self.halted,
            "paused": self.paused,
            "stale_feeds": list(self.stale_feeds),
            "stale_optional": list(self.stale_optional),
            "stale_pools": self.stale_pools,
            "loading_pools": self.loading_pools,
            "last_block": self.last_block,
            "last_tick_age_s": _rounded(self.last_tick_age_s),
            "last_head": self.last_head,
            "head_age_s": _rounded(self.head_age_s),
            "head_lag_blocks": self.head_lag_blocks,
            "head_lag_s": _rounded(self.head_lag_s),
            "heads_skipped": self.heads_skipped,
            **({"details": self.details} if self.details else {}),
        }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


class HealthState:
    """What /health needs to know, kept up to date from events (a bus subscriber).

    Ages are measured on ``clock`` (``time.time`` seconds, the clock events are stamped with).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.last_head: int | None = None
        self.last_head_at: float | None = None
        self.head_stalled = False
        self.last_tick_block: int | None = None
        self.last_tick_at: float | None = None
        self.stale: dict[str, bool] = {}  # stale source -> required
        self.lag = HeadLag(clock)
        self.heads_skipped = 0

    def subscribe(self, events: EventBus) -> None:
        events.subscribe(self._on_event, name="health")

    def _on_event(self, event: Event) -> None:
        self.lag.observe(event)
        if isinstance(event, Tick):
            self.heads_skipped += event.heads_skipped
        if isinstance(event, HeadSeen):
            self.last_head, self.last_head_at = event.number, event.at
        elif isinstance(event, HeadStalled):
            self.head_stalled = True
        elif isinstance(event, HeadResumed):
            self.head_stalled = False
        elif isinstance(event, Tick):
            self.last_tick_block, self.last_tick_at = event.block, event.at
        elif isinstance(event, FeedStale):
            self.stale[event.source] = event.required
        elif isinstance(event, FeedFresh):
            self.stale.pop(event.source, None)

    def report(
        self,
        *,
        halted: bool = False,
        paused: bool = False,
        stale_pools: int = 0,
        loading_pools: int = 0,
    ) -> HealthReport:
        now = self._clock()
        tick_age_s = None if self.last_tick_at is None else max(0.0, now - self.last_tick_at)
        head_age_s = None if self.last_head_at is None else max(0.0, now - self.last_head_at)
        required = sorted(source for source, needed in self.stale.items() if needed)
        if self.head_stalled:
            required.insert(0, HEAD_SOURCE)
        return HealthReport(
            halted=halted,
            paused=paused,
            stale_feeds=tuple(required),
            stale_optional=tuple(sorted(s for s, needed in self.stale.items() if not needed)),
            stale_pools=stale_pools,
            loading_pools=loading_pools,
            last_block=self.last_tick_block,
            last_tick_age_s=tick_age_s,
            last_head=self.last_head,
            head_age_s=head_age_s,
            head_lag_blocks=int(self.lag.blocks()),
            head_lag_s=None if self.lag.block_timestamp is None else self.lag.seconds(),
            heads_skipped=self.heads_skipped,
        )


HealthProvider = Callable[[], HealthReport | Awaitable[HealthReport]]


class MetricsServer:
    """Serves ``/metrics`` and ``/health``; bound to 127.0.0.1 unless told otherwise.

    The caller owns the lifecycle: ``await start()`` then ``await stop()``. ``port=0`` picks a
    free port, readable from ``.port`` after ``start()``.
    """

    def __init__(
        self,
        metrics: AgentMetrics,
        health: HealthProvider,
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("metrics server is not started")
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/health", self._serve_health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"metrics.port: {self._host}:{self._requested_port} is already in use "
                    "(another agent running?); choose another port or set metrics.enabled = false"
                ) from None
            raise ConfigError(
                f"metrics.host/metrics.port: cannot listen on {self._host}:"
                f"{self._requested_port}: {exc.strerror or type(exc).__name__}"
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        logger.info("metrics and health on http://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.port = None

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _serve_health(self, request: web.Request) -> web.Response:
        try:
            produced = self._health()
            report = await produced if inspect.isawaitable(produced) else produced
        except Exception as exc:
            logger.warning("health provider failed: %s", type(exc).__name__)
            body = {"status": "error", "error": type(exc).__name__}
            return web.Response(text=json.dumps(body), status=500, content_type="application/json")
        return web.Response(text=json.dumps(report.to_json()), content_type="application/json")
