"""Webhook authentication: the HMAC header, the TradingView passphrase, the timestamp window,
nonces and the rate limit (the clock is a test clock: no waiting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.config.models import AgentConfig, WebhookConfig
from agent.console.webhook_auth import (
    WebhookReceiver,
    sign_body,
    tradingview_passphrase,
)
from agent.errors import ConfigError, WebhookRefused

SECRET = "a-webhook-secret-of-some-length"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def receiver(clock: Clock, **settings: object) -> WebhookReceiver:
    common = {"secret": SecretStr(SECRET), "tokens": ["WETH"], "max_notional_usd": 1_000.0}
    return WebhookReceiver(
        {
            "bot": WebhookConfig.model_validate({**common, "format": "json", **settings}),
            "tv": WebhookConfig.model_validate({**common, "format": "tradingview", **settings}),
        },
        clock=clock,
    )


def body(nonce: str = "nonce-0001", **fields: object) -> bytes:
    return json.dumps(
        {"action": "buy", "token": "WETH", "amount_usd": 250, "nonce": nonce, **fields}
    ).encode()


def test_a_signed_body_is_accepted_and_any_change_or_other_secret_is_refused() -> None:
    clock = Clock()
    webhooks = receiver(clock)
    signed = body()
    header = sign_body(SECRET, int(NOW), signed)
    accepted = webhooks.authenticate("bot", header, signed)
    assert accepted.message is not None and accepted.message.amount_usd == 250
    webhooks.check_fresh(accepted)
    v1 = header.partition(",v1=")[2]
    for presented_header, presented_body in (
        (header, body(amount_usd=2_500)),  # the body changed after signing
        (sign_body("another-secret-entirely", int(NOW), signed), signed),
        (f"t={int(NOW) + 30},v1={v1}", signed),  # a newer time on an old signature
        (None, signed),
        ("v1=deadbeef", signed),
    ):
        with pytest.raises(WebhookRefused) as refused:
            webhooks.authenticate("bot", presented_header, presented_body)
        assert refused.value.status == 401


def test_a_tradingview_alert_proves_the_secret_by_its_derived_passphrase() -> None:
    clock = Clock()
    webhooks = receiver(clock)
    passphrase = tradingview_passphrase(SECRET, "tv")
    assert SECRET not in passphrase
    alert = body(passphrase=passphrase, timestamp="2027-01-15T08:00:00Z", ticker="ETHUSD")
    clock.now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    accepted = webhooks.authenticate("tv", None, alert)
    assert accepted.timestamp == clock.now and accepted.message is not None
    webhooks.check_fresh(accepted)
    # The passphrase of another webhook (or a guess) proves nothing.
    for wrong in (tradingview_passphrase(SECRET, "bot"), "0" * 64, None):
        with pytest.raises(WebhookRefused) as refused:
            webhooks.authenticate("tv", None, body(passphrase=wrong, timestamp=NOW))
        assert refused.value.status == 401


def test_stale_or_future_timestamps_and_replayed_nonces_are_refused() -> None:
    clock = Clock()
    webhooks = receiver(clock, max_age_s=60)
    for sent_at in (NOW - 61, NOW + 61):
        stale = webhooks.authenticate("bot", sign_body(SECRET, int(sent_at), body()), body())
        with pytest.raises(WebhookRefused) as refused:
            webhooks.check_fresh(stale)
        assert refused.value.status == 401
    first = webhooks.authenticate("bot", sign_body(SECRET, int(NOW), body()), body())
    webhooks.check_fresh(first)  # the stale ones did not use up the nonce
    clock.now += 5
    again = webhooks.authenticate("bot", sign_body(SECRET, int(clock.now), body()), body())
    with pytest.raises(WebhookRefused) as refused:
        webhooks.check_fresh(again)
    assert refused.value.status == 409
    # Nonces are per webhook.
    tv = body(passphrase=tradingview_passphrase(SECRET, "tv"), timestamp=clock.now)
    webhooks.check_fresh(webhooks.authenticate("tv", None, tv))


def test_the_rate_limit_counts_a_minute_per_webhook() -> None:
    clock = Clock()
    webhooks = receiver(clock, max_per_minute=2)
    assert [webhooks.within_rate("bot") for _ in range(3)] == [True, True, False]
    assert webhooks.within_rate("tv")
    clock.now += 60
    assert webhooks.within_rate("bot")


def test_an_authentic_body_that_is_not_a_signal_says_why() -> None:
    clock = Clock()
    webhooks = receiver(clock)
    both = body(amount="0.1")  # amount and amount_usd
    signal = webhooks.authenticate("bot", sign_body(SECRET, int(NOW), both), both)
    assert signal.message is None
    assert "exactly one of 'amount'" in signal.problem
    too_big = body(nonce="nonce-0002", amount_usd=5_000)
    big = webhooks.authenticate("bot", sign_body(SECRET, int(NOW), too_big), too_big).message
    assert big is not None
    with pytest.raises(WebhookRefused) as refused:
        webhooks.check_allowed("bot", big)
    assert refused.value.status == 403 and "max_notional_usd" in refused.value.reason


def test_webhook_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        WebhookConfig.model_validate(
            {"secret": "short", "tokens": ["WETH"], "max_notional_usd": 10.0}
        )
    assert "a-webhook-secret" not in repr(
        WebhookConfig.model_validate(
            {"secret": SECRET, "tokens": ["WETH"], "max_notional_usd": 10.0}
        )
    )


WEBHOOK_TOML = """
[chain]
name = "ethereum"
chain_id = 1
rpc_urls = ["https://rpc-a.example"]

[console]
enabled = true

[strategies.signal]
enabled = true

[webhooks.tv]
secret = "${WEBHOOK_TV_SECRET}"
format = "tradingview"
tokens = ["WETH"]
max_notional_usd = 500.0
"""


def test_a_webhook_secret_comes_from_env_and_never_shows_in_the_dump(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(WEBHOOK_TOML)
    (tmp_path / ".env").write_text(f"WEBHOOK_TV_SECRET={SECRET}\n")
    cfg = AgentConfig.load(tmp_path / "agent.toml", environ={})
    assert cfg.webhooks["tv"].secret.get_secret_value() == SECRET
    for dump in (cfg.redacted_dump("toml"), cfg.redacted_dump("json"), repr(cfg)):
        assert SECRET not in dump


def test_webhooks_need_the_console_and_the_signal_strategy(tmp_path: Path) -> None:
    text = WEBHOOK_TOML.replace("[strategies.signal]\nenabled = true", "").replace(
        "[console]\nenabled = true", ""
    )
    (tmp_path / "agent.toml").write_text(text.replace("[webhooks.tv]", "[webhooks.TradingView]"))
    with pytest.raises(ConfigError) as caught:
        AgentConfig.load(tmp_path / "agent.toml", environ={"WEBHOOK_TV_SECRET": SECRET})
    assert "lower-case letters" in str(caught.value)
    (tmp_path / "agent.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        AgentConfig.load(tmp_path / "agent.toml", environ={"WEBHOOK_TV_SECRET": SECRET})
    problems = str(caught.value)
    assert "strategies.signal.enabled" in problems and "console.enabled" in problems
    assert SECRET not in problems
