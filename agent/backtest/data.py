"""OHLCV candles for backtests: loading (CSV, Parquet, ccxt) and a seeded synthetic generator.

``Candles`` holds column arrays (numpy) sorted by time: ``ts`` in unix seconds (int64), prices
as float64 (quote per base, a valuation, never an on-chain amount), optional ``sentiment``
scores in [-1, 1] per candle.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from agent.errors import OhlcvError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TIME_COLUMNS = ("timestamp", "ts", "time", "date", "datetime", "open_time")
_SECONDS_PER_YEAR = 365.25 * 86_400


@dataclass(frozen=True)
class Candles:
    """Column arrays of equal length, ascending unique ``ts`` (unix seconds)."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    sentiment: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def slice(self, start: int, stop: int) -> Candles:
        """Candles ``[start, stop)`` (views, no copy)."""
        return Candles(
            self.ts[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            None if self.sentiment is None else self.sentiment[start:stop],
        )

    def to_frame(self) -> pd.DataFrame:
        columns: dict[str, Any] = {
            "timestamp": self.ts,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }
        if self.sentiment is not None:
            columns["sentiment"] = self.sentiment
        return pd.DataFrame(columns)

    def write(self, path: Path) -> None:
        """Write as CSV or Parquet, by the file suffix (``timestamp`` in unix seconds)."""
        frame = self.to_frame()
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)


def candles_from_frame(frame: pd.DataFrame, source: str = "data") -> Candles:
    """Validate and convert a frame with a time column and open/high/low/close[/volume]."""
    columns = {str(c).strip().lower(): c for c in frame.columns}
    time_column = next((columns[name] for name in _TIME_COLUMNS if name in columns), None)
    missing = [name for name in ("open", "high", "low", "close") if name not in columns]
    if time_column is None:
        missing.insert(0, "timestamp")
    if missing:
        raise OhlcvError(f"{source}: missing column(s) {', '.join(missing)}")
    ts = _seconds(frame[time_column], source)
    arrays: dict[str, FloatArray] = {}
    for name in ("open", "high", "low", "close", "volume", "sentiment"):
        if name not in columns:
            continue
        values = pd.to_numeric(frame[columns[name]], errors="coerce").to_numpy(np.float64)
        if np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            raise OhlcvError(
                f"{source}: column {name} has a missing or non-numeric value (row {row})"
            )
        arrays[name] = values
    for name in ("open", "high", "low", "close"):
        if (arrays[name] <= 0).any():
            raise OhlcvError(f"{source}: column {name} must be positive")
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    keep = np.ones(ts.shape[0], dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]  # a repeated timestamp keeps its first row
    index = order[keep]
    ts = ts[keep]
    if ts.shape[0] == 0:
        raise OhlcvError(f"{source}: no candles")
    volume = arrays.get("volume", np.zeros(len(frame), dtype=np.float64))
    sentiment = arrays.get("sentiment")
    return Candles(
        ts=np.ascontiguousarray(ts),
        open=np.ascontiguousarray(arrays["open"][index]),
        high=np.ascontiguousarray(arrays["high"][index]),
        low=np.ascontiguousarray(arrays["low"][index]),
        close=np.ascontiguousarray(arrays["close"][index]),
        volume=np.ascontiguousarray(volume[index]),
        sentiment=None if sentiment is None else np.clip(sentiment[index], -1.0, 1.0),
    )


def _seconds(column: pd.Series[Any], source: str) -> IntArray:
    """Unix seconds from numbers (seconds or milliseconds) or date-time strings (UTC)."""
    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any():
        values = numeric.to_numpy(np.float64)
        # millisecond epochs (ccxt, exchanges) are > 1e11; second epochs are not until 5138
        if values.size and np.nanmax(np.abs(values)) > 1e11:
            values = values / 1000.0
        whole: IntArray = np.floor(values).astype(np.int64)
        return whole
    try:
        parsed = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as exc:
        raise OhlcvError(f"{source}: cannot parse the time column: {exc}") from exc
    if parsed.isna().any():
        raise OhlcvError(f"{source}: the time column has empty values")
    # whatever unit pandas picked (s, ms, us, ns), count whole seconds since the epoch
    elapsed = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    seconds: IntArray = np.asarray(elapsed.to_numpy(), dtype=np.int64)
    return seconds


