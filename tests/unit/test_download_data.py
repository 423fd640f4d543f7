"""`defi-agent download-data` against a local fake of Binance's klines API (ccxt's real client):
the Parquet file it writes is what a backtest loads, and a second run asks only for the candles
after the stored ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from aiohttp import web

from agent.backtest.data import generate_ohlcv, load_ohlcv
from agent.cli import main
from tests.fakes.http_fakes import BinanceFake

HISTORY = generate_ohlcv(1_234, seed=3)  # 1-minute candles from 2023-11-14


def binance_with_klines(listed: list[int]) -> BinanceFake:
    """A Binance fake whose klines serve the first ``listed[0]`` candles of ``HISTORY``."""
    fake = BinanceFake()
    fake.add_market("ETH", "USDT", 3_000.0)

    async def klines(request: web.Request) -> list[list[object]]:
        start_ms = int(request.query.get("startTime", "0"))
        limit = int(request.query.get("limit", "500"))
        visible = np.arange(listed[0])
        rows: list[list[object]] = []
        for i in visible[HISTORY.ts[: listed[0]] * 1000 >= start_ms][:limit].tolist():
            open_ms = int(HISTORY.ts[i]) * 1000
            prices = (HISTORY.open, HISTORY.high, HISTORY.low, HISTORY.close, HISTORY.volume)
            ohlcv = [repr(float(p[i])) for p in prices]
            rows.append([open_ms, *ohlcv, open_ms + 59_999, "0", 1, "0", "0", "0"])
        return rows

    fake.server.route("/api/v3/klines", klines)
    return fake


async def download(fake: BinanceFake, data_dir: Path, *extra: str) -> int:
    args = [
        "download-data",
        *("--exchange", "binance", "--symbol", "ETH/USDT", "--timeframe", "1m"),
        *("--data-dir", str(data_dir), "--page-limit", "500", "--api-url", fake.server.url),
        *extra,
    ]
    return await asyncio.to_thread(main, args)


async def test_two_runs_fetch_only_the_new_candles(tmp_path: Path) -> None:
    listed = [1_000]
    fake = binance_with_klines(listed)
    file = tmp_path / "binance" / "ETH_USDT-1m.parquet"
    async with fake.server:
        assert await download(fake, tmp_path) == 2  # a new file needs --since
        assert not file.exists()

        since = str(int(HISTORY.ts[0]) * 1000)
        assert await download(fake, tmp_path, "--since", since) == 0
        first = fake.server.requests_to("/api/v3/klines")
        assert len(first) == 3  # 500 + 500 + an empty page
        stored = load_ohlcv(file)
        assert np.array_equal(stored.ts, HISTORY.ts[:1_000])
        assert np.array_equal(stored.close, HISTORY.close[:1_000])

        fake.server.reset()
        listed[0] = 1_234  # 234 new candles at the exchange
        assert await download(fake, tmp_path) == 0
        (second,) = fake.server.requests_to("/api/v3/klines")  # one page: 234 < 500
        assert int(second.query["startTime"]) == int(HISTORY.ts[999]) * 1000 + 1
        stored = load_ohlcv(file)
        assert np.array_equal(stored.ts, HISTORY.ts)  # no gap, no duplicate
        assert np.array_equal(stored.close, HISTORY.close)

        fake.server.reset()
        assert await download(fake, tmp_path) == 0  # nothing new: one empty page
        assert len(fake.server.requests_to("/api/v3/klines")) == 1
        assert len(load_ohlcv(file)) == 1_234


async def test_an_interrupted_download_keeps_its_pages_and_the_next_run_resumes(
    tmp_path: Path,
) -> None:
    listed = [1_234]
    fake = binance_with_klines(listed)
    file = tmp_path / "binance" / "ETH_USDT-1m.parquet"
    serve_klines = fake.server._routes["/api/v3/klines"]
    pages: list[int] = []

    async def down_after_one_page(request: web.Request) -> object:
        pages.append(1)
        if len(pages) > 1:
            raise web.HTTPServiceUnavailable(text="maintenance")
        return await serve_klines(request)

    async with fake.server:
        fake.server.route("/api/v3/klines", down_after_one_page)  # type: ignore[arg-type]
        since = str(int(HISTORY.ts[0]) * 1000)
        assert await download(fake, tmp_path, "--since", since) == 1  # a named failure
        assert np.array_equal(load_ohlcv(file).ts, HISTORY.ts[:500])  # the page it got

        fake.server.route("/api/v3/klines", serve_klines)
        fake.server.reset()
        assert await download(fake, tmp_path) == 0
        requests = fake.server.requests_to("/api/v3/klines")
        assert int(requests[0].query["startTime"]) == int(HISTORY.ts[499]) * 1000 + 1
        stored = load_ohlcv(file)
        assert np.array_equal(stored.ts, HISTORY.ts)
        assert np.array_equal(stored.close, HISTORY.close)
