"""Feeds built from the validated config, polled against the local fakes."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from agent.config.models import FeedsConfig
from agent.errors import ConfigError
from agent.feeds.factory import build_feeds
from agent.types import Token
from tests.fakes.http_fakes import CoinGeckoFake, OneInchFake, XFake, x_post

WETH = Token("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "WETH", 18)
USDC = Token("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USDC", 6)
TOKENS = {"WETH": WETH, "USDC": USDC}
ONEINCH_KEY = "oneinch-SECRET-key-000111"
CG_KEY = "CG-SECRET-demo-222333"
X_TOKEN = "x-bearer-SECRET-444555"


def feeds_config(oneinch: OneInchFake, coingecko: CoinGeckoFake, x: XFake) -> FeedsConfig:
    return FeedsConfig.model_validate(
        {
            "oneinch": {
                "enabled": True,
                "api_key": ONEINCH_KEY,
                "base_url": f"{oneinch.server.url}/swap/v6.0",
                "pairs": ["WETH/USDC"],
                "requests_per_s": 50,
            },
            "cex": {
                "enabled": True,
                "exchanges": ["binance", "kraken"],
                "symbols": ["ETH/USDT"],
                "use_websocket": False,
            },
            "coingecko": {
                "enabled": True,
                "plan": "demo",
                "api_key": CG_KEY,
                "base_url": f"{coingecko.server.url}/api/v3",
                "coin_ids": {"WETH": "ethereum", "USDC": "usd-coin"},
            },
            "x": {
                "enabled": True,
                "bearer_token": X_TOKEN,
                "base_url": f"{x.server.url}/2",
                "queries": {"WETH": "$ETH -is:retweet"},
            },
        }
    )


async def test_build_and_poll_configured_feeds_without_leaking_secrets(
    session: aiohttp.ClientSession,
    oneinch_fake: OneInchFake,
    coingecko_fake: CoinGeckoFake,
    x_fake: XFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    oneinch_fake.rates[(WETH.address.lower(), USDC.address.lower())] = (3000 * 10**6, 10**18)
    coingecko_fake.prices_usd.update({"ethereum": 3000.0, "usd-coin": 1.0})
    coingecko_fake.votes_up_pct["ethereum"] = 70.0
    x_fake.posts["$ETH -is:retweet"] = [x_post(1, "ETH breakout, bullish", likes=10)]

    feeds = build_feeds(feeds_config(oneinch_fake, coingecko_fake, x_fake), session, TOKENS, 1)
    try:
        assert [c.exchange_id for c in feeds.cex] == ["binance", "kraken"]
        assert feeds.cex_symbols == {"ETH/USDT": WETH.address}
        names = [p.name for p in feeds.pollers]
        assert names == ["1inch", "cex:binance", "cex:kraken", "coingecko", "sentiment"]
        assert len(feeds.runners()) == 5  # polling CEX clients: no websocket streams
        for poller in feeds.pollers:
            if not poller.name.startswith("cex:"):  # CEX pollers would reach the internet
                assert await poller.run_once()

        assert feeds.oneinch is not None and feeds.coingecko is not None
        quote = feeds.oneinch.reading(feeds.oneinch.pairs[0])
        assert quote is not None and quote.value is not None
        assert quote.value.amount_in == 10**18 and quote.value.amount_out == 3000 * 10**6
        price = feeds.coingecko.price_usd("WETH")
        assert price is not None and price.value == 3000.0
        assert feeds.sentiment is not None
        sentiment = feeds.sentiment.reading("WETH")
        assert sentiment is not None and sentiment.value is not None
        assert sentiment.value.coingecko_score is not None  # read from the CoinGecko poller
        assert sentiment.value.score > 0
        assert feeds.sentiment_tokens == {"WETH": WETH.address}
        for secret in (ONEINCH_KEY, CG_KEY, X_TOKEN):
            assert secret not in caplog.text
    finally:
        await feeds.aclose()


def test_unknown_token_reference_names_the_field(
    oneinch_fake: OneInchFake, coingecko_fake: CoinGeckoFake, x_fake: XFake
) -> None:
    cfg = feeds_config(oneinch_fake, coingecko_fake, x_fake)
    with pytest.raises(ConfigError, match=r"feeds\.oneinch\.pairs\[0\]"):
        build_feeds(cfg, None, {"USDC": USDC}, 1)  # type: ignore[arg-type]