def load_ohlcv(path: Path | str) -> Candles:
    """Candles from a CSV or Parquet file (by suffix). Raises ``OhlcvError`` when unusable."""
    file = Path(path)
    if not file.is_file():
        raise OhlcvError(f"data file {file} not found")
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise OhlcvError(f"{file}: cannot read: {exc}") from exc
    return candles_from_frame(frame, str(file))


async def fetch_ohlcv(
    exchange: Any,
    symbol: str,
    timeframe: str = "1m",
    since_ms: int | None = None,
    until_ms: int | None = None,
    page_limit: int = 1000,
    max_pages: int = 10_000,
) -> Candles:
    """Page through ``exchange.fetch_ohlcv`` (a ccxt exchange, sync or async) into ``Candles``.

    The exchange object is passed in (configured by the caller: keys, rate limit, session), so
    nothing here opens a connection of its own. ``since_ms``/``until_ms`` are epoch
    milliseconds, as ccxt uses; pages continue after the last candle received.
    """
    rows: list[Sequence[float]] = []
    cursor = since_ms
    for _ in range(max_pages):
        page = exchange.fetch_ohlcv(symbol, timeframe, since=cursor, limit=page_limit)
        if inspect.isawaitable(page):
            page = await page
        page = [row for row in page if until_ms is None or row[0] < until_ms]
        if not page:
            break
        rows.extend(page)
        next_cursor = int(page[-1][0]) + 1
        if cursor is not None and next_cursor <= cursor:
            break
        cursor = next_cursor
        if len(page) < page_limit:
            break
    if not rows:
        raise OhlcvError(f"{symbol}: the exchange returned no candles")
    frame = pd.DataFrame(
        [list(row[:6]) for row in rows],
        columns=["timestamp", "open", "high", "low", "close", "volume"],
    )
    return candles_from_frame(frame, f"{symbol} {timeframe}")


def generate_ohlcv(
    n: int,
    *,
    seed: int = 7,
    start_price: float = 3_000.0,
    annual_vol: float = 0.6,
    half_life_days: float = 20.0,
    interval_s: int = 60,
    start_ts: int = 1_700_000_000 - 1_700_000_000 % 86_400,
) -> Candles:
    """``n`` synthetic candles: a seeded geometric random walk pulled back to ``start_price``.

    The log price is an Ornstein-Uhlenbeck process (mean ``log(start_price)``, reversion
    half-life ``half_life_days``, volatility ``annual_vol`` per sqrt(year)), so a grid keeps
    finding its range and a DCA sees dips. Same arguments, same candles.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    rng = np.random.default_rng(seed)
    step_vol = annual_vol * math.sqrt(interval_s / _SECONDS_PER_YEAR)
    half_life_steps = max(half_life_days * 86_400 / interval_s, 1.0)
    decay = math.log(2) / half_life_steps

    shocks = rng.standard_normal(n) * step_vol
    deviation = np.empty(n, dtype=np.float64)
    # y_t = a*y_{t-1} + e_t solved in chunks in closed form: y_j = a^j (y_0 + sum a^-k e_k);
    # chunks keep a^-k small enough that the cumulative sum stays accurate
    chunk = int(max(1, min(n, 200_000, 5.0 / decay)))
    previous = 0.0
    for begin in range(0, n, chunk):
        end = min(n, begin + chunk)
        k = np.arange(1, end - begin + 1, dtype=np.float64)
        growth = np.exp(decay * k)  # a^-k
        part = np.exp(-decay * k) * (previous + np.cumsum(shocks[begin:end] * growth))
        deviation[begin:end] = part
        previous = float(part[-1])
    close = start_price * np.exp(deviation)
    open_ = np.empty(n, dtype=np.float64)
    open_[0] = start_price
    open_[1:] = close[:-1]
    wick = np.abs(rng.standard_normal((2, n))) * (step_vol / 2)
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.lognormal(mean=3.0, sigma=0.5, size=n)
    ts = start_ts + np.arange(n, dtype=np.int64) * interval_s
    return Candles(ts=ts, open=open_, high=high, low=low, close=close, volume=volume)
