"""Equity and drawdown PNGs (matplotlib's Agg canvas: no display, no pyplot global state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from agent.backtest.data import FloatArray, IntArray
from agent.backtest.metrics import drawdown_curve

MAX_POINTS = 4_000


def _thin(ts: IntArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """At most ~``MAX_POINTS`` points: per-bucket min and max, so spikes stay visible."""
    n = values.shape[0]
    dates = ts.astype("datetime64[s]").astype("datetime64[ms]")
    if n <= MAX_POINTS:
        return dates, values
    buckets = MAX_POINTS // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    lows = np.minimum.reduceat(values, edges[:-1])
    highs = np.maximum.reduceat(values, edges[:-1])
    xs = np.repeat(dates[edges[:-1]], 2)
    ys = np.empty(2 * buckets)
    ys[0::2], ys[1::2] = lows, highs
    return xs, ys


def _save(
    path: Path, ts: IntArray, values: FloatArray, title: str, ylabel: str, fill: bool
) -> None:
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs, ys = _thin(ts, values)
    axes.plot(xs, ys, linewidth=0.8, color="tab:red" if fill else "tab:blue")
    if fill:
        axes.fill_between(xs, ys, 0, color="tab:red", alpha=0.3)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def plot_equity(path: Path, ts: IntArray, equity: FloatArray, quote_symbol: str) -> None:
    """Equity per candle, in whole quote tokens."""
    _save(path, ts, equity, "Equity", quote_symbol, fill=False)


def plot_drawdown(path: Path, ts: IntArray, equity: FloatArray) -> None:
    """Drawdown from the running peak, in percent."""
    _save(path, ts, drawdown_curve(equity) * 100.0, "Drawdown", "% below peak", fill=True)
