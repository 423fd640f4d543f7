"""Metrics: scraped over HTTP from a server on 127.0.0.1, values move, no secret leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from agent.events import Event, EventBus, PoolsDrifted, PoolsLoading, PoolsSkipped
from agent.metrics.server import AgentMetrics, HealthReport, MetricsServer
from agent.redaction import redact_endpoint
from agent.types import Reading

ALCHEMY_KEY = "Qk3vB9xLm2Rt7Yp1Zs8Wn4Hc6Jd0Fg5A"
RPC_URLS = {
    "path key": f"https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}",
    "query key": f"https://rpc.example.org/?apikey={ALCHEMY_KEY}",
    "user info": f"https://user:{ALCHEMY_KEY}@node.example.net:8545/",
    "subdomain key": f"https://{ALCHEMY_KEY.lower()}1.rpc.example.com/",
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def scrape(session: aiohttp.ClientSession, server: MetricsServer) -> dict[str, float]:
    """``name{label="v",...}`` -> value, from /metrics over HTTP."""
    async with session.get(f"{server.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def raw_metrics(session: aiohttp.ClientSession, server: MetricsServer) -> str:
    async with session.get(f"{server.url}/metrics") as response:
        return await response.text()


async def test_scraped_values_move_after_recording(session: aiohttp.ClientSession) -> None:
    metrics = AgentMetrics()
    server = MetricsServer(metrics, HealthReport, port=0)
    await server.start()
    try:
        before = await scrape(session, server)
        metrics.record_tick(0.02)
        metrics.record_tick(0.2)
        metrics.record_rpc_request(RPC_URLS["path key"], "eth_call", ok=True, latency_s=0.05)
        metrics.record_rpc_request(RPC_URLS["path key"], "eth_call", ok=False)
        metrics.record_opportunities("arbitrage", 3)
        metrics.record_trade("sent")
        metrics.record_trade("filled")
        metrics.record_risk_rejection("gas_price_cap")
        metrics.add_realised_pnl(12.5)
        metrics.add_realised_pnl(-2.0)
        metrics.set_portfolio(equity_usd=10_500.0, drawdown_ratio=0.04)
        metrics.observe_readings(
            [Reading(source="oneinch", value=1, fetched_at=1000.0, max_age_s=5.0)], now=1042.0
        )
        metrics.record_strategy_error("grid", "ZeroDivisionError")
        metrics.record_alert_delivery("telegram", "failed")
        metrics.set_halted(True)
        after = await scrape(session, server)
    finally:
        await server.stop()

    assert before["defi_agent_ticks_total"] == 0
    assert after["defi_agent_ticks_total"] == 2
    assert after["defi_agent_tick_latency_seconds_count"] == 2
    assert after['defi_agent_tick_latency_seconds_bucket{le="0.025"}'] == 1
    assert after['defi_agent_tick_latency_seconds_bucket{le="0.25"}'] == 2
    host = "eth-mainnet.g.alchemy.com"
    assert (
        after[f'defi_agent_rpc_requests_total{{endpoint="{host}",method="eth_call",outcome="ok"}}']
        == 1
    )
    assert (
        after[
            f'defi_agent_rpc_requests_total{{endpoint="{host}",method="eth_call",outcome="error"}}'
        ]
        == 1
    )
    assert after['defi_agent_opportunities_total{strategy="arbitrage"}'] == 3
    assert after['defi_agent_trades_total{status="filled"}'] == 1
    assert after['defi_agent_risk_rejections_total{reason="gas_price_cap"}'] == 1
    assert after["defi_agent_realised_pnl_usd"] == pytest.approx(10.5)
    assert after["defi_agent_equity_usd"] == 10_500.0
    assert after["defi_agent_drawdown_ratio"] == pytest.approx(0.04)
    assert after['defi_agent_feed_staleness_seconds{source="oneinch"}'] == 42.0
    assert (
        after['defi_agent_strategy_errors_total{error_class="ZeroDivisionError",strategy="grid"}']
        == 1
    )
    assert after['defi_agent_alerts_total{channel="telegram",outcome="failed"}'] == 1
    assert after["defi_agent_trading_halted"] == 1


async def test_rpc_api_keys_never_reach_the_metrics_page(session: aiohttp.ClientSession) -> None:
    metrics = AgentMetrics()
    for url in RPC_URLS.values():
        metrics.record_rpc_request(url, "eth_blockNumber", ok=True, latency_s=0.01)
    server = MetricsServer(metrics, HealthReport, port=0)
    await server.start()
    try:
        text = await raw_metrics(session, server)
    finally:
        await server.stop()

    assert ALCHEMY_KEY not in text
    assert ALCHEMY_KEY.lower() not in text
    assert 'endpoint="eth-mainnet.g.alchemy.com"' in text
    assert 'endpoint="node.example.net:8545"' in text


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (RPC_URLS["path key"], "eth-mainnet.g.alchemy.com"),
        (RPC_URLS["query key"], "rpc.example.org"),
        (RPC_URLS["user info"], "node.example.net:8545"),
        (RPC_URLS["subdomain key"], "*.rpc.example.com"),
        ("http://127.0.0.1:8545", "127.0.0.1:8545"),
        ("ws://[::1]:8546/ws", "[::1]:8546"),
        ("not a url", "unknown"),
    ],
)
def test_endpoint_label_is_host_only(url: str, label: str) -> None:
    assert redact_endpoint(url) == label


async def test_health_reports_ok_then_degraded(session: aiohttp.ClientSession) -> None:
    state = {"report": HealthReport(last_block=100, last_tick_age_s=1.5)}

    async def health() -> HealthReport:
        return state["report"]

    server = MetricsServer(AgentMetrics(), health, port=0)
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        async with session.get(f"{server.url}/health") as response:
            healthy = await response.json()
        state["report"] = HealthReport(halted=True, stale_feeds=("coingecko", "binance"))
        async with session.get(f"{server.url}/health") as response:
            degraded = await response.json()
    finally:
        await server.stop()

    assert healthy == {
        "status": "ok",
        "halted": False,
        "paused": False,
        "stale_feeds": [],
        "stale_optional": [],
        "stale_pools": 0,
        "loading_pools": 0,
        "last_block": 100,
        "last_tick_age_s": 1.5,
        "last_head": None,
        "head_age_s": None,
        "head_lag_blocks": 0,
        "head_lag_s": None,
        "heads_skipped": 0,
    }
    assert degraded["status"] == "degraded"
    assert degraded["halted"] is True
    assert degraded["stale_feeds"] == ["coingecko", "binance"]


async def test_health_provider_failure_is_a_500_not_a_crash(
    session: aiohttp.ClientSession,
) -> None:
    def broken() -> HealthReport:
        raise RuntimeError("db unavailable at postgres://user:pw@host")

    server = MetricsServer(AgentMetrics(), broken, port=0)
    await server.start()
    try:
        async with session.get(f"{server.url}/health") as response:
            status, body = response.status, await response.json()
    finally:
        await server.stop()

    assert status == 500
    assert body == {"status": "error", "error": "RuntimeError"}


def test_each_agent_has_its_own_registry() -> None:
    first, second = AgentMetrics(), AgentMetrics()
    first.record_tick(0.01)

    assert first.registry.get_sample_value("defi_agent_ticks_total") == 1
    assert second.registry.get_sample_value("defi_agent_ticks_total") == 0
    assert REGISTRY.get_sample_value("defi_agent_ticks_total") is None


async def scraped_after(session: aiohttp.ClientSession, *published: Event) -> dict[str, float]:
    """/metrics of a fresh agent's metrics after ``published`` went over its event bus."""
    events = EventBus()
    metrics = AgentMetrics()
    metrics.subscribe(events)
    server = MetricsServer(metrics, HealthReport, port=0)
    await server.start()
    try:
        for event in published:
            events.publish(event)
        await asyncio.sleep(0)
        return await scrape(session, server)
    finally:
        await server.stop()


async def test_pool_drift_is_counted_from_the_market_event(
    session: aiohttp.ClientSession,
) -> None:
    scraped = await scraped_after(
        session,
        PoolsDrifted(block=7, pools=("0x" + "11" * 20, "0x" + "22" * 20)),
        PoolsDrifted(block=9, pools=("0x" + "11" * 20,)),
    )
    assert scraped["defi_agent_pool_drift_total"] == 3


async def test_first_load_progress_and_skipped_pools_are_gauges(
    session: aiohttp.ClientSession,
) -> None:
    scraped = await scraped_after(
        session,
        PoolsLoading(loaded=4_210, total=10_000),
        PoolsSkipped(skipped=812, dropped=3, added=1, min_liquidity_usd=10_000),
    )
    assert scraped["defi_agent_pools_loaded"] == 4_210
    assert scraped["defi_agent_pools_loading"] == 5_790
    assert scraped["defi_agent_pools_skipped_low_liquidity"] == 812
