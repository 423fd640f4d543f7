"""Candles from ccxt: Binance's real async client against a local fake of its klines API."""

from __future__ import annotations

import aiohttp
import numpy as np
from aiohttp import web

from agent.backtest.data import fetch_ohlcv as fetch_candles
from agent.backtest.data import generate_ohlcv
from agent.backtest.engine import run_grid
from agent.backtest.execution import BacktestSettings
from agent.feeds.cex import CexClient
from strategies.grid import GridParams
from tests.fakes.http_fakes import BinanceFake


async def test_paged_fetch_from_binance_klines_feeds_a_backtest() -> None:
    history = generate_ohlcv(1_234, seed=3)
    fake = BinanceFake()
    fake.add_market("ETH", "USDT", 3_000.0)

    async def klines(request: web.Request) -> list[list[object]]:
        # Binance's documented shape: [open time ms, "open", "high", "low", "close", "volume",
        # close time ms, "quote volume", trades, "taker base", "taker quote", "ignore"]
        start_ms = int(request.query.get("startTime", "0"))
        limit = int(request.query.get("limit", "500"))
        rows = []
        for i in np.flatnonzero(history.ts * 1000 >= start_ms)[:limit].tolist():
            open_ms = int(history.ts[i]) * 1000
            rows.append(
                [
                    open_ms,
                    repr(float(history.open[i])),
                    repr(float(history.high[i])),
                    repr(float(history.low[i])),
                    repr(float(history.close[i])),
                    repr(float(history.volume[i])),
                    open_ms + 59_999,
                    "0",
                    1,
                    "0",
                    "0",
                    "0",
                ]
            )
        return rows

    fake.server.route("/api/v3/klines", klines)
    async with fake.server, aiohttp.ClientSession() as session:
        client = CexClient(session, "binance", ["ETH/USDT"], api_urls=fake.server.url)
        try:
            candles = await fetch_candles(
                client.exchange,
                "ETH/USDT",
                "1m",
                since_ms=int(history.ts[0]) * 1000,
                page_limit=500,
            )
        finally:
            await client.close()
    pages = fake.server.requests_to("/api/v3/klines")
    assert len(pages) == 3  # 500 + 500 + 234 candles
    assert [p.query["symbol"] for p in pages] == ["ETHUSDT"] * 3
    assert np.array_equal(candles.ts, history.ts)
    assert np.array_equal(candles.close, history.close)  # repr round-trips floats exactly
    params = GridParams(lower_price=2_950, upper_price=3_050, levels=6, order_size="0.1")
    fetched = run_grid(candles, params, BacktestSettings())
    assert fetched.trades and fetched.trades == run_grid(history, params, BacktestSettings()).trades
