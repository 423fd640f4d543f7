"""Alert fan-out: isolation, severity filters, the queue worker; event renderings; console."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import date

import aiohttp
import pytest
from rich.console import Console

from agent.alerts.base import (
    AgentStarted,
    AgentStopped,
    AlertEvent,
    DailySummary,
    FeedDown,
    FeedRecovered,
    Notifier,
    RiskHalt,
    Severity,
    StrategyError,
    TradeFilled,
    TradeReverted,
    TradeSent,
)
from agent.alerts.channels import build_channels, build_command_listener, telegram_api
from agent.alerts.console import ConsoleNotifier
from agent.alerts.fanout import AlertFanout, Channel
from agent.config.models import AlertsConfig
from agent.errors import TemporaryError
from agent.metrics.server import AgentMetrics
from agent.types import Token

WETH = Token("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "WETH", 18)
SECRET_URL = "https://hooks.example/api/webhooks/1/very-secret-token"


class InboxChannel:
    """A channel that keeps what it is sent: stands in for a working Telegram/Discord."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inbox: list[AlertEvent] = []
        self.closed = False

    async def send(self, event: AlertEvent) -> None:
        self.inbox.append(event)

    async def aclose(self) -> None:
        self.closed = True


class BrokenChannel:
    """A channel whose service is down; its error text carries a secret we must not log."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        self.attempts = 0

    async def send(self, event: AlertEvent) -> None:
        self.attempts += 1
        raise self.error

    async def aclose(self) -> None:
        raise RuntimeError(f"close failed for {SECRET_URL}")


class HangingChannel:
    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, event: AlertEvent) -> None:
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        pass


def halt() -> RiskHalt:
    return RiskHalt(reason="max_drawdown", detail="drawdown 11% > 10%")


def filled() -> TradeFilled:
    return TradeFilled(
        trade_id="t-1",
        strategy="arbitrage",
        route="WETH->USDC",
        tx_hash="0x" + "11" * 32,
        block_number=7,
        predicted_profit_usd=5.0,
        realised_profit_usd=4.5,
        gas_cost_usd=0.3,
    )


def test_channels_satisfy_the_notifier_protocol() -> None:
    assert isinstance(InboxChannel("x"), Notifier)
    assert isinstance(ConsoleNotifier(Console(file=io.StringIO())), Notifier)


async def test_a_failing_channel_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    telegram = BrokenChannel("telegram", RuntimeError(f"boom at {SECRET_URL}"))
    discord = InboxChannel("discord")
    console = InboxChannel("console")
    fanout = AlertFanout([Channel(telegram), Channel(discord), Channel(console)])

    await fanout.send(filled())  # must not raise

    assert [e.kind for e in discord.inbox] == ["trade_filled"]
    assert [e.kind for e in console.inbox] == ["trade_filled"]
    assert fanout.stats["telegram"].failed == 1
    assert fanout.stats["telegram"].last_error == "RuntimeError"
    assert fanout.stats["discord"].sent == 1
    failure_logs = [r.getMessage() for r in caplog.records if "failed to deliver" in r.getMessage()]
    assert failure_logs == ["alert channel telegram failed to deliver trade_filled: RuntimeError"]
    assert SECRET_URL not in caplog.text


async def test_our_own_errors_are_logged_with_their_message() -> None:
    broken = BrokenChannel("telegram", TemporaryError("telegram sendMessage: 502 Bad Gateway"))
    fanout = AlertFanout([Channel(broken)])

    await fanout.send(halt())

    expected = "TemporaryError: telegram sendMessage: 502 Bad Gateway"
    assert fanout.stats["telegram"].last_error == expected
    assert fanout.history[-1].outcome == "failed"


async def test_min_severity_per_channel() -> None:
    everything = InboxChannel("console")
    urgent_only = InboxChannel("telegram")
    fanout = AlertFanout([Channel(everything), Channel(urgent_only, min_severity=Severity.WARNING)])

    await fanout.send(filled())
    await fanout.send(halt())

    assert [e.kind for e in everything.inbox] == ["trade_filled", "risk_halt"]
    assert [e.kind for e in urgent_only.inbox] == ["risk_halt"]
    assert fanout.stats["telegram"].filtered == 1


async def test_a_hanging_channel_times_out_and_the_rest_deliver() -> None:
    stuck = HangingChannel("telegram")
    discord = InboxChannel("discord")
    fanout = AlertFanout([Channel(stuck), Channel(discord)], send_timeout_s=0.05)

    await fanout.send(halt())

    assert len(discord.inbox) == 1
    assert fanout.stats["telegram"].last_error == "timed out after 0.05s"


async def test_disabled_channels_are_skipped_and_names_must_be_unique() -> None:
    off = InboxChannel("discord")
    fanout = AlertFanout([Channel(off, enabled=False)])
    await fanout.send(halt())
    assert off.inbox == []
    assert fanout.channel_names == []
    with pytest.raises(ValueError, match="unique"):
        AlertFanout([Channel(InboxChannel("a")), Channel(InboxChannel("a"))])


async def test_queued_events_are_all_delivered_when_the_worker_stops() -> None:
    discord = InboxChannel("discord")
    fanout = AlertFanout([Channel(discord)])
    async with asyncio.TaskGroup() as group:
        worker = group.create_task(fanout.run())
        for index in range(5):
            assert fanout.post(FeedDown(source=f"feed-{index}", stale_for_s=30.0))
        fanout.stop()
        await worker

    assert [e.source for e in discord.inbox if isinstance(e, FeedDown)] == [
        f"feed-{index}" for index in range(5)
    ]
    assert fanout.post(halt()) is False  # after stop nothing is accepted silently
    assert fanout.dropped == 1


async def test_a_cancelled_worker_reports_what_it_did_not_deliver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fanout = AlertFanout([Channel(HangingChannel("telegram"))])
    worker = asyncio.create_task(fanout.run())
    for _ in range(3):
        fanout.post(halt())
    while fanout.queued > 2:  # the worker takes the first event and hangs on the channel
        await asyncio.sleep(0)

    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker

    assert "alert worker cancelled with 2 event(s) undelivered" in caplog.text


async def test_queue_full_drops_and_counts() -> None:
    fanout = AlertFanout([Channel(InboxChannel("discord"))], max_queued=2)

    results = [fanout.post(halt()) for _ in range(3)]

    assert results == [True, True, False]
    assert fanout.dropped == 1
    assert fanout.queued == 2


async def test_deliveries_feed_the_metrics_and_the_status_lines() -> None:
    metrics = AgentMetrics()
    fanout = AlertFanout(
        [
            Channel(InboxChannel("discord")),
            Channel(BrokenChannel("telegram", RuntimeError("x"))),
        ],
        on_delivery=lambda record: metrics.record_alert_delivery(record.channel, record.outcome),
    )

    await fanout.send(halt())

    sample = metrics.registry.get_sample_value
    assert sample("defi_agent_alerts_total", {"channel": "discord", "outcome": "sent"}) == 1
    assert sample("defi_agent_alerts_total", {"channel": "telegram", "outcome": "failed"}) == 1
    lines = fanout.status_lines()
    assert "discord: sent 1, failed 0, filtered 0" in lines
    assert "telegram: sent 0, failed 1, filtered 0 (last error: RuntimeError)" in lines
    assert any(line.endswith("discord sent: Trading halted: max_drawdown") for line in lines)


async def test_closing_closes_every_channel_even_if_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = InboxChannel("discord")
    fanout = AlertFanout([Channel(BrokenChannel("telegram", RuntimeError())), Channel(good)])

    await fanout.aclose()

    assert good.closed is True
    assert SECRET_URL not in caplog.text


def test_every_event_renders_as_text_and_card() -> None:
    events: list[AlertEvent] = [
        AgentStarted(mode="fork", chain_id=31337, strategies=("arbitrage", "grid")),
        AgentStopped(reason="SIGTERM"),
        TradeSent(
            trade_id="t-9",
            strategy="arbitrage",
            route="WETH->USDC->WETH",
            tx_hash="0x" + "22" * 32,
            token_in=WETH,
            amount_in_wei=1_500_000_000_000_000_000,
            predicted_profit_usd=7.25,
        ),
        filled(),
        TradeReverted(trade_id="t-2", strategy="cex_dex", route="USDC->WETH", reason="STF"),
        halt(),
        FeedDown(source="binance", stale_for_s=95.0, error_class="TimeoutError"),
        FeedRecovered(source="binance", down_for_s=600.0),
        StrategyError(strategy="grid", error_class="ZeroDivisionError", occurrences=3),
        DailySummary(
            day=date(2026, 1, 2), pnl_usd=-3.5, trades=4, equity_usd=9_996.5, drawdown_ratio=0.01
        ),
    ]
    texts = {event.kind: event.render_text() for event in events}

    assert texts["trade_sent"].splitlines()[0] == "[info] Trade sent: WETH->USDC->WETH"
    assert "size: 1.5 WETH" in texts["trade_sent"]
    assert "realised +4.50 USD vs predicted +5.00 USD" in texts["trade_filled"]
    assert texts["trade_reverted"].splitlines()[:2] == [
        "[warning] Trade reverted: USDC->WETH",
        "STF",
    ]
    assert texts["risk_halt"].startswith("[critical] Trading halted: max_drawdown")
    assert "stale for: 95s" in texts["feed_down"]
    assert "was down for: 10.0min" in texts["feed_recovered"]
    assert "error: ZeroDivisionError" in texts["strategy_error"]
    assert "pnl: -3.50 USD" in texts["daily_summary"]
    assert "equity: 9,996.50 USD" in texts["daily_summary"]
    assert len(texts) == len(events)  # every kind is distinct
    for event in events:
        card = event.render_card()
        assert card.title == event.title() and card.severity == event.severity


async def test_console_prints_a_panel_without_interpreting_markup() -> None:
    buffer = io.StringIO()
    console = ConsoleNotifier(Console(file=buffer, width=100, color_system=None))

    await console.send(RiskHalt(reason="[bold]max_drawdown[/bold]", detail="equity fell"))

    printed = buffer.getvalue()
    assert "Trading halted: [bold]max_drawdown[/bold]" in printed
    assert "equity fell" in printed
    assert "critical" in printed


async def test_channels_and_listener_are_built_from_config() -> None:
    config = AlertsConfig.model_validate(
        {
            "min_level": "warning",
            "telegram": {"enabled": True, "bot_token": "1:tok", "chat_id": 5},
            "discord": {"enabled": True, "webhook_url": "https://discord.example/api/webhooks/1/x"},
        }
    )
    async with aiohttp.ClientSession() as session:
        api = telegram_api(config.telegram, session)
        channels = build_channels(config, session, Console(file=io.StringIO()), telegram=api)
        listener = build_command_listener(config.telegram, api, control=_NoControl())

    assert [c.notifier.name for c in channels] == ["console", "telegram", "discord"]
    assert {c.min_severity for c in channels} == {Severity.WARNING}
    # No explicit allowlist: only the alert chat may command the agent.
    assert listener is not None and listener.allowed_chat_ids == frozenset({5})
    off = AlertsConfig.model_validate({"telegram": {"enabled": False}})
    assert build_command_listener(off.telegram, api, control=_NoControl()) is None


class _NoControl:
    async def pause(self, reason: str) -> None: ...
    async def resume(self) -> None: ...
    async def kill(self) -> None: ...
    async def status_text(self) -> str:
        return ""

    async def balance_text(self) -> str:
        return ""

    async def pnl_text(self) -> str:
        return ""
