"""The backtest's report.html: prices with the trades, equity against buy-and-hold, drawdown,
the metrics with units, a per-period table, the walk-forward folds and a grid's range exit.

Buy-and-hold is the starting capital (quote plus base, valued at the first open) put into the
base token at the first candle's open, without fees or gas, and held to the end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from agent.analytics.html import (
    Chart,
    NoteSection,
    Page,
    Section,
    TableSection,
    money,
    money_axis,
    new_figure,
    percent,
    render,
    svg_of,
)
from agent.analytics.periods import choose_period, per_period
from agent.backtest.data import FloatArray
from agent.backtest.engine import BacktestResult
from agent.backtest.metrics import Metrics, drawdown_curve
from agent.backtest.plots import _thin


def start_capital(result: BacktestResult) -> float:
    """The starting balances in whole quote tokens, the base valued at the first open."""
    settings = result.settings
    base_scale: int = 10**settings.base_decimals
    quote_scale: int = 10**settings.quote_decimals
    held = settings.initial_base_units / base_scale * float(result.candles.open[0])
    return settings.initial_quote_units / quote_scale + held


def buy_and_hold(result: BacktestResult) -> FloatArray:
    """Per candle, the starting capital held in the base token from the first open."""
    candles = result.candles
    base_held = start_capital(result) / float(candles.open[0])
    curve: FloatArray = base_held * candles.close
    return curve


def _dates(ts: Any) -> Any:
    return np.asarray(ts, dtype=np.int64).astype("datetime64[s]").astype("datetime64[ms]")


def _iso_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M")


def metric_rows(metrics: Metrics, quote_symbol: str) -> list[tuple[str, str]]:
    """The metrics as (label, value with its unit): fractions as percentages, equity in the
    quote token, ratios with two decimals."""

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    days = metrics.years * 365.25
    span = f"{days:,.1f} days" if days < 365.25 else f"{metrics.years:,.2f} years"
    return [
        ("total return", percent(metrics.total_return)),
        ("CAGR (per year)", percent(metrics.cagr)),
        ("Sharpe (annualised)", ratio(metrics.sharpe)),
        ("Sortino (annualised)", ratio(metrics.sortino)),
        ("max drawdown", percent(metrics.max_drawdown, signed=False)),
        ("Calmar", ratio(metrics.calmar)),
        ("win rate", percent(metrics.win_rate, digits=1, signed=False)),
        ("time in market", percent(metrics.exposure, digits=1, signed=False)),
        ("average exposure", percent(metrics.avg_exposure, digits=1, signed=False)),
        ("trades", f"{metrics.trade_count:,}"),
        ("start equity", money(metrics.start_equity, quote_symbol)),
        ("end equity", money(metrics.end_equity, quote_symbol)),
        ("span", span),
    ]


def _trading_window(result: BacktestResult) -> tuple[int, int] | None:
    """Candles ``[start, stop)`` around the trades and the range exit when they crowd into
    less than a quarter of the data (a grid that stops early): there the whole-period chart
    piles every marker onto a few pixels, so the page adds a close-up. None otherwise."""
    at = [t.candle for t in result.trades]
    exit_ = result.extra.get("range_exit")
    if exit_ is not None:
        at.append(int(exit_["candle"]))
    total = len(result.candles)
    if not at or (max(at) - min(at) + 1) * 4 >= total:
        return None
    margin = (max(at) - min(at)) // 5 + 10
    return max(0, min(at) - margin), min(total, max(at) + margin + 1)


def _price_chart(result: BacktestResult, window: tuple[int, int] | None = None) -> str:
    """Closes with the trades and the range exit; ``window``: only those candles (the
    close-up, whose series ids end in ``-close-up``)."""
    start, stop = window or (0, len(result.candles))
    candles = result.candles.slice(start, stop)
    suffix = "" if window is None else "-close-up"
    figure, axes = new_figure(4.2)
    xs, ys = _thin(candles.ts, candles.close)
    axes.plot(xs, ys, linewidth=0.8, color="#57606a", label="close", gid=f"price-series{suffix}")
    for side, color, marker in (("buy", "#1a7f37", "^"), ("sell", "#cf222e", "v")):
        trades = [t for t in result.trades if t.side == side and start <= t.candle < stop]
        axes.plot(
            _dates([t.ts for t in trades]),
            [t.price for t in trades],
            linestyle="none",
            marker=marker,
            markersize=6,
            color=color,
            # a white edge keeps markers apart where trades crowd; above the range exit
            markeredgecolor="white",
            markeredgewidth=0.6,
            zorder=4,
            label=f"{side}s ({len(trades):,})",
            gid=f"{side}-markers{suffix}",
        )
    exit_ = result.extra.get("range_exit")
    if exit_ is not None:
        when = _dates([exit_["ts"]])
        axes.axvline(when[0], color="#9a6700", linestyle="--", linewidth=1)
        axes.plot(
            when,
            [exit_["price"]],
            linestyle="none",
            marker="X",
            markersize=11,
            color="#9a6700",
            alpha=0.8,
            zorder=3,
            label="range exit: grid stopped",
            gid=f"range-exit{suffix}",
        )
    levels = result.extra.get("levels")
    if result.strategy == "grid" and levels and not result.extra.get("recenters"):
        for level in levels:  # recentred grids moved their levels: only fixed ones are drawn
            axes.axhline(level, color="#d0d7de", linewidth=0.6, zorder=0)
    axes.set_ylabel(f"{result.settings.quote_symbol} per {result.settings.base_symbol}")
    axes.legend(loc="best", fontsize="small")
    return svg_of(figure)


def _equity_chart(result: BacktestResult, hold: FloatArray) -> str:
    candles = result.candles
    figure, axes = new_figure()
    xs, ys = _thin(candles.ts, result.equity)
    axes.plot(xs, ys, linewidth=1.0, color="#0969da", label=result.strategy, gid="equity-series")
    hx, hy = _thin(candles.ts, hold)
    axes.plot(
        hx, hy, linewidth=1.0, color="#8250df", linestyle="--", label="buy and hold",
        gid="benchmark-series",
    )  # fmt: skip
    axes.set_ylabel(result.settings.quote_symbol)
    money_axis(axes.yaxis)
    axes.legend(loc="best", fontsize="small")
    return svg_of(figure)


def _drawdown_chart(result: BacktestResult) -> str:
    figure, axes = new_figure(2.8)
    xs, ys = _thin(result.candles.ts, drawdown_curve(result.equity) * 100.0)
    axes.plot(xs, ys, linewidth=0.8, color="#cf222e", gid="drawdown-series")
    axes.fill_between(xs, ys, 0, color="#cf222e", alpha=0.25)
    axes.set_ylabel("% below peak")
    return svg_of(figure)


def _period_table(result: BacktestResult) -> TableSection:
    quote = result.settings.quote_symbol
    scale = 10**result.settings.quote_decimals
    trades = [(t.ts, None if t.pnl_quote is None else t.pnl_quote / scale) for t in result.trades]
    ts = result.candles.ts
    unit = choose_period(int(ts[0]), int(ts[-1]))
    rows = per_period(ts, result.equity, trades, unit)
    return TableSection(
        title=f"per {unit}",
        columns=("from", "trades", f"realised PnL ({quote})", f"equity ({quote})", "return"),
        rows=[
            (
                r.start,
                f"{r.trades:,}",
                f"{r.realised_pnl:+,.2f}",
                f"{r.end_equity:,.2f}",
                percent(r.period_return),
            )
            for r in rows
        ],
        note="Realised PnL: closed grid round trips after fees and gas (DCA never closes one). "
        "Return: the period's last equity over the previous period's.",
        element_id="periods",
    )


def _walk_forward_table(folds: list[dict[str, Any]]) -> TableSection:
    rows = []
    for fold in folds:
        tested = fold["test_metrics"]
        objective = fold.get("train_objective")
        rows.append(
            (
                str(fold["fold"]),
                f"{_iso_day(fold['train'][0])} to {_iso_day(fold['train'][1])}",
                f"{_iso_day(fold['test'][0])} to {_iso_day(fold['test'][1])}",
                str(fold["chosen"]),
                "-" if objective is None else f"{objective:,.2f}",
                percent(tested["total_return"]),
                "-" if tested["sharpe"] is None else f"{tested['sharpe']:,.2f}",
                percent(tested["max_drawdown"], signed=False),
                f"{tested['trade_count']:,}",
            )
        )
    return TableSection(
        title="walk-forward",
        columns=(
            "fold",
            "train (UTC)",
            "test (UTC)",
            "chosen",
            "train Sharpe",
            "test return",
            "test Sharpe",
            "test max drawdown",
            "test trades",
        ),
        rows=rows,
        note="Each fold picks the candidate with the best Sharpe on its training window and "
        "scores it on the test window after it.",
        element_id="walk-forward",
    )


def render_backtest_html(
    result: BacktestResult,
    metrics: Metrics,
    data_source: str,
    walk_forward: list[dict[str, Any]] | None = None,
) -> str:
    """The whole report page for ``result`` (see the module docstring)."""
    candles = result.candles
    settings = result.settings
    hold = buy_and_hold(result)
    hold_return = float(hold[-1]) / start_capital(result) - 1.0 if len(hold) else None
    rows = metric_rows(metrics, settings.quote_symbol)
    rows.insert(1, ("buy and hold", percent(hold_return)))
    sections: list[Section] = []
    exit_ = result.extra.get("range_exit")
    if exit_ is not None:
        sections.append(
            NoteSection(
                "range exit",
                [
                    f"The grid stopped at {_iso_day(exit_['ts'])} UTC (candle "
                    f"{exit_['candle']:,}): {exit_['reason']}. It traded no more after that.",
                ],
                warning=True,
            )
        )
    sections += [
        Chart(
            "price and trades",
            _price_chart(result),
            note="Candle closes; triangles up are buys, down are sells, at their fill price.",
        ),
        Chart(
            "equity against buy-and-hold",
            _equity_chart(result, hold),
            note="Buy and hold: the starting capital in "
            f"{settings.base_symbol} at the first open, no fees or gas.",
        ),
        Chart("drawdown", _drawdown_chart(result)),
    ]
    window = _trading_window(result)
    if window is not None:
        first_ts, last_ts = (int(result.candles.ts[i]) for i in (window[0], window[1] - 1))
        sections.insert(
            -2,
            Chart(
                "trades close up",
                _price_chart(result, window),
                note=f"Candles {window[0]:,} to {window[1] - 1:,} ({_iso_day(first_ts)} to "
                f"{_iso_day(last_ts)} UTC), where every trade was made.",
            ),
        )
    sections.append(_period_table(result))
    if walk_forward:
        sections.append(_walk_forward_table(walk_forward))
    first, last = _iso_day(int(candles.ts[0])), _iso_day(int(candles.ts[-1]))
    return render(
        Page(
            title=f"{result.strategy} backtest, {settings.base_symbol}/{settings.quote_symbol}",
            subtitle=f"{len(candles):,} candles from {data_source}, {first} to {last} UTC",
            metrics=rows,
            sections=sections,
        )
    )
