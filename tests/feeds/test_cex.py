"""ccxt's real async clients (Binance, Kraken) with their API URLs rewritten to local fakes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from agent.feeds.cex import CexClient, CexFeed, onchain_pair
from agent.feeds.http import Poller, SourcePolicy
from tests.fakes.http_fakes import BinanceFake, FakeServer, KrakenFake

API_KEY = "cex-key-SECRET-0123456789"
API_SECRET = "cex-secret-SECRET-abcdefghij"


@dataclass
class Venue:
    exchange_id: str
    server: FakeServer
    symbols: list[str]
    ticker_path: str
    missing_bid: tuple[str, ...]
    mids: dict[str, float]


@pytest.fixture
async def binance() -> AsyncIterator[Venue]:
    fake = BinanceFake()
    fake.add_market("ETH", "USDT", 3000.0)
    fake.add_market("BTC", "USDT", 60000.0)
    async with fake.server:
        yield Venue(
            "binance",
            fake.server,
            ["ETH/USDT", "BTC/USDT"],
            "/api/v3/ticker/24hr",
            ("*.bidPrice",),
            {"ETH/USDT": 3000.0, "BTC/USDT": 60000.0},
        )


@pytest.fixture
async def kraken() -> AsyncIterator[Venue]:
    fake = KrakenFake()
    fake.add_market("ETH", "USD", 3010.0)
    fake.add_market("BTC", "USD", 60100.0)
    async with fake.server:
        yield Venue(
            "kraken",
            fake.server,
            ["ETH/USD", "BTC/USD"],
            "/0/public/Ticker",
            ("result.*.b",),
            {"ETH/USD": 3010.0, "BTC/USD": 60100.0},
        )


@pytest.fixture(params=["binance", "kraken"])
def venue(request: pytest.FixtureRequest) -> Venue:
    fixture: Venue = request.getfixturevalue(request.param)
    return fixture


def make_client(
    session: aiohttp.ClientSession, venue: Venue, policy: SourcePolicy, **kwargs: object
) -> CexClient:
    return CexClient(
        session,
        venue.exchange_id,
        venue.symbols,
        api_urls=venue.server.url,
        policy=policy,
        order_book_depth=3,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_poll_batched_tickers_and_books_on_shared_session(
    session: aiohttp.ClientSession, venue: Venue, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, venue, fast_policy)
    try:
        await client.poll()
        for symbol, mid in venue.mids.items():
            ticker = client.ticker(symbol)
            book = client.order_book(symbol)
            assert ticker is not None and ticker.value is not None and not ticker.is_stale()
            assert ticker.value.mid == pytest.approx(mid)
            assert ticker.value.bid < ticker.value.ask
            assert book is not None and book.value is not None
            assert len(book.value.bids) == 3 and book.value.best_bid == ticker.value.bid
            assert book.value.vwap("asks", 1.0) == book.value.best_ask
        # One batched ticker request for both symbols in the cycle.
        ticker_requests = venue.server.requests_to(venue.ticker_path)
        assert len(ticker_requests) == 1
        assert client.exchange.session is session
    finally:
        await client.close()
    assert not session.closed  # ccxt never closes a session it was given


async def test_retry_after_honoured_on_429(
    session: aiohttp.ClientSession, venue: Venue, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, venue, fast_policy)
    try:
        await client.poll(order_books=False)
        venue.server.fail("429", path=venue.ticker_path, retry_after="1")

        await client.poll(order_books=False)

        first, second = venue.server.requests_to(venue.ticker_path)[-2:]
        assert second.at_monotonic - first.at_monotonic >= 1.0 - 0.01
        reading = client.ticker(venue.symbols[0])
        assert reading is not None and not reading.is_stale()
        assert client.guard.stats.rate_limited == 1
    finally:
        await client.close()


@pytest.mark.parametrize("kind", ["500", "timeout", "malformed"])
async def test_transient_failures_retried(
    session: aiohttp.ClientSession, venue: Venue, fast_policy: SourcePolicy, kind: str
) -> None:
    client = make_client(session, venue, fast_policy)
    try:
        await client.poll(order_books=False)
        venue.server.fail(kind, path=venue.ticker_path, delay_s=1.0)

        await client.poll(order_books=False)

        assert len(venue.server.requests_to(venue.ticker_path)) == 3  # ok, failed, retried
        for symbol in venue.symbols:
            reading = client.ticker(symbol)
            assert reading is not None and not reading.is_stale()
    finally:
        await client.close()


async def test_missing_bid_marks_stale_keeps_last(
    session: aiohttp.ClientSession, venue: Venue, fast_policy: SourcePolicy
) -> None:
    client = make_client(session, venue, fast_policy)
    try:
        await client.poll(order_books=False)
        good = client.ticker(venue.symbols[0])
        venue.server.fail("missing_field", path=venue.ticker_path, drop=venue.missing_bid)

        await client.poll(order_books=False)

        stale = client.ticker(venue.symbols[0])
        assert stale is not None and good is not None
        assert stale.is_stale() and stale.value == good.value
        assert "bid" in (stale.error or "")
        assert len(venue.server.requests_to(venue.ticker_path)) == 2  # not retried
    finally:
        await client.close()


async def test_outage_never_escapes_poller_and_keys_never_logged(
    session: aiohttp.ClientSession,
    venue: Venue,
    fast_policy: SourcePolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(session, venue, fast_policy, api_key=API_KEY, secret=API_SECRET)
    poller = Poller(client.source, client.poll, interval_s=0.0, redactor=client.redactor)
    try:
        assert await poller.run_once()
        venue.server.fail("500", times=100)

        assert await poller.run_once()  # poll() absorbed the outage

        for symbol in venue.symbols:
            ticker, book = client.ticker(symbol), client.order_book(symbol)
            assert ticker is not None and ticker.is_stale() and ticker.value is not None
            assert book is not None and book.is_stale()
            assert "HTTP 500" in (ticker.error or "")
            for secret in (API_KEY, API_SECRET):
                assert secret not in (ticker.error or "") and secret not in (book.error or "")
        assert poller.stats.failures == 0
        assert API_KEY not in caplog.text and API_SECRET not in caplog.text
    finally:
        await client.close()


async def test_feed_maps_symbols_and_takes_median_usd_mid(
    session: aiohttp.ClientSession,
    binance: Venue,
    kraken: Venue,
    fast_policy: SourcePolicy,
) -> None:
    feed = CexFeed(
        [make_client(session, binance, fast_policy), make_client(session, kraken, fast_policy)]
    )
    try:
        await feed.poll(order_books=False)
        assert onchain_pair("ETH/USDT") == ("WETH", "USDT")
        assert onchain_pair("BTC/USD") is None  # USD is not a token
        assert onchain_pair("XBT/USDC") == ("WBTC", "USDC")
        assert feed.mid_usd("WETH") == pytest.approx((3000.0 + 3010.0) / 2)
        assert feed.mid_usd("WBTC") == pytest.approx((60000.0 + 60100.0) / 2)
        assert len(feed.tickers()) == 4
    finally:
        await feed.close()


async def test_binance_websocket_watch_streams_and_survives_a_dropped_stream(
    session: aiohttp.ClientSession, fast_policy: SourcePolicy
) -> None:
    fake = BinanceFake()
    fake.add_market("ETH", "USDT", 3000.0)
    fake.add_market("BTC", "USDT", 60000.0)
    symbols = ["ETH/USDT", "BTC/USDT"]
    async with fake.server:
        client = CexClient(
            session,
            "binance",
            symbols,
            api_urls=fake.server.url,
            policy=fast_policy,
            order_book_depth=3,
            use_websocket=True,
        )
        assert client.use_websocket
        fake.ws_drop_after_subscribe = 1  # the first stream dies right after subscribing
        watching = asyncio.create_task(client.watch())

        def all_fresh() -> bool:
            readings = [client.ticker(s) for s in symbols] + [client.order_book(s) for s in symbols]
            return all(r is not None and not r.is_stale() for r in readings)

        try:
            for _ in range(250):
                if all_fresh():
                    break
                await asyncio.sleep(0.02)
            assert all_fresh()
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await client.close()

        eth = client.ticker("ETH/USDT")
        book = client.order_book("ETH/USDT")
        assert eth is not None and eth.value is not None
        assert eth.value.mid == pytest.approx(3000.0)
        assert book is not None and book.value is not None
        assert book.value.best_bid == eth.value.bid and book.value.best_ask == eth.value.ask
        assert {"ethusdt@ticker", "btcusdt@ticker", "ethusdt@depth@100ms"} <= set(
            fake.ws_subscriptions
        )
        assert fake.ws_connections >= 3  # the dropped stream was reconnected
        assert watching.cancelled()
