"""The event backbone: the bus isolates subscribers, and every watched transition (a head that
stops advancing, a feed going stale, a strategy failing) alerts once, not once per retry."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import events as ev
from agent.alerts import base as cards
from agent.alerts.subscriber import AlertSubscriber
from agent.app.logs import configure_logging, text_redactor
from agent.chain.blocks import HeadMonitor
from agent.config.models import LoggingConfig
from agent.errors import ConfigError
from agent.events.daily import DailyLedger
from agent.events.log import EventLog
from agent.feeds.watch import FeedWatch
from agent.metrics.server import AgentMetrics, HealthState, MetricsServer
from agent.types import Reading


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Posted:
    """An alert sink that keeps what it was given (the fan-out's ``post``)."""

    def __init__(self) -> None:
        self.cards: list[cards.AlertEvent] = []

    def post(self, event: cards.AlertEvent) -> bool:
        self.cards.append(event)
        return True

    def kinds(self) -> list[str]:
        return [c.kind for c in self.cards]


def wired() -> tuple[ev.EventBus, Posted]:
    bus = ev.EventBus()
    posted = Posted()
    AlertSubscriber(posted, {}).subscribe(bus)
    return bus, posted


# --- the bus ---------------------------------------------------------------------------------


def test_a_failing_subscriber_neither_reaches_the_publisher_nor_stops_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = ev.EventBus()
    seen: list[ev.Event] = []

    def broken(event: ev.Event) -> None:
        raise KeyError("bug in a subscriber")

    bus.subscribe(broken, name="broken")
    bus.subscribe(seen.append, name="recorder")
    for number in (1, 2, 3):
        bus.publish(ev.HeadSeen(number=number))  # must not raise

    assert [e.number for e in seen if isinstance(e, ev.HeadSeen)] == [1, 2, 3]
    assert bus.failures == {"broken": 3}
    # logged with its traceback, but not three times in a row
    failures = [r for r in caplog.records if "subscriber broken failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


def test_subscribers_get_only_the_kinds_they_asked_for_and_nested_events_in_order() -> None:
    bus = ev.EventBus()
    order: list[str] = []

    def on_tick(event: ev.Tick) -> None:
        order.append(f"tick {event.block}")
        bus.publish(ev.HeadSeen(number=event.block + 1))  # delivered after this tick
        order.append(f"tick {event.block} done")

    bus.subscribe(on_tick, ev.Tick)
    bus.subscribe(lambda e: order.append(f"head {e.number}"), ev.HeadSeen)
    bus.publish(ev.Tick(block=7, opportunities=0, approved=0, started=0))

    assert order == ["tick 7", "tick 7 done", "head 8"]


# --- the block source ------------------------------------------------------------------------


async def heads(*numbers: int) -> Any:
    for number in numbers:
        yield number


async def test_a_stalled_head_alerts_once_and_its_recovery_once() -> None:
    bus, posted = wired()
    clock = Clock()
    monitor = HeadMonitor(bus, stall_after_s=36.0, clock=clock)
    monitor.check()
    clock.now += 100
    monitor.check()
    assert posted.cards == [], "a block source never iterated is not watched"

    assert [n async for n in monitor.watch(heads(10, 11, 11))] == [10, 11, 11]
    for _ in range(50):  # the RPC is dead: checks keep coming, every poll keeps failing
        clock.now += 1.0
        monitor.source_failed(ConnectionResetError())
        monitor.check()
    assert posted.kinds() == ["feed_down"]
    [down] = posted.cards
    assert isinstance(down, cards.FeedDown)
    assert down.source == ev.HEAD_SOURCE and down.error_class == "ConnectionResetError"
    assert monitor.stalled

    monitor.saw(11)  # the same head again is no progress
    assert monitor.stalled
    monitor.saw(12)
    monitor.saw(13)
    clock.now += 1.0
    monitor.check()
    assert posted.kinds() == ["feed_down", "feed_recovered"]
    assert not monitor.stalled


def test_health_degrades_while_the_head_is_stalled_and_tick_age_grows() -> None:
    bus = ev.EventBus()
    clock = Clock()
    health = HealthState(clock=clock)
    health.subscribe(bus)
    assert health.report().status == "ok" and health.report().last_tick_age_s is None

    bus.publish(ev.HeadSeen(number=5, at=clock.now))
    bus.publish(ev.Tick(block=5, opportunities=0, approved=0, started=0, at=clock.now))
    clock.now += 2
    assert health.report().status == "ok"
    assert health.report().last_tick_age_s == pytest.approx(2.0)

    bus.publish(ev.HeadStalled(last_head=5, stalled_for_s=36.0))
    clock.now += 10
    stalled = health.report()
    assert stalled.status == "degraded"
    assert stalled.stale_feeds == (ev.HEAD_SOURCE,)
    assert stalled.last_head == 5 and stalled.last_tick_age_s == pytest.approx(12.0)

    bus.publish(ev.HeadResumed(number=6, stalled_for_s=48.0))
    assert health.report().status == "ok"
    bus.publish(ev.FeedStale(source="x", stale_for_s=1.0, required=False))
    assert health.report().status == "ok" and health.report().stale_optional == ("x",)
    bus.publish(ev.FeedStale(source="binance", stale_for_s=1.0, required=True))
    assert health.report().status == "degraded"
    bus.publish(ev.FeedFresh(source="binance", stale_for_s=5.0))
    assert health.report().status == "ok"


# --- feeds -----------------------------------------------------------------------------------


def test_a_feed_alerts_once_when_stale_and_once_when_fresh_and_sets_its_gauge() -> None:
    bus, posted = wired()
    metrics = AgentMetrics()
    metrics.subscribe(bus)
    clock = Clock()
    book: dict[str, Reading[float]] = {}

    def good(fetched_at: float) -> None:
        book["ETH/USDT"] = Reading("binance", 3000.0, fetched_at, max_age_s=10.0)

    watch = FeedWatch(bus, lambda: list(book.values()), clock=clock)
    good(clock.now)
    watch.check()
    # one failed fetch keeps the last good value, marked: not an outage yet
    book["ETH/USDT"] = Reading("binance", 3000.0, clock.now, 10.0, error="TemporaryError: 503")
    clock.now += 1
    watch.check()
    assert posted.cards == []
    for _ in range(30):  # every retry fails: the value ages past max_age_s
        clock.now += 1
        watch.check()
    assert posted.kinds() == ["feed_down"]
    gauge = metrics.registry.get_sample_value(
        "defi_agent_feed_staleness_seconds", {"source": "binance"}
    )
    assert gauge == pytest.approx(31.0)

    good(clock.now)
    watch.check()
    watch.check()
    assert posted.kinds() == ["feed_down", "feed_recovered"]


# --- engine events ---------------------------------------------------------------------------


def test_a_failing_strategy_alerts_when_it_starts_failing_not_on_every_block() -> None:
    bus, posted = wired()

    def block(number: int, failing: bool) -> None:
        if failing:
            bus.publish(ev.StrategyFailed(strategy="grid", error_class="KeyError", block=number))
        failed = ("grid",) if failing else ()
        bus.publish(
            ev.Tick(block=number, opportunities=0, approved=0, started=0, failed_strategies=failed)
        )

    for number in range(1, 6):
        block(number, failing=True)
    assert posted.kinds() == ["strategy_error"]
    block(6, failing=False)
    block(7, failing=True)
    assert posted.kinds() == ["strategy_error", "strategy_error"]


def test_a_new_utc_day_sends_one_daily_summary_of_the_day_before() -> None:
    bus, posted = wired()
    DailyLedger(bus).subscribe()
    day1 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC).timestamp()
    day2 = datetime(2026, 3, 2, 0, 1, tzinfo=UTC).timestamp()

    def tick(block: int, at: float) -> None:
        bus.publish(
            ev.Tick(block=block, opportunities=1, approved=1, started=1, equity_usd=1e4, at=at)
        )

    tick(1, day1)
    for profit in (12.5, -2.5):
        bus.publish(
            ev.TradeMined(
                trade_id="t",
                strategy="arbitrage",
                route="a -> b",
                tx_hash=None,
                block_number=1,
                predicted_profit_usd=10.0,
                realised_profit_usd=profit,
                gas_cost_usd=0.1,
                at=day1 + 60,
            )
        )
    tick(2, day2)
    tick(3, day2 + 60)

    summaries = [c for c in posted.cards if isinstance(c, cards.DailySummary)]
    assert len(summaries) == 1
    [summary] = summaries
    assert summary.day.isoformat() == "2026-03-01"
    assert summary.trades == 2 and summary.pnl_usd == pytest.approx(10.0)


def test_a_reorg_corrects_the_days_summary_and_alerts_what_became_of_the_fill() -> None:
    bus, posted = wired()
    DailyLedger(bus).subscribe()
    day1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    for trade_id, profit in (("moved", 12.5), ("void", 7.5)):
        bus.publish(
            ev.TradeMined(
                trade_id=trade_id,
                strategy="arbitrage",
                route="a -> b",
                tx_hash="0x" + "ab" * 32,
                block_number=10,
                predicted_profit_usd=10.0,
                realised_profit_usd=profit,
                gas_cost_usd=0.1,
                at=day1,
            )
        )
    reorged = {"strategy": "arbitrage", "tx_hash": "0x" + "ab" * 32, "old_block": 10}
    bus.publish(
        ev.TradeReorged(
            trade_id="moved",
            outcome="moved",
            new_block=11,
            realised_profit_usd_before=12.5,
            realised_profit_usd_after=11.0,
            detail="a reorg moved 0xabab… from block 10 to block 11",
            at=day1 + 1,
            **reorged,
        )
    )
    bus.publish(
        ev.TradeReorged(
            trade_id="void",
            outcome="reorged_out",
            new_block=None,
            realised_profit_usd_before=7.5,
            realised_profit_usd_after=0.0,
            detail="reorged out: block 10 was replaced",
            at=day1 + 2,
            **reorged,
        )
    )
    bus.publish(ev.Tick(block=12, opportunities=0, approved=0, started=0, at=day1 + 86_400))

    alerts = [c for c in posted.cards if isinstance(c, cards.TradeReorgedAlert)]
    assert [a.title() for a in alerts] == ["Fill moved by a reorg", "Fill reorged out (void)"]
    assert "reorged out: block 10 was replaced" in alerts[1].render_text()
    [summary] = [c for c in posted.cards if isinstance(c, cards.DailySummary)]
    assert summary.trades == 1 and summary.pnl_usd == pytest.approx(11.0)


def test_trade_events_become_the_alert_cards_operators_know() -> None:
    bus, posted = wired()
    common = {"trade_id": "arb-1", "strategy": "arbitrage", "route": "uniswap_v2 -> sushiswap"}
    bus.publish(ev.TradeFailed(reason="simulation reverted", **common))
    bus.publish(ev.TradeReverted(reason="INSUFFICIENT_OUTPUT_AMOUNT", tx_hash="0xab", **common))
    bus.publish(ev.Halt(reason="drawdown", detail="drawdown 12% > 10%"))
    assert posted.kinds() == ["trade_reverted", "trade_reverted", "risk_halt"]
    assert "simulation reverted" in posted.cards[0].render_text()


# --- the log ---------------------------------------------------------------------------------


def test_the_info_log_shows_refusal_reason_changes_and_a_throttled_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.events")
    bus = ev.EventBus()
    clock = Clock()
    EventLog(summary_every_s=60.0, clock=clock).subscribe(bus)
    for block in range(1, 11):  # ten blocks refusing for the same reason
        clock.now += 1
        bus.publish(
            ev.Tick(
                block=block,
                opportunities=1,
                approved=0,
                started=0,
                refusals=(("exposure_trade", 1),),
            )
        )
    bus.publish(ev.Tick(block=11, opportunities=1, approved=0, started=0, refusals=(("gas", 1),)))
    bus.publish(ev.ControlAction(who="telegram:42", action="pause", detail="maintenance"))
    lines = [r.getMessage() for r in caplog.records]

    changes = [line for line in lines if "refusal reasons now" in line]
    assert changes == [
        "block 1: refusal reasons now exposure_trade x1 (were none)",
        "block 11: refusal reasons now gas x1 (were exposure_trade)",
    ]
    assert len([line for line in lines if "since the last summary" in line]) == 1
    assert "control: pause by telegram:42 (maintenance)" in lines


def test_json_log_file_has_timestamps_and_no_secrets(tmp_path: Path) -> None:
    secret_url = "https://eth-mainnet.example/v2/abcDEF0123456789secretKEY"
    bot_token = "123456:AAbbCCddEEffGGhh"
    log_file = tmp_path / "logs" / "agent.log"
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        configure_logging(
            LoggingConfig(level="info", format="json", file=log_file),
            text_redactor([bot_token], [secret_url]),
        )
        log = logging.getLogger("agent.test")
        log.debug("not at info")
        log.info("rpc %s failed", secret_url)
        try:
            raise ValueError(f"bad token {bot_token}")
        except ValueError:
            log.exception("telegram failed")
        for handler in root.handlers:
            handler.flush()
        lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)

    assert [line["message"] for line in lines] == [
        "rpc https://eth-mainnet.example/********** failed",
        "telegram failed",
    ]
    assert all(datetime.fromisoformat(line["ts"]).tzinfo is not None for line in lines)
    assert "ValueError" in lines[1]["exc"]
    text = log_file.read_text()
    assert "secretKEY" not in text and bot_token not in text


