"""CoinGecko client against a local fake: batched prices, sentiment, keys, failure modes."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from agent.feeds.coingecko import CoinGeckoClient
from agent.feeds.http import SourcePolicy
from tests.fakes.http_fakes import CoinGeckoFake

PRO_KEY = "CG-pro-SECRET-9f8e7d6c5b4a"
DEMO_KEY = "CG-demo-SECRET-1a2b3c4d5e"
COINS = {
    "WETH": "ethereum",
    "WBTC": "wrapped-bitcoin",
    "USDC": "usd-coin",
    "DAI": "dai",
    "LINK": "chainlink",
}
PRICES = {
    "ethereum": 3012.5,
    "wrapped-bitcoin": 60123.0,
    "usd-coin": 0.9999,
    "dai": 1.0002,
    "chainlink": 14.2,
}


def make_client(
    session: aiohttp.ClientSession,
    fake: CoinGeckoFake,
    policy: SourcePolicy,
    **kwargs: object,
) -> CoinGeckoClient:
    fake.prices_usd.update(PRICES)
    fake.votes_up_pct.update({"ethereum": 81.5, "chainlink": 40.0})
    return CoinGeckoClient(
        session,
        COINS,
        base_url=f"{fake.server.url}/api/v3",
        policy=policy,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_prices_batched_with_pro_key_header(
    session: aiohttp.ClientSession, coingecko_fake: CoinGeckoFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(
        session, coingecko_fake, fast_policy, plan="pro", api_key=PRO_KEY, batch_size=2
    )

    readings = await client.poll_prices()

    assert {s: r.value for s, r in readings.items()} == {s: PRICES[c] for s, c in COINS.items()}
    requests = coingecko_fake.server.requests_to("/api/v3/simple/price")
    assert len(requests) == 3  # 5 ids in batches of 2
    assert all(r.headers["x-cg-pro-api-key"] == PRO_KEY for r in requests)
    assert sorted(i for r in requests for i in r.query["ids"].split(",")) == sorted(PRICES)
    assert all(r.query["vs_currencies"] == "usd" for r in requests)


async def test_demo_key_header_and_sentiment(
    session: aiohttp.ClientSession, coingecko_fake: CoinGeckoFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, coingecko_fake, fast_policy, plan="demo", api_key=DEMO_KEY)

    await client.poll_coins()

    weth = client.sentiment_up_pct("WETH")
    assert weth is not None and weth.value == 81.5 and not weth.is_stale()
    link = client.coins.get("LINK")
    assert link is not None and link.value is not None
    assert link.value.price_usd == 14.2 and link.value.change_24h_pct == -1.5
    request = coingecko_fake.server.requests_to("/api/v3/coins/ethereum")[0]
    assert request.headers["x-cg-demo-api-key"] == DEMO_KEY
    assert request.query["community_data"] == "true"


async def test_missing_coin_in_batch_marks_only_that_token_stale(
    session: aiohttp.ClientSession, coingecko_fake: CoinGeckoFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, coingecko_fake, fast_policy)
    await client.poll_prices()
    coingecko_fake.server.fail("missing_field", path="/api/v3/simple/price", drop=("dai",))

    readings = await client.poll_prices()

    assert readings["DAI"].is_stale() and readings["DAI"].value == PRICES["dai"]
    assert readings["DAI"].error is not None and "dai" in readings["DAI"].error
    assert not readings["WETH"].is_stale()


async def test_missing_market_data_marks_coin_stale(
    session: aiohttp.ClientSession, coingecko_fake: CoinGeckoFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, coingecko_fake, fast_policy)
    coingecko_fake.server.fail(
        "missing_field", path="/api/v3/coins/ethereum", drop=("market_data",)
    )

    readings = await client.poll_coins()

    assert readings["WETH"].value is None and readings["WETH"].is_stale()
    assert "market_data" in (readings["WETH"].error or "")
    assert not readings["LINK"].is_stale()


async def test_retry_after_honoured_and_transients_retried(
    session: aiohttp.ClientSession, coingecko_fake: CoinGeckoFake, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, coingecko_fake, fast_policy)
    server = coingecko_fake.server
    server.fail("429", retry_after="1")
    server.fail("500")
    server.fail("timeout", delay_s=1.0)
    server.fail("malformed")

    # One logical call would give up after 3 attempts: spread the faults over two polls.
    first = await client.poll_prices()
    assert all(r.is_stale() for r in first.values())  # 429 -> 500 -> timeout: gave up
    second = await client.poll_prices()
    assert all(not r.is_stale() for r in second.values())  # malformed -> ok

    times = [r.at_monotonic for r in server.requests]
    assert len(times) == 5
    assert times[1] - times[0] >= 1.0 - 0.01  # Retry-After: 1


async def test_public_plan_sends_no_key_and_keys_never_logged(
    session: aiohttp.ClientSession,
    coingecko_fake: CoinGeckoFake,
    fast_policy: SourcePolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    public = make_client(session, coingecko_fake, fast_policy)
    await public.poll_prices()
    assert not any(
        "x-cg-pro-api-key" in r.headers or "x-cg-demo-api-key" in r.headers
        for r in coingecko_fake.server.requests
    )

    pro = make_client(session, coingecko_fake, fast_policy, plan="pro", api_key=PRO_KEY)
    coingecko_fake.server.fail("status", status=401)
    coingecko_fake.server.fail("500", times=10)
    await pro.poll()
    assert all(r.is_stale() for r in pro.prices.snapshot().values())
    assert PRO_KEY not in caplog.text
    for reading in [*pro.prices.snapshot().values(), *pro.coins.snapshot().values()]:
        assert PRO_KEY not in (reading.error or "")
