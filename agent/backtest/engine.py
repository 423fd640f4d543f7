"""Grid and DCA backtests through the live decision cores (``GridBook``, ``DcaSchedule``).

Each strategy has one *step* function that asks its core what to do at a candle and executes
the answer on the ledger; there is no second copy of the strategy here. Two drivers call it:

- ``per_candle``: the straightforward loop, the step on every candle and the equity computed
  candle by candle in Python. It is the reference (and the benchmark baseline).
- ``vectorised``: numpy finds the next candle where the core can act and calls the step only
  there. The grid book states the price interval in which it would change nothing
  (``GridBook.quiet_range``); one array comparison over the closes finds the first candle
  outside it. The DCA schedule states its next due time; ``np.searchsorted`` on the timestamps
  finds the first candle at or after it, and the dip's rolling high is a numpy max over that
  candle's lookback window. The equity curve is built from the balances after each trade with
  array operations.

Between those candles the cores answer "nothing" by construction, so both drivers produce
identical trades and equity curves; tests and ``scripts/bench_backtest.py`` check it.

Decisions and fills use each candle's close (a level crossed and re-crossed inside one candle
is not traded); fills pay the pool fee and slippage of ``BacktestSettings`` and its gas per swap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from rich.progress import Progress, TaskID

from agent.backtest.data import Candles, FloatArray
from agent.backtest.execution import BacktestSettings, CostModel, Ledger, Trade
from strategies.dca import DcaParams, DcaSchedule
from strategies.grid import GridBook, GridParams, book_from_params

Driver = Literal["vectorised", "per_candle"]


@dataclass
class BacktestResult:
    """Trades, the per-candle equity (whole quote tokens) and position value share."""

    strategy: str
    params: BaseModel
    settings: BacktestSettings
    candles: Candles
    trades: list[Trade]
    equity: FloatArray
    exposure: FloatArray  # value of the base held / equity, per candle
    final_quote: int
    final_base: int
    extra: dict[str, Any] = field(default_factory=dict)


class _Tracker:
    """Rich progress over candle positions, updated at most every ``every`` candles."""

    def __init__(self, progress: Progress | None, task: TaskID | None, every: int = 50_000):
        self.progress = progress
        self.task = task
        self.every = every
        self.shown = 0

    def at(self, position: int, force: bool = False) -> None:
        if self.progress is None or self.task is None:
            return
        if force or position - self.shown >= self.every:
            self.progress.update(self.task, completed=position)
            self.shown = position


# --- grid ------------------------------------------------------------------------------------


def grid_step(
    book: GridBook, costs: CostModel, ledger: Ledger, index: int, ts: int, price: float
) -> None:
    """Ask the book about the close ``price`` of candle ``index`` and execute its orders."""
    orders = book.on_price(price, index)
    for order in orders:
        if order.side == "buy":
            quote_in, fee = costs.quote_for_base(order.base_amount, price)
            if quote_in + costs.gas_quote > ledger.quote:
                book.cancel(order.id)
                continue
            ledger.quote -= quote_in + costs.gas_quote
            ledger.base += order.base_amount
            book.apply_fill(order.id, order.base_amount, quote_in)
            ledger.trades.append(
                Trade(
                    index,
                    ts,
                    "buy",
                    price,
                    order.base_amount,
                    quote_in,
                    fee,
                    costs.gas_quote,
                    None,
                    f"L{order.level}",
                )
            )
        else:
            quote_out, fee = costs.quote_from_base(order.base_amount, price)
            if order.base_amount > ledger.base or quote_out + ledger.quote < costs.gas_quote:
                book.cancel(order.id)
                continue
            ledger.quote += quote_out - costs.gas_quote
            ledger.base -= order.base_amount
            realized = book.apply_fill(order.id, order.base_amount, quote_out)
            ledger.trades.append(
                Trade(
                    index,
                    ts,
                    "sell",
                    price,
                    order.base_amount,
                    quote_out,
                    fee,
                    costs.gas_quote,
                    realized - 2 * costs.gas_quote,
                    f"L{order.level}",
                )
            )


def run_grid(
    candles: Candles,
    params: GridParams,
    settings: BacktestSettings,
    driver: Driver = "vectorised",
    progress: Progress | None = None,
) -> BacktestResult:
    """Backtest ``params`` on the candle closes; see the module docstring for the drivers."""
    book = book_from_params(params, settings.base_decimals)
    costs = CostModel.from_settings(settings)
    ledger = Ledger(settings.initial_quote_units, settings.initial_base_units)
    task = progress.add_task(f"grid ({driver})", total=len(candles)) if progress else None
    tracker = _Tracker(progress, task)
    if driver == "per_candle":
        equity, exposure, stopped_at = _grid_per_candle(
            book, costs, ledger, candles, settings, tracker
        )
    else:
        stopped_at = _grid_events(book, costs, ledger, candles, tracker)
        equity, exposure = _equity_from_trades(candles, settings, ledger.trades)
    tracker.at(len(candles), force=True)
    extra: dict[str, Any] = {
        "levels": list(book.levels),
        "recenters": book.recenters,
        "stopped": book.stopped,
        "realized_quote": str(book.realized_quote),
        "inventory_base": str(book.inventory),
    }
    if stopped_at is not None:
        extra["range_exit"] = _range_exit(book, params, candles, stopped_at)
    return BacktestResult(
        "grid",
        params,
        settings,
        candles,
        ledger.trades,
        equity,
        exposure,
        ledger.quote,
        ledger.base,
        extra,
    )


def _range_exit(book: GridBook, params: GridParams, candles: Candles, index: int) -> dict[str, Any]:
    """Where and why the grid stopped trading (for the report's marker and table)."""
    price = float(candles.close[index])
    low, high = book.levels[0], book.levels[-1]
    if params.on_range_exit == "stop":
        reason = f"price {price:,.6g} left the range [{low:,.6g}, {high:,.6g}]"
    else:  # a recentre that would put the lower bound at or below zero
        reason = f"price {price:,.6g} left the range and the grid cannot be recentred there"
    return {
        "candle": index,
        "ts": int(candles.ts[index]),
        "price": price,
        "range": [low, high],
        "reason": reason,
    }


def _grid_per_candle(
    book: GridBook,
    costs: CostModel,
    ledger: Ledger,
    candles: Candles,
    settings: BacktestSettings,
    tracker: _Tracker,
) -> tuple[FloatArray, FloatArray, int | None]:
    """Equity and exposure per candle, and the candle at which the grid stopped (or None)."""
    ts = candles.ts.tolist()
    close = candles.close.tolist()
    base_scale, quote_scale = 10**settings.base_decimals, 10**settings.quote_decimals
    equity: list[float] = []
    exposure: list[float] = []
    stopped_at: int | None = None
    track = tracker.progress is not None
    for i in range(len(close)):
        grid_step(book, costs, ledger, i, ts[i], close[i])
        if stopped_at is None and book.stopped:
            stopped_at = i
        held = ledger.base / base_scale * close[i]
        value = ledger.quote / quote_scale + held
        equity.append(value)
        exposure.append(held / value if value > 0 else 0.0)
        if track and not i & 0xFFFF:  # the bar costs nothing when it is off
            tracker.at(i)
    return np.asarray(equity), np.asarray(exposure), stopped_at


def _grid_events(
    book: GridBook, costs: CostModel, ledger: Ledger, candles: Candles, tracker: _Tracker
) -> int | None:
    """Trade the candles where the book acts; the candle at which it stopped (or None)."""
    close = candles.close
    ts = candles.ts
    n = len(candles)
    track = tracker.progress is not None
    index = 0
    while index < n:
        grid_step(book, costs, ledger, index, ts.item(index), close.item(index))
        if track:
            tracker.at(index)
        quiet = book.quiet_range()
        if quiet is None:  # pragma: no cover - backtest fills settle inside the step
            index += 1
        elif book.stopped:
            return index
        else:
            index = first_outside(close, index + 1, quiet[0], quiet[1])
    return None


def first_outside(prices: FloatArray, start: int, low: float, high: float) -> int:
    """Index of the first price at or after ``start`` not in ``[low, high)``; len when none.

    Scans windows that grow fourfold, so a long quiet stretch costs a few numpy passes and a
    short one does not pay for the whole remaining series.
    """
    n = int(prices.shape[0])
    size = 256
    while start < n:
        end = min(n, start + size)
        window = prices[start:end]
        outside = (window < low) | (window >= high)
        first = int(outside.argmax())  # argmax of a bool array stops at the first True
        if outside[first]:
            return start + first
        start = end
        size = min(size * 4, 1 << 20)
    return n


# --- DCA -------------------------------------------------------------------------------------


def dca_step(
    schedule: DcaSchedule,
    costs: CostModel,
    ledger: Ledger,
    index: int,
    ts: int,
    price: float,
    recent_high: float,
    sentiment: float,
    up_probability: float | None = None,
) -> None:
    """Ask the schedule about candle ``index`` and execute its buy, if any."""
    order = schedule.decide(float(ts), price, recent_high, sentiment, up_probability)
    if order is None:
        return
    if order.amount_in + costs.gas_quote > ledger.quote:
        return  # not enough quote left: the slot is skipped, as live
    base_out, fee = costs.base_for_quote(order.amount_in, price)
    ledger.quote -= order.amount_in + costs.gas_quote
    ledger.base += base_out
    ledger.trades.append(
        Trade(
            index,
            ts,
            "buy",
            price,
            base_out,
            order.amount_in,
            fee,
            costs.gas_quote,
            None,
            f"x{order.multiplier:g}",
        )
    )


def run_dca(
    candles: Candles,
    params: DcaParams,
    settings: BacktestSettings,
    driver: Driver = "vectorised",
    progress: Progress | None = None,
) -> BacktestResult:
    """Backtest the DCA schedule on the candle closes (sentiment column if present, else 0).

    With ``params.ml_weight > 0`` each candle's ML up-probability is computed walk-forward first
    (``agent.research.signal``; each candle of the data is one ML candle).
    """
    schedule = DcaSchedule.from_params(params, settings.quote_decimals)
    signal = _ml_predictions(candles, params)
    costs = CostModel.from_settings(settings)
    ledger = Ledger(settings.initial_quote_units, settings.initial_base_units)
    task = progress.add_task(f"dca ({driver})", total=len(candles)) if progress else None
    tracker = _Tracker(progress, task)
    if driver == "per_candle":
        equity, exposure = _dca_per_candle(
            schedule, costs, ledger, candles, params, settings, tracker, signal
        )
    else:
        _dca_events(schedule, costs, ledger, candles, params, tracker, signal)
        equity, exposure = _equity_from_trades(candles, settings, ledger.trades)
    tracker.at(len(candles), force=True)
    return BacktestResult(
        "dca",
        params,
        settings,
        candles,
        ledger.trades,
        equity,
        exposure,
        ledger.quote,
        ledger.base,
        {"buys": schedule.buys},
    )


def _ml_predictions(candles: Candles, params: DcaParams) -> FloatArray | None:
    if params.ml_weight <= 0:
        return None
    # imported here: scikit-learn only loads for a backtest that uses the signal
    from agent.research.signal import SignalConfig, walk_forward_predictions

    config = SignalConfig(
        retrain_every=params.ml_retrain_every, train_window=params.ml_train_window
    )
    return walk_forward_predictions(candles, config)


def _probability(signal: FloatArray | None, index: int) -> float | None:
    if signal is None:
        return None
    value = float(signal[index])
    return None if math.isnan(value) else value


def _dca_per_candle(
    schedule: DcaSchedule,
    costs: CostModel,
    ledger: Ledger,
    candles: Candles,
    params: DcaParams,
    settings: BacktestSettings,
    tracker: _Tracker,
    signal: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    ts = candles.ts.tolist()
    high = candles.high.tolist()
    close = candles.close.tolist()
    sentiment = candles.sentiment.tolist() if candles.sentiment is not None else None
    lookback = params.dip_lookback_s
    base_scale, quote_scale = 10**settings.base_decimals, 10**settings.quote_decimals
    window: deque[tuple[int, float]] = deque()  # (ts, high), highs decreasing
    equity: list[float] = []
    exposure: list[float] = []
    track = tracker.progress is not None
    for i in range(len(close)):
        now = ts[i]
        while window and window[-1][1] <= high[i]:
            window.pop()
        window.append((now, high[i]))
        while window[0][0] <= now - lookback:
            window.popleft()
        dca_step(
            schedule,
            costs,
            ledger,
            i,
            now,
            close[i],
            window[0][1],
            sentiment[i] if sentiment is not None else 0.0,
            _probability(signal, i),
        )
        held = ledger.base / base_scale * close[i]
        value = ledger.quote / quote_scale + held
        equity.append(value)
        exposure.append(held / value if value > 0 else 0.0)
        if track and not i & 0xFFFF:  # the bar costs nothing when it is off
            tracker.at(i)
    return np.asarray(equity), np.asarray(exposure)


def _dca_events(
    schedule: DcaSchedule,
    costs: CostModel,
    ledger: Ledger,
    candles: Candles,
    params: DcaParams,
    tracker: _Tracker,
    signal: FloatArray | None = None,
) -> None:
    ts = candles.ts
    close = candles.close
    high = candles.high
    sentiment = candles.sentiment
    lookback = params.dip_lookback_s
    n = len(candles)
    index = 0
    while index < n:
        now = int(ts[index])
        # the rolling high over (now - lookback, now], only where the schedule is asked
        first = int(np.searchsorted(ts, np.int64(math.floor(now - lookback)), side="right"))
        recent_high = float(high[first : index + 1].max())
        score = float(sentiment[index]) if sentiment is not None else 0.0
        dca_step(
            schedule,
            costs,
            ledger,
            index,
            now,
            float(close[index]),
            recent_high,
            score,
            _probability(signal, index),
        )
        tracker.at(index)
        due = schedule.next_due_ts
        if due is None:  # pragma: no cover - decide() always sets it
            break
        # the first candle at or after the due time (int seconds: ts >= due <=> ts >= ceil(due))
        due_index = int(np.searchsorted(ts, np.int64(math.ceil(due)), side="left"))
        index = max(index + 1, due_index)


# --- equity ----------------------------------------------------------------------------------


def _equity_from_trades(
    candles: Candles, settings: BacktestSettings, trades: list[Trade]
) -> tuple[FloatArray, FloatArray]:
    """Per-candle equity and exposure from the balances after each trade (array operations).

    The same float operations as the per-candle loop (quote/scale + base/scale * close), so the
    two drivers' curves are equal, not just close.
    """
    base_scale, quote_scale = 10**settings.base_decimals, 10**settings.quote_decimals
    quote, base = settings.initial_quote_units, settings.initial_base_units
    # balances hold from the candle of a trade on; several trades in one candle: the last wins
    starts = [0]
    quote_after = [quote / quote_scale]
    base_after = [base / base_scale]
    for trade in trades:
        if trade.side == "buy":
            quote -= trade.quote_amount + trade.gas_quote
            base += trade.base_amount
        else:
            quote += trade.quote_amount - trade.gas_quote
            base -= trade.base_amount
        if trade.candle != starts[-1]:
            starts.append(trade.candle)
            quote_after.append(0.0)
            base_after.append(0.0)
        quote_after[-1] = quote / quote_scale
        base_after[-1] = base / base_scale
    counts = np.diff(np.asarray([*starts, len(candles)]))
    quote_f = np.repeat(np.asarray(quote_after), counts)
    held = np.repeat(np.asarray(base_after), counts) * candles.close
    equity = quote_f + held
    exposure = np.zeros_like(equity)
    np.divide(held, equity, out=exposure, where=equity > 0)
    return equity, exposure


Runner = Callable[..., BacktestResult]
RUNNERS: dict[str, Runner] = {"grid": run_grid, "dca": run_dca}
