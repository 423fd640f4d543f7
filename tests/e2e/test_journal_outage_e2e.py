"""Failures that must cost one block or one trade, never the agent: the journal refusing writes
for a moment (SQLite locked by another connection), a CEX stream that cannot load its markets,
and a trade that raises something nobody planned for (a ``KeyError``)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine as SqlEngine

from agent.engine.loop import Executor
from agent.execution import ExecutionOutcome
from agent.store.models import IntentStatus
from agent.types import Intent
from tests.e2e.harness import Chain, running_agent, tree_for, wait_for, write_config
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.http_fakes import BinanceFake

# The store waits out a lock for up to 10 s (busy_timeout) before a write fails.
BUSY_TIMEOUT_S = 10.0


async def test_a_locked_journal_costs_one_block_not_the_pair(
    chain: Chain, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.engine.loop")
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=chain.arb_executor,
        tokens=chain.symbols,
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    async with running_agent(cfg) as agent:
        await agent.tick()
        # Another process (say a backup) holds the database's write lock through the next block.
        blocker = sqlite3.connect(workdir / "journal.db", timeout=0, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            gap = await chain.open_gap("sushiswap", usd=60_000.0)
            agent.replay(gap.block)  # hand it over without waiting for a report
            await wait_for(
                lambda: any(
                    f"tick at block {gap.block} failed: journal unavailable" in r.getMessage()
                    for r in caplog.records
                ),
                timeout_s=60,
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert agent.parts.engine.report.fills == []
        # A condition we can name is one line, never a traceback.
        assert not any("Traceback" in r.getMessage() for r in caplog.records)
        await asyncio.sleep(0)

        again = await chain.open_gap("uniswap_v2", usd=60_000.0)
        report = await agent.tick(again.block)
        assert report.started == 1, report
        (fill,) = agent.parts.engine.report.fills
        assert fill.profit == fill.predicted_profit > 0


@contextmanager
def journal_locked_when_an_intent_is_written(db_file: Path) -> Iterator[threading.Event]:
    """The first time the agent writes an intent row, another connection takes the database's
    write lock (as a backup or a second process would) and keeps it for longer than the
    store's busy timeout, so that write fails; the returned event is set once it let go."""
    blocker = sqlite3.connect(db_file, timeout=0, isolation_level=None, check_same_thread=False)
    released = threading.Event()
    locked = threading.Event()

    def release() -> None:
        blocker.execute("ROLLBACK")
        released.set()

    def before_execute(*args: Any) -> None:
        statement = str(args[2])
        if statement.startswith("INSERT INTO intents") and not locked.is_set():
            locked.set()
            blocker.execute("BEGIN EXCLUSIVE")
            threading.Timer(BUSY_TIMEOUT_S + 2.0, release).start()

    event.listen(SqlEngine, "before_cursor_execute", before_execute)
    try:
        yield released
    finally:
        event.remove(SqlEngine, "before_cursor_execute", before_execute)
        if locked.is_set():
            released.wait(BUSY_TIMEOUT_S + 5.0)
        blocker.close()


@pytest.fixture
async def binance_down() -> AsyncIterator[BinanceFake]:
    """A Binance whose exchangeInfo (what ``load_markets`` reads) answers 500, every time."""
    fake = BinanceFake()
    fake.add_market("ETH", "USDT", 3000.0)
    fake.add_market("BTC", "USDT", 60000.0)
    fake.server.fail("500", path="/api/v3/exchangeInfo", times=1_000_000)
    async with fake.server:
        yield fake


