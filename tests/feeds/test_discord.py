"""Discord webhook channel against a local fake webhook, and both channels through the fan-out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from agent.alerts.base import AlertCard, RiskHalt, Severity, TradeFilled
from agent.alerts.discord import SEVERITY_COLOR, DiscordWebhookNotifier, build_embed
from agent.alerts.fanout import AlertFanout, Channel
from agent.alerts.telegram import TelegramBotApi, TelegramNotifier
from agent.errors import AlertDeliveryError, TemporaryError
from agent.metrics.server import AgentMetrics, HealthReport, MetricsServer
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.telegram_fake import TelegramFake

BOT_TOKEN = "7000000002:AAF-another_fake-Token-kL3mN8pQ2rS6tV9w"
OPERATOR_CHAT = 424242
NASTY = "_*[]()~`>#+-=|{}.!\\ <b>x</b> & @everyone @here <@&123> **bold** ||spoiler||"


@pytest.fixture
async def webhook() -> AsyncIterator[DiscordWebhookFake]:
    async with DiscordWebhookFake() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_notifier(
    session: aiohttp.ClientSession, url: str, max_attempts: int = 4
) -> DiscordWebhookNotifier:
    return DiscordWebhookNotifier(session, url, base_backoff_s=0.01, max_attempts=max_attempts)


def filled_event() -> TradeFilled:
    return TradeFilled(
        trade_id="t-7",
        strategy="arbitrage",
        route="WETH->USDC uniswap_v2 -> sushiswap",
        tx_hash="0x" + "cd" * 32,
        block_number=99,
        predicted_profit_usd=20.0,
        realised_profit_usd=21.5,
        gas_cost_usd=0.8,
        at=1_750_000_000.0,
    )


async def test_trade_alert_arrives_as_an_embed(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession
) -> None:
    await make_notifier(session, webhook.webhook_url).send(filled_event())

    [body] = webhook.delivered
    [embed] = body["embeds"]
    assert embed["title"] == "Trade filled: WETH->USDC uniswap_v2 -> sushiswap"
    assert embed["description"] == "realised +21.50 USD vs predicted +20.00 USD"
    assert embed["color"] == SEVERITY_COLOR[Severity.INFO]
    assert embed["timestamp"] == "2025-06-15T15:06:40+00:00"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["predicted"] == "+20.00 USD"
    assert fields["realised"] == "+21.50 USD"
    assert fields["block"] == "99"
    assert body["allowed_mentions"] == {"parse": []}
    assert webhook.requests[0].query == {"wait": "true"}


async def test_nasty_text_arrives_verbatim_and_pings_nobody(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession
) -> None:
    await make_notifier(session, webhook.webhook_url).send(RiskHalt(reason=NASTY, detail=NASTY))

    [body] = webhook.delivered
    [embed] = body["embeds"]
    assert embed["title"] == f"Trading halted: {NASTY}"
    assert embed["description"] == NASTY
    assert embed["color"] == SEVERITY_COLOR[Severity.CRITICAL]
    assert body["allowed_mentions"] == {"parse": []}  # @everyone in the text pings no one


async def test_oversized_content_is_cut_to_discords_limits(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession
) -> None:
    notifier = make_notifier(session, webhook.webhook_url)
    card = AlertCard(
        title="T" * 400,
        summary="S" * 9000,
        fields=tuple((f"name {i} " * 40, "v" * 3000) for i in range(30)),
        severity=Severity.WARNING,
        kind="test",
        at=1_750_000_000.0,
    )

    await notifier.post({"embeds": [build_embed(card)]})
    await notifier.send_text("x" * 5000)

    embed_body, text_body = webhook.delivered  # the fake answers 400 to anything over a limit
    [embed] = embed_body["embeds"]
    assert len(embed["title"]) == 256 and embed["title"].endswith("…")
    assert len(text_body["content"]) == 2000


async def test_429_waits_for_retry_after_then_delivers(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession
) -> None:
    webhook.fail_next(429, retry_after_s=0.6)

    await make_notifier(session, webhook.webhook_url).send(filled_event())

    limited, delivered = webhook.requests
    assert (limited.status, delivered.status) == (429, 200)
    # retry_after was 0.6 s (body and X-RateLimit-Reset-After); the retry comes after it.
    assert delivered.at - limited.at >= 0.6 - 0.01
    assert len(webhook.delivered) == 1


async def test_server_errors_are_retried(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession
) -> None:
    webhook.fail_next(500)
    webhook.fail_next(500)

    await make_notifier(session, webhook.webhook_url).send(filled_event())

    assert [r.status for r in webhook.requests] == [500, 500, 200]


async def test_unknown_webhook_fails_at_once_without_the_url(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_url = webhook.webhook_url.replace(webhook.webhook_token, "revoked-token-abc123")

    with pytest.raises(AlertDeliveryError) as caught:
        await make_notifier(session, wrong_url).send(filled_event())

    assert len(webhook.requests) == 1  # a 404 is not retried
    assert "404" in str(caught.value) and "Unknown Webhook" in str(caught.value)
    assert "revoked-token-abc123" not in str(caught.value)
    assert "revoked-token-abc123" not in caplog.text


async def test_webhook_url_never_appears_in_logs_or_errors(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_token = "Zx81-secret-webhook-token_9f8e7d6c5b4a"
    refused_url = f"http://127.0.0.1:9/api/webhooks/1234/{secret_token}"
    invalid_url = f"http://[::1/api/webhooks/1234/{secret_token}"
    errors: list[BaseException] = []

    with pytest.raises(TemporaryError) as refused:
        await make_notifier(session, refused_url, max_attempts=2).send(filled_event())
    errors.append(refused.value)
    with pytest.raises(AlertDeliveryError) as invalid:
        await make_notifier(session, invalid_url).send(filled_event())
    errors.append(invalid.value)

    for error in errors:
        assert secret_token not in str(error) and secret_token not in repr(error)
        assert error.__context__ is None and error.__cause__ is None
    assert "invalid URL" in str(errors[1])
    assert secret_token not in caplog.text
    assert secret_token not in repr(make_notifier(session, refused_url))


async def test_trade_alert_reaches_both_channels_and_a_failing_one_does_not_block_the_other(
    webhook: DiscordWebhookFake, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with TelegramFake(BOT_TOKEN) as telegram:
        api = TelegramBotApi(
            session, BOT_TOKEN, base_url=telegram.base_url, base_backoff_s=0.01, max_attempts=2
        )
        metrics = AgentMetrics()
        fanout = AlertFanout(
            [
                Channel(TelegramNotifier(api, [OPERATOR_CHAT])),
                Channel(make_notifier(session, webhook.webhook_url)),
            ],
            on_delivery=lambda r: metrics.record_alert_delivery(r.channel, r.outcome),
        )

        await fanout.send(filled_event())
        telegram.fail_next("sendMessage", 500, 500)  # Telegram down for the next alert
        await fanout.send(RiskHalt(reason="max_drawdown", detail="drawdown 12% > 10%"))

    [telegram_message] = telegram.messages_to(OPERATOR_CHAT)
    assert "Trade filled: WETH->USDC uniswap_v2 -> sushiswap" in telegram_message.visible_text
    assert "realised +21.50 USD vs predicted +20.00 USD" in telegram_message.visible_text
    titles = [body["embeds"][0]["title"] for body in webhook.delivered]
    assert titles == [
        "Trade filled: WETH->USDC uniswap_v2 -> sushiswap",
        "Trading halted: max_drawdown",
    ]
    assert fanout.stats["telegram"].sent == 1 and fanout.stats["telegram"].failed == 1
    assert fanout.stats["discord"].sent == 2
    assert BOT_TOKEN not in caplog.text
    assert webhook.webhook_token not in caplog.text
    assert all(BOT_TOKEN not in line for line in fanout.status_lines())
    server = MetricsServer(metrics, HealthReport, port=0)
    await server.start()
    try:
        async with session.get(f"{server.url}/metrics") as response:
            metrics_page = await response.text()
    finally:
        await server.stop()
    assert 'defi_agent_alerts_total{channel="telegram",outcome="failed"} 1.0' in metrics_page
    assert BOT_TOKEN not in metrics_page
    assert webhook.webhook_token not in metrics_page
