"""1inch Swap API v6 client against a local fake serving the documented response shapes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import traceback

import aiohttp
import pytest

from agent.errors import AgentError, HttpStatusError
from agent.feeds.http import Poller, SourcePolicy
from agent.feeds.oneinch import OneInchClient, QuotePair
from tests.fakes.http_fakes import OneInchFake, http_date_in

API_KEY = "sk-1inch-SECRET-abcdef123456"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
ONE_ETH = 10**18
PAIR = QuotePair(WETH, USDC, ONE_ETH)


def make_client(
    session: aiohttp.ClientSession, fake: OneInchFake, policy: SourcePolicy
) -> OneInchClient:
    fake.rates[(WETH, USDC)] = (3_000_123_456, 10**18)  # 3000.123456 USDC per ETH
    return OneInchClient(
        session,
        API_KEY,
        chain_id=1,
        pairs=[PAIR],
        base_url=f"{fake.server.url}/swap/v6.0",
        policy=policy,
    )


async def test_quote_exact_int_and_bearer_sent(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    quote = await client.quote(WETH, USDC, ONE_ETH)

    assert quote.amount_out == 3_000_123_456
    assert quote.gas == oneinch_fake.gas
    (request,) = oneinch_fake.server.requests
    assert request.path == "/swap/v6.0/1/quote"
    assert request.query["amount"] == str(ONE_ETH)
    assert request.query["src"] == WETH and request.query["dst"] == USDC
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_build_swap_returns_tx_with_int_amounts(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    wallet = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    swap = await client.build_swap(WETH, USDC, 5 * ONE_ETH, wallet, 0.5)

    assert swap.quote.amount_out == 5 * 3_000_123_456
    assert swap.tx.from_address == wallet
    assert swap.tx.to == oneinch_fake.router
    assert swap.tx.value_wei == 0 and swap.tx.gas == oneinch_fake.gas
    assert swap.tx.gas_price_wei == 20_000_000_000
    (request,) = oneinch_fake.server.requests
    assert request.path == "/swap/v6.0/1/swap"
    assert request.query["slippage"] == "0.5"
    assert request.query["from"] == wallet


async def test_429_retry_after_seconds_is_honoured(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    oneinch_fake.server.fail("429", retry_after="1")

    readings = await client.poll()

    assert readings[PAIR].value is not None and readings[PAIR].error is None
    first, second = oneinch_fake.server.requests
    # Ordering on the fake's own clock: the retry arrived no sooner than Retry-After allowed.
    assert second.at_monotonic - first.at_monotonic >= 1.0 - 0.01
    assert client.http.stats.rate_limited == 1


async def test_429_retry_after_http_date_is_honoured(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    retry_date, retry_epoch = http_date_in(1.0)
    oneinch_fake.server.fail("429", retry_after=retry_date)

    quote = await client.quote(WETH, USDC, ONE_ETH)

    assert quote.amount_out == 3_000_123_456
    _, retry = oneinch_fake.server.requests
    assert retry.at_wall >= retry_epoch - 0.01


@pytest.mark.parametrize(
    "kind, extra",
    [("500", {}), ("malformed", {}), ("timeout", {"delay_s": 1.0}), ("503", {})],
)
async def test_transient_failures_are_retried(
    session: aiohttp.ClientSession,
    oneinch_fake: OneInchFake,
    fast_policy: SourcePolicy,
    kind: str,
    extra: dict[str, float],
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    oneinch_fake.server.fail(kind, **extra)

    readings = await client.poll()

    assert readings[PAIR].value is not None
    assert not readings[PAIR].is_stale()
    assert len(oneinch_fake.server.requests) == 2
    assert client.http.stats.retries == 1


async def test_missing_field_marks_stale_and_keeps_last_quote(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    good = (await client.poll())[PAIR]
    oneinch_fake.server.fail("missing_field", drop=("dstAmount",))

    stale = (await client.poll())[PAIR]

    assert stale.is_stale()
    assert stale.value == good.value  # last good value kept
    assert stale.fetched_at == good.fetched_at  # and its age keeps growing
    assert stale.error is not None and "dstAmount" in stale.error
    assert len(oneinch_fake.server.requests) == 2  # schema drift is not retried


async def test_client_errors_are_not_retried(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    oneinch_fake.server.fail("status", status=400)

    with pytest.raises(HttpStatusError) as raised:
        await client.quote(WETH, USDC, ONE_ETH)

    assert raised.value.status == 400
    assert len(oneinch_fake.server.requests) == 1


async def test_outage_goes_stale_poller_survives_and_key_never_leaks(
    session: aiohttp.ClientSession,
    oneinch_fake: OneInchFake,
    fast_policy: SourcePolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(session, oneinch_fake, fast_policy)
    poller = Poller("1inch", client.poll, interval_s=0.0, redactor=client.http.redactor)
    assert await poller.run_once()
    oneinch_fake.server.fail("500", times=fast_policy.max_attempts)

    assert await poller.run_once()  # poll() itself turns the outage into a stale reading

    reading = client.reading(PAIR)
    assert reading is not None and reading.is_stale() and reading.value is not None
    assert reading.error is not None and "HTTP 500" in reading.error
    assert len(oneinch_fake.server.requests) == 1 + fast_policy.max_attempts
    # Direct calls raise typed errors whose text and traceback are free of the key.
    oneinch_fake.server.fail("500", times=fast_policy.max_attempts)
    with pytest.raises(AgentError) as raised:
        await client.quote(WETH, USDC, ONE_ETH)
    shown = "".join(traceback.format_exception(raised.value))
    assert API_KEY not in shown and API_KEY not in str(raised.value)
    assert API_KEY not in caplog.text
    assert API_KEY not in (reading.error or "")
    assert "Bearer" not in caplog.text
    assert any("retrying" in r.getMessage() for r in caplog.records)


async def test_breaker_opens_then_half_opens_and_recovers(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    policy = dataclasses.replace(fast_policy, max_attempts=1, breaker_failures=2)
    client = make_client(session, oneinch_fake, policy)
    oneinch_fake.server.fail("500", times=2)

    await client.poll()
    await client.poll()  # second consecutive failure opens the breaker
    blocked = (await client.poll())[PAIR]

    assert len(oneinch_fake.server.requests) == 2  # the third poll never went out
    assert blocked.error is not None and "circuit open" in blocked.error
    assert client.http.guard.breaker.state == "open"

    # After the cool-down one trial goes through; its success closes the breaker.
    await asyncio.sleep(policy.breaker_cooldown_s)
    recovered = (await client.poll())[PAIR]
    assert recovered.error is None and recovered.value is not None
    assert client.http.guard.breaker.state == "closed"
    assert len(oneinch_fake.server.requests) == 3


async def test_long_retry_after_fails_fast_and_pauses_the_source(
    session: aiohttp.ClientSession, oneinch_fake: OneInchFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, oneinch_fake, fast_policy)
    oneinch_fake.server.fail("429", retry_after="3600")  # far beyond max_retry_after_s

    first = (await client.poll())[PAIR]
    second = (await client.poll())[PAIR]

    assert first.is_stale() and "429" in (first.error or "")
    assert second.is_stale() and "rate limited for another" in (second.error or "")
    assert len(oneinch_fake.server.requests) == 1  # the pause is respected: nothing sent