async def test_a_locked_journal_and_a_dead_cex_stream_cost_one_trade_not_the_agent(
    chain: Chain,
    workdir: Path,
    binance_down: BinanceFake,
    discord: DiscordWebhookFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.engine.loop")
    tree = chain.tree(workdir, discord_url=discord.webhook_url)
    tree["feeds"] = {
        "simulated": False,
        "cex": {
            "enabled": True,
            "exchanges": ["binance"],
            "symbols": ["ETH/USDT", "BTC/USDT"],
            "use_websocket": True,
            "api_urls": {"binance": binance_down.server.url},
        },
    }
    cfg = write_config(workdir / "agent.toml", tree, {"DISCORD_WEBHOOK_URL": discord.webhook_url})

    def alerts_titled(prefix: str) -> list[dict[str, Any]]:
        return [
            embed
            for body in discord.delivered
            for embed in body.get("embeds", [])
            if str(embed.get("title", "")).startswith(prefix)
        ]

    async with running_agent(cfg) as agent:
        weth = chain.deployment.tokens["WETH"].address
        # The CEX stream fails at load_markets (its retries spent, then its breaker open) and
        # is restarted with backoff, and reported.
        await wait_for(lambda: bool(alerts_titled("Source failed: cex:binance watch")), 60)
        restarts = lambda: sum(  # noqa: E731
            "cex:binance watch (restarting" in r.getMessage() for r in caplog.records
        )
        await wait_for(lambda: restarts() >= 2, timeout_s=30)
        report = await agent.tick()  # the agent ticks all the same
        snapshot = agent.parts.engine.last_snapshot
        assert snapshot is not None and snapshot.block == report.block
        cex_eth = snapshot.cex[weth]
        assert cex_eth.is_stale() and cex_eth.value is None
        assert cex_eth.error is not None and "cex:binance" in cex_eth.error
        # ... and reported stale where operators look: /health and a feed-down alert.
        await wait_for(lambda: bool(alerts_titled("Feed down: cex:binance")))
        health = agent.parts.health.report()
        assert health.status == "degraded" and "cex:binance" in health.stale_feeds

        with journal_locked_when_an_intent_is_written(workdir / "journal.db") as released:
            gap = await chain.open_gap("sushiswap", usd=60_000.0)
            agent.replay(gap.block)
            await wait_for(lambda: bool(agent.parts.engine.report.failures), timeout_s=90)
            assert released.is_set()  # the failure was journaled once the lock let go
        ((intent_id, reason),) = agent.parts.engine.report.failures
        assert "journal unavailable" in reason and "database is locked" in reason
        record = await agent.parts.journal.get_intent(intent_id)
        assert record.status == IntentStatus.FAILED
        assert record.status_detail == reason
        assert agent.parts.engine.report.fills == []
        await wait_for(lambda: any(intent_id in str(a) for a in alerts_titled("Trade reverted")))

        again = await chain.open_gap("uniswap_v2", usd=60_000.0)
        report = await agent.tick(again.block, timeout_s=60)
        assert report.started == 1, report
        (fill,) = agent.parts.engine.report.fills
        assert fill.profit == fill.predicted_profit > 0
        assert (await agent.parts.journal.get_intent(fill.intent_id)).status == "filled"

        # Still down, still restarted, reported once per outage (not once per restart).
        assert restarts() >= 3
        assert len(alerts_titled("Source failed: cex:binance watch")) == 1
        assert len(alerts_titled("Feed down: cex:binance")) == 1
        assert agent.task is not None and not agent.task.done()
    assert not any("Traceback" in r.getMessage() for r in caplog.records)


class KeyErrorOnFirstTrade:
    """An Executor (the engine's dependency) whose first trade hits a ``KeyError``, as a bug in
    one code path would (its key a secret URL, as a lookup by endpoint would have); later trades
    go to the real executor."""

    def __init__(self, real: Executor, missing_key: str) -> None:
        self.real = real
        self.missing_key = missing_key
        self.raised = 0

    async def execute(self, intent: Intent) -> ExecutionOutcome:
        if self.raised == 0:
            self.raised += 1
            routers_by_endpoint: dict[str, ExecutionOutcome] = {}
            return routers_by_endpoint[self.missing_key]
        return await self.real.execute(intent)


async def test_a_trade_that_raises_a_key_error_fails_alone(
    chain: Chain,
    workdir: Path,
    discord: DiscordWebhookFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.engine.loop")
    tree = chain.tree(workdir, discord_url=discord.webhook_url)
    cfg = write_config(workdir / "agent.toml", tree, {"DISCORD_WEBHOOK_URL": discord.webhook_url})
    async with running_agent(cfg) as agent:
        engine = agent.parts.engine
        crashing = KeyErrorOnFirstTrade(engine.executor, missing_key=discord.webhook_url)
        engine.executor = crashing

        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert report.started == 1 and crashing.raised == 1
        ((intent_id, reason),) = engine.report.failures
        assert reason.startswith("KeyError: ")
        record = await agent.parts.journal.get_intent(intent_id)
        assert (record.status, record.status_detail) == (IntentStatus.FAILED, reason)
        crash_logs = [r.getMessage() for r in caplog.records if intent_id in r.getMessage()]
        assert any("crashed" in m and "Traceback" in m and "KeyError" in m for m in crash_logs)
        failed_trades = agent.parts.metrics.registry.get_sample_value(
            "defi_agent_trades_total", {"status": "failed"}
        )
        assert failed_trades == 1

        again = await chain.open_gap("uniswap_v2", usd=60_000.0)
        report = await agent.tick(again.block)
        assert report.started == 1, report
        (fill,) = engine.report.fills
        assert fill.profit == fill.predicted_profit > 0
    # The webhook's token never reached the log, the journal or an alert.
    assert discord.webhook_token not in reason
    assert not any(discord.webhook_token in r.getMessage() for r in caplog.records)
    assert discord.webhook_token not in str(discord.delivered)