async def test_a_busy_metrics_port_is_a_config_error_naming_the_key() -> None:
    first = MetricsServer(AgentMetrics(), lambda: HealthState().report(), port=0)
    await first.start()
    try:
        assert first.port is not None
        second = MetricsServer(AgentMetrics(), lambda: HealthState().report(), port=first.port)
        with pytest.raises(ConfigError, match=r"^metrics\.port: .* already in use"):
            await second.start()
    finally:
        await first.stop()


async def test_a_dead_rpc_is_logged_when_it_starts_not_on_every_poll(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    from agent.chain.rpc import RpcClient, poll_new_blocks

    caplog.set_level(logging.DEBUG, logger="agent.chain.rpc")
    with socket_closed() as dead_url:
        failures: list[BaseException] = []
        async with RpcClient([dead_url], max_attempts=1, timeout_s=2.0) as client:
            heads = poll_new_blocks(client, 0.001, on_error=failures.append)
            polling = asyncio.ensure_future(anext(aiter(heads)))
            async with asyncio.timeout(60):
                while len(failures) < 30:
                    await asyncio.sleep(0.01)
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            await heads.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # the endpoint's first failure, the poll's first failure
    assert "polling eth_blockNumber failed" in warnings[1]
    assert "repeats logged at most every 60s" in warnings[1]


@contextlib.contextmanager
def socket_closed() -> Iterator[str]:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield f"http://127.0.0.1:{port}/"


def test_the_log_redactor_knows_every_secret_of_the_config(tmp_path: Path) -> None:
    from agent.app.logs import redactor_for
    from agent.config.models import AgentConfig

    rpc_url = "https://eth-mainnet.example/v2/Zk3yQ9pLmN4rT7wX2cV5"
    bot_token = "987654:ZZyyXXwwVVuuTTss-secret"
    config = tmp_path / "agent.toml"
    config.write_text(
        "[chain]\n"
        'name = "ethereum"\n'
        "chain_id = 1\n"
        'rpc_urls = ["${RPC_URL}"]\n'
        "[alerts.telegram]\n"
        "enabled = true\n"
        'bot_token = "${TELEGRAM_BOT_TOKEN}"\n'
        "chat_id = 42\n"
    )
    cfg = AgentConfig.load(config, environ={"RPC_URL": rpc_url, "TELEGRAM_BOT_TOKEN": bot_token})
    redact = redactor_for(cfg)

    line = redact(f"POST {rpc_url} failed; bot{bot_token}/sendMessage answered 401")
    assert "Zk3yQ9pLmN4rT7wX2cV5" not in line and bot_token not in line
    assert "eth-mainnet.example" in line  # the host stays: operators need to know which node
