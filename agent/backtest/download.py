"""`download-data`: exchange OHLCV candles (ccxt) into a Parquet file, incremental and resumable.

The file is the state: a run reads its last stored candle and asks the exchange only for the
candles after it, so a second run fetches only what is new, and a run that was interrupted
continues where it stopped. Candles are checkpointed every ``checkpoint_pages`` pages and once
more when the run stops, whether it finished or not (written to a temporary file, then
renamed: a crash never leaves a half-written file). Only closed candles are stored (the one
still forming would stay stale in the file). The file is the backtest's format
(``load_ohlcv``): ``timestamp`` in unix seconds, open/high/low/close/volume.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agent.backtest.data import candles_from_frame, load_ohlcv
from agent.errors import OhlcvError

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


@dataclass(frozen=True, slots=True)
class DownloadResult:
    path: Path
    fetched: int  # new candles stored by this run
    total: int  # candles in the file now
    first_ts: int | None  # unix seconds
    last_ts: int | None
    requests: int


def data_file(data_dir: Path, exchange_id: str, symbol: str, timeframe: str) -> Path:
    """Where ``download-data`` keeps one market: ``DIR/EXCHANGE/BASE_QUOTE-TF.parquet``."""
    name = symbol.replace("/", "_").replace(":", "_")
    return data_dir / exchange_id / f"{name}-{timeframe}.parquet"


def _stored(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    return load_ohlcv(path).to_frame()[COLUMNS]


def _write(path: Path, frame: pd.DataFrame) -> None:
    """Replace ``path`` atomically with ``frame`` (validated as candles on the way)."""
    candles = candles_from_frame(frame, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    candles.to_frame()[COLUMNS].to_parquet(partial, index=False)
    os.replace(partial, path)


async def download_ohlcv(
    exchange: Any,
    symbol: str,
    timeframe: str,
    path: Path,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    page_limit: int = 1000,
    checkpoint_pages: int = 20,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    on_page: Callable[[int, int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> DownloadResult:
    """Fetch ``symbol``'s ``timeframe`` candles after the last one stored in ``path``.

        ``exchange`` is a ccxt exchange (async or sync), configured by the caller. Without a file,
        ``since_ms`` (epoch ms) says where to start; with one, the file's last candle does (a
        ``since_ms`` later than it moves the start forward). ``until_ms`` bounds the open times
        (exclusive; default now). ``on_plan(expected_candles)`` is told how many candles the range
    holds at most (gaps in the exchange's history make it fewer), ``on_page(candles_in_page,
    last_open_ms)`` each page received: a progress bar.
        Raises ``OhlcvError`` when there is no start or the file is not candles.
    """
    stored = _stored(path)
    timeframe_ms = int(exchange.parse_timeframe(timeframe)) * 1000
    cursor: int | None = since_ms
    if stored is not None and len(stored):
        after_last = int(stored["timestamp"].iloc[-1]) * 1000 + 1
        cursor = after_last if cursor is None else max(cursor, after_last)
    if cursor is None:
        raise OhlcvError(f"{path} does not exist yet: give --since for the first download")
    # the candle still forming is not stored: it would never be corrected
    closed_before = now_ms() - timeframe_ms + 1
    end = closed_before if until_ms is None else min(until_ms, closed_before)
    if on_plan is not None:
        on_plan(max(0, -(-(end - cursor) // timeframe_ms)))
    kept = stored if stored is not None else pd.DataFrame(columns=COLUMNS)
    fresh: list[Sequence[Any]] = []
    fetched = requests = pages_since_checkpoint = 0

    def checkpoint() -> None:
        nonlocal kept, fresh, pages_since_checkpoint
        if fresh:
            new = pd.DataFrame([list(row[:6]) for row in fresh], columns=COLUMNS)
            new["timestamp"] = new["timestamp"].astype("int64") // 1000  # ccxt: epoch ms
            merged = new if kept.empty else pd.concat([kept, new], ignore_index=True)
            merged = merged.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
            kept = merged.reset_index(drop=True)
            _write(path, kept)
            fresh = []
        pages_since_checkpoint = 0

    try:
        while cursor < end:
            page = exchange.fetch_ohlcv(symbol, timeframe, since=cursor, limit=page_limit)
            if inspect.isawaitable(page):
                page = await page
            requests += 1
            rows = [row for row in page if cursor <= int(row[0]) < end]
            if not rows:
                break
            fresh.extend(rows)
            fetched += len(rows)
            if on_page is not None:
                on_page(len(rows), int(rows[-1][0]))
            next_cursor = int(rows[-1][0]) + 1
            if next_cursor <= cursor:
                break
            cursor = next_cursor
            pages_since_checkpoint += 1
            if pages_since_checkpoint >= checkpoint_pages:
                checkpoint()
            if len(page) < page_limit:
                break
    finally:
        # an interrupted run (the exchange down, Ctrl-C) keeps every candle it received
        checkpoint()
    total = len(kept)
    return DownloadResult(
        path,
        fetched,
        total,
        int(kept["timestamp"].iloc[0]) if total else None,
        int(kept["timestamp"].iloc[-1]) if total else None,
        requests,
    )
