"""Performance metrics of an equity curve and its trades (numpy; floats are for reporting).

Returns are per candle; Sharpe and Sortino are annualised with the candle interval (the median
spacing of the timestamps), with a zero risk-free rate. Drawdowns are fractions (0.25 = 25 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from agent.backtest.data import FloatArray, IntArray
from agent.backtest.execution import Trade

SECONDS_PER_YEAR = 365.25 * 86_400


@dataclass(frozen=True, slots=True)
class Metrics:
    """Headline numbers of a backtest. ``None`` where a figure is undefined (e.g. no drawdown).

    ``win_rate`` is the share of closed trades with a positive realised profit; when a strategy
    never closes a trade (DCA) it is the share of buys worth more at the last close than they
    cost. ``exposure`` is the share of candles with a position; ``avg_exposure`` the mean share
    of equity held in the base token.
    """

    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    calmar: float | None
    win_rate: float | None
    exposure: float
    avg_exposure: float
    trade_count: int
    start_equity: float
    end_equity: float
    years: float

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def drawdown_curve(equity: FloatArray) -> FloatArray:
    """``equity / running peak - 1`` per candle (0 at a new high, negative below it)."""
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, equity / peak - 1.0, 0.0)


def compute_metrics(
    equity: FloatArray,
    ts: IntArray,
    trades: Sequence[Trade],
    exposure: FloatArray,
    base_scale: int,
    quote_scale: int,
    last_price: float,
) -> Metrics:
    """Metrics of ``equity`` (whole quote tokens per candle) sampled at ``ts`` (unix s).

    ``base_scale``/``quote_scale`` are 10**decimals of the tokens; ``last_price`` the last close
    (quote per base), which values the open buys for the win rate.
    """
    n = int(equity.shape[0])
    if n == 0:
        raise ValueError("empty equity curve")
    start, end = float(equity[0]), float(equity[-1])
    total_return = end / start - 1.0 if start > 0 else 0.0
    years = float(ts[-1] - ts[0]) / SECONDS_PER_YEAR if n > 1 else 0.0
    cagr = None
    if years > 0 and start > 0 and end > 0:
        cagr = (end / start) ** (1.0 / years) - 1.0
    sharpe = sortino = None
    if n > 2:
        interval_s = float(np.median(np.diff(ts)))
        periods_per_year = SECONDS_PER_YEAR / interval_s if interval_s > 0 else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = np.diff(equity) / equity[:-1]
        returns = returns[np.isfinite(returns)]
        if returns.size > 1:
            mean = float(returns.mean())
            std = float(returns.std(ddof=1))
            downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
            scale = math.sqrt(periods_per_year)
            sharpe = mean / std * scale if std > 0 else None
            sortino = mean / downside * scale if downside > 0 else None
    max_drawdown = float(-drawdown_curve(equity).min())
    calmar = cagr / max_drawdown if cagr is not None and max_drawdown > 0 else None
    return Metrics(
        total_return=total_return,
        cagr=cagr,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_drawdown,
        calmar=calmar,
        win_rate=_win_rate(trades, last_price, base_scale, quote_scale),
        exposure=float(np.mean(exposure > 0)),
        avg_exposure=float(np.mean(exposure)),
        trade_count=len(trades),
        start_equity=start,
        end_equity=end,
        years=years,
    )


def _win_rate(
    trades: Sequence[Trade], last_price: float, base_scale: int, quote_scale: int
) -> float | None:
    closed = [t.pnl_quote for t in trades if t.pnl_quote is not None]
    if closed:
        return sum(1 for pnl in closed if pnl > 0) / len(closed)
    buys = [t for t in trades if t.side == "buy"]
    if not buys:
        return None
    # nothing was closed (DCA): a buy "wins" when it is worth more at the end than it cost
    wins = sum(
        1
        for t in buys
        if t.base_amount / base_scale * last_price > (t.quote_amount + t.gas_quote) / quote_scale
    )
    return wins / len(buys)
