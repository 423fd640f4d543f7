"""The report folder of a backtest: report.json, report.html (self-contained: prices and trades,
equity against buy-and-hold, drawdown, per-period and walk-forward tables), equity.png,
drawdown.png, trades.csv."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.backtest.engine import BacktestResult
from agent.backtest.metrics import Metrics, compute_metrics
from agent.backtest.plots import plot_drawdown, plot_equity

REPORT_FILES = ("report.json", "report.html", "equity.png", "drawdown.png", "trades.csv")
TRADE_COLUMNS = (
    "candle",
    "timestamp",
    "side",
    "price",
    "base_amount",
    "quote_amount",
    "fee_quote",
    "gas_quote",
    "pnl_quote",
    "note",
)


def result_metrics(result: BacktestResult) -> Metrics:
    """``compute_metrics`` for a backtest result, measured from the capital before any trade.

    The starting point (initial balances at the first candle's open) is put in front of the
    per-candle curve, so the first trade's fee and gas count against the return.
    """
    settings = result.settings
    candles = result.candles
    base_scale, quote_scale = 10**settings.base_decimals, 10**settings.quote_decimals
    held = settings.initial_base_units / base_scale * float(candles.open[0])
    start = settings.initial_quote_units / quote_scale + held
    return compute_metrics(
        np.concatenate(([start], result.equity)),
        np.concatenate((candles.ts[:1], candles.ts)),
        result.trades,
        np.concatenate(([held / start if start > 0 else 0.0], result.exposure)),
        base_scale,
        quote_scale,
        float(candles.close[-1]),
    )


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def write_trades_csv(path: Path, result: BacktestResult) -> None:
    """One row per trade; amounts in smallest units (base/quote), prices quote per base."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRADE_COLUMNS)
        for t in result.trades:
            writer.writerow(
                (
                    t.candle,
                    _iso(t.ts),
                    t.side,
                    repr(t.price),
                    t.base_amount,
                    t.quote_amount,
                    t.fee_quote,
                    t.gas_quote,
                    "" if t.pnl_quote is None else t.pnl_quote,
                    t.note,
                )
            )


def write_report(
    result: BacktestResult,
    out_dir: Path,
    data_source: str,
    walk_forward: list[dict[str, Any]] | None = None,
) -> Path:
    """Write the report files (``REPORT_FILES``) into ``out_dir`` (created); returns
    report.json's path."""
    from agent.backtest.html import buy_and_hold, render_backtest_html, start_capital

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = result_metrics(result)
    settings = result.settings
    candles = result.candles
    report: dict[str, Any] = {
        "strategy": result.strategy,
        "params": result.params.model_dump(mode="json"),
        "settings": settings.model_dump(mode="json"),
        "data": {
            "source": data_source,
            "candles": len(candles),
            "start": _iso(int(candles.ts[0])),
            "end": _iso(int(candles.ts[-1])),
        },
        "metrics": metrics.to_dict(),
        # the starting capital in the base token at the first open, held (no fees, no gas)
        "buy_and_hold_return": float(buy_and_hold(result)[-1]) / start_capital(result) - 1.0,
        "final_balances": {
            f"{settings.quote_symbol}_units": str(result.final_quote),
            f"{settings.base_symbol}_units": str(result.final_base),
        },
        "details": result.extra,
    }
    if walk_forward is not None:
        report["walk_forward"] = walk_forward
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    plot_equity(out_dir / "equity.png", candles.ts, result.equity, settings.quote_symbol)
    plot_drawdown(out_dir / "drawdown.png", candles.ts, result.equity)
    write_trades_csv(out_dir / "trades.csv", result)
    page = render_backtest_html(result, metrics, data_source, walk_forward)
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return report_path
