"""Backtests: both drivers trade identically, costs are charged, reports are written, data loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.backtest.data import Candles, generate_ohlcv, load_ohlcv
from agent.backtest.engine import run_dca, run_grid
from agent.backtest.execution import BacktestSettings, CostModel
from agent.backtest.metrics import compute_metrics
from agent.backtest.report import REPORT_FILES, result_metrics, write_report
from agent.backtest.walkforward import walk_forward, walk_forward_splits
from agent.cli import main
from agent.errors import OhlcvError
from strategies.dca import DcaParams
from strategies.grid import GridParams

SETTINGS = BacktestSettings(initial_quote=50_000)


@pytest.fixture(scope="module")
def candles() -> Candles:
    # ~2 weeks of minutes, volatile enough to cross a tight grid often and leave its range
    return generate_ohlcv(20_000, seed=11, annual_vol=1.2, half_life_days=3.0)


def grid(**overrides: object) -> GridParams:
    values: dict[str, object] = {
        "lower_price": 2_900,
        "upper_price": 3_100,
        "levels": 11,
        "order_size": "0.5",
    }
    values.update(overrides)
    return GridParams.model_validate(values)


def dca(**overrides: object) -> DcaParams:
    values: dict[str, object] = {
        "amount": 250,
        "interval_s": 3_600,
        "dip_lookback_s": 86_400,
        "dip_threshold_pct": 1.0,
        "dip_multiplier": 2.0,
    }
    values.update(overrides)
    return DcaParams.model_validate(values)


@pytest.mark.parametrize(
    ("params", "min_trades"),
    [
        (grid(), 10),
        (grid(on_range_exit="recenter"), 10),
        (grid(spacing="geometric", levels=30, on_range_exit="recenter"), 10),
        (grid(order_size="8", on_range_exit="recenter"), 10),  # funds run out: refusals too
        (grid(lower_price=2_700, upper_price=2_990), 2),  # starts above its range and waits
    ],
    ids=["stop", "recenter", "geometric", "underfunded", "starts-outside"],
)
def test_grid_vectorised_and_per_candle_drivers_make_identical_trades(
    candles: Candles, params: GridParams, min_trades: int
) -> None:
    fast = run_grid(candles, params, SETTINGS, "vectorised")
    slow = run_grid(candles, params, SETTINGS, "per_candle")
    assert len(fast.trades) >= min_trades
    assert fast.trades == slow.trades
    assert np.array_equal(fast.equity, slow.equity)
    assert np.array_equal(fast.exposure, slow.exposure)
    assert (fast.final_quote, fast.final_base) == (slow.final_quote, slow.final_base)


def test_grid_recenters_when_the_price_leaves_the_range(candles: Candles) -> None:
    stopped = run_grid(candles, grid(), SETTINGS)
    moving = run_grid(candles, grid(on_range_exit="recenter"), SETTINGS)
    assert stopped.extra["stopped"] and not moving.extra["stopped"]
    assert moving.extra["recenters"] > 0
    assert len(moving.trades) > len(stopped.trades)


@pytest.mark.parametrize(
    "params",
    [dca(), dca(interval_s=None, cron="30 */6 * * *"), dca(amount=5_000)],
    ids=["interval", "cron", "underfunded"],
)
def test_dca_vectorised_and_per_candle_drivers_make_identical_trades(
    candles: Candles, params: DcaParams
) -> None:
    fast = run_dca(candles, params, SETTINGS, "vectorised")
    slow = run_dca(candles, params, SETTINGS, "per_candle")
    assert len(fast.trades) > 5
    assert fast.trades == slow.trades
    assert np.array_equal(fast.equity, slow.equity)


def test_dca_uses_a_sentiment_column_when_the_data_has_one(candles: Candles) -> None:
    fearful = Candles(
        candles.ts,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
        sentiment=np.full(len(candles), -0.9),
    )
    params = dca(dip_multiplier=1.0, fear_multiplier=2.0, max_multiplier=2.0)
    rich = BacktestSettings(initial_quote=1_000_000)
    calm = run_dca(candles, params, rich)
    scared = run_dca(fearful, params, rich)
    assert [t.quote_amount for t in scared.trades] == [2 * t.quote_amount for t in calm.trades]
    assert run_dca(fearful, params, rich, "per_candle").trades == scared.trades


def test_dca_dip_buys_double_exactly_where_the_close_is_below_the_recent_high(
    candles: Candles,
) -> None:
    result = run_dca(candles, dca(), SETTINGS)
    high = pd.Series(candles.high, index=pd.to_datetime(candles.ts, unit="s"))
    rolling = high.rolling(pd.Timedelta(seconds=86_400)).max().to_numpy()
    for trade in result.trades:
        dipped = trade.price * 100 <= rolling[trade.candle] * 99
        assert trade.quote_amount == (500 if dipped else 250) * 10**6
    assert {t.quote_amount for t in result.trades} == {250 * 10**6, 500 * 10**6}


def test_costs_round_against_the_trader_and_gas_is_charged() -> None:
    costs = CostModel.from_settings(BacktestSettings(fee_pips=3000, slippage_bps=10, gas_usd=2.5))
    quote_in, fee = costs.quote_for_base(10**18, 3_000.0)  # buy 1 WETH at 3,000
    assert quote_in == math.ceil(3_000 * 10**6 / 0.997 * 1.001) and fee == quote_in - 3_000 * 10**6
    quote_out, fee = costs.quote_from_base(10**18, 3_000.0)
    assert quote_out == 3_000 * 10**6 * 997 * 9_990 // (1_000 * 10_000)
    base_out, _ = costs.base_for_quote(3_000 * 10**6, 3_000.0)
    assert base_out < 10**18 * 0.997
    assert costs.gas_quote == 2_500_000


def test_metrics_of_a_known_curve() -> None:
    year = int(365.25 * 86_400)
    ts = np.array([0, year // 4, year // 2, 3 * year // 4, year], dtype=np.int64)
    equity = np.array([100.0, 120.0, 90.0, 150.0, 200.0])
    exposure = np.array([0.0, 0.5, 0.5, 0.0, 0.0])
    metrics = compute_metrics(equity, ts, [], exposure, 10**18, 10**6, 1.0)
    assert metrics.total_return == pytest.approx(1.0)
    assert metrics.cagr == pytest.approx(1.0)
    assert metrics.max_drawdown == pytest.approx(0.25)  # 120 -> 90
    assert metrics.calmar == pytest.approx(4.0)
    assert metrics.exposure == pytest.approx(0.4) and metrics.avg_exposure == pytest.approx(0.2)
    assert metrics.trade_count == 0 and metrics.win_rate is None
    assert metrics.sharpe is not None and metrics.sortino is not None
    assert metrics.sortino > metrics.sharpe > 0


def test_backtest_report_folder_has_json_plots_and_trades(candles: Candles, tmp_path: Path) -> None:
    result = run_grid(candles, grid(on_range_exit="recenter"), SETTINGS)
    write_report(result, tmp_path / "grid", "synthetic")
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == sorted(REPORT_FILES)
    report = json.loads((tmp_path / "grid" / "report.json").read_text())
    assert report["strategy"] == "grid" and report["params"]["levels"] == 11
    assert report["metrics"]["trade_count"] == len(result.trades)
    assert set(report["metrics"]) >= {
        "total_return",
        "cagr",
        "sharpe",
        "sortino",
        "max_drawdown",
        "calmar",
        "win_rate",
        "exposure",
        "trade_count",
    }
    trades = pd.read_csv(tmp_path / "grid" / "trades.csv")
    assert len(trades) == len(result.trades)
    assert trades["base_amount"].astype(str).tolist()[0] == str(result.trades[0].base_amount)
    for png in ("equity.png", "drawdown.png"):
        assert (tmp_path / "grid" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_walk_forward_splits_roll_without_overlap() -> None:
    splits = walk_forward_splits(100, folds=3, train_size=40)
    assert [(s.train, s.test) for s in splits] == [
        (range(0, 40), range(40, 60)),
        (range(20, 60), range(60, 80)),
        (range(40, 80), range(80, 100)),
    ]
    anchored = walk_forward_splits(100, folds=2, train_size=50, anchored=True)
    assert [s.train.start for s in anchored] == [0, 0]
    with pytest.raises(ValueError):
        walk_forward_splits(100, folds=20, train_size=90)


def test_walk_forward_picks_the_better_candidate_on_train(candles: Candles) -> None:
    never_trades = grid(lower_price=10, upper_price=20)  # far below the market: stops at once
    folds = walk_forward(
        "grid", candles, [never_trades, grid(on_range_exit="recenter")], SETTINGS, folds=2
    )
    assert [f["chosen"] for f in folds] == [1, 1]
    assert all(f["test_metrics"]["trade_count"] > 0 for f in folds)


def test_csv_and_parquet_load_the_same_candles(candles: Candles, tmp_path: Path) -> None:
    part = candles.slice(0, 500)
    part.write(tmp_path / "c.csv")
    part.write(tmp_path / "c.parquet")
    for name in ("c.csv", "c.parquet"):
        loaded = load_ohlcv(tmp_path / name)
        assert np.array_equal(loaded.ts, part.ts)
        assert np.allclose(loaded.close, part.close, rtol=1e-15)


def test_loader_accepts_millisecond_and_iso_times_and_sorts(tmp_path: Path) -> None:
    rows = "timestamp,open,high,low,close,volume\n"
    rows += "1700000060000,2,3,1,2.5,7\n1700000000000,1,2,1,1.5,5\n1700000000000,9,9,9,9,9\n"
    (tmp_path / "ms.csv").write_text(rows)
    loaded = load_ohlcv(tmp_path / "ms.csv")
    assert loaded.ts.tolist() == [1_700_000_000, 1_700_000_060]
    assert loaded.close.tolist() == [1.5, 2.5]  # sorted; a repeated time keeps its first row
    (tmp_path / "iso.csv").write_text("date,open,high,low,close\n2024-01-01T00:01:00Z,1,1,1,1\n")
    assert load_ohlcv(tmp_path / "iso.csv").ts.tolist() == [1_704_067_260]


def test_loader_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("timestamp,open,high,close\n1,1,1,1\n")
    with pytest.raises(OhlcvError, match="missing column"):
        load_ohlcv(tmp_path / "bad.csv")
    (tmp_path / "neg.csv").write_text("timestamp,open,high,low,close\n1,1,1,-1,1\n")
    with pytest.raises(OhlcvError, match="positive"):
        load_ohlcv(tmp_path / "neg.csv")
    with pytest.raises(OhlcvError, match="not found"):
        load_ohlcv(tmp_path / "nope.csv")


def test_generator_is_seeded_and_consistent() -> None:
    a, b = generate_ohlcv(1_000, seed=5), generate_ohlcv(1_000, seed=5)
    assert np.array_equal(a.close, b.close)
    assert not np.array_equal(a.close, generate_ohlcv(1_000, seed=6).close)
    assert (a.high >= np.maximum(a.open, a.close)).all()
    assert (a.low <= np.minimum(a.open, a.close)).all()
    assert (np.diff(a.ts) == 60).all()


def test_cli_backtest_writes_the_report(candles: Candles, tmp_path: Path) -> None:
    data = tmp_path / "candles.parquet"
    candles.slice(0, 5_000).write(data)
    params = tmp_path / "params.toml"
    params.write_text(
        "[strategies.grid]\nenabled = false\nlower_price = 2900\nupper_price = 3100\n"
        "levels = 9\norder_size = 0.5\n\n[backtest]\ninitial_quote = 20000\n"
    )
    out = tmp_path / "report"
    code = main(
        [
            "backtest",
            "--strategy",
            "grid",
            "--data",
            str(data),
            "--params",
            str(params),
            "--set",
            "on_range_exit=recenter",
            "--out",
            str(out),
            "--no-progress",
            "--walk-forward",
            "2",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["params"]["on_range_exit"] == "recenter"
    assert report["settings"]["initial_quote"] == "20000"
    assert len(report["walk_forward"]) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)


def test_cli_backtest_rejects_bad_params_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "backtest",
            "--strategy",
            "dca",
            "--synthetic",
            "100",
            "--out",
            str(tmp_path),
            "--set",
            "interval_s=60",
            "--set",
            "cron=0 9 * * 1",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "strategies.dca" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_result_metrics_match_the_equity_curve(candles: Candles) -> None:
    result = run_dca(candles, dca(), SETTINGS)
    metrics = result_metrics(result)
    assert metrics.start_equity == 50_000.0  # before the first buy's fee and gas
    assert metrics.end_equity == result.equity[-1]
    assert metrics.trade_count == len(result.trades) > 0


def test_backtest_html_shows_trades_on_the_price_buy_and_hold_and_the_range_exit(
    candles: Candles, tmp_path: Path
) -> None:
    from tests.unit.html_reports import assert_self_contained, read_report

    result = run_grid(candles, grid(), SETTINGS)  # leaves its range and stops
    folds = walk_forward("grid", candles, [grid()], SETTINGS, 2)
    write_report(result, tmp_path, "synthetic", folds)
    page = read_report(tmp_path / "report.html")
    assert_self_contained(page)
    buys = sum(1 for t in result.trades if t.side == "buy")
    sells = len(result.trades) - buys
    assert buys > 0 and sells > 0
    assert page.markers["buy-markers"] == buys
    assert page.markers["sell-markers"] == sells
    assert page.paths["price-series"] >= 1 and page.paths["benchmark-series"] >= 1
    assert page.paths["equity-series"] >= 1 and page.paths["drawdown-series"] >= 1
    # the range exit: one marker where the grid stopped, and said in words
    exit_ = result.extra["range_exit"]
    assert page.markers["range-exit"] == 1
    assert f"(candle {exit_['candle']:,})" in page.text and "left the range [2,900, 3,100]" in (
        page.text
    )
    assert all(t.candle <= exit_["candle"] for t in result.trades)
    # metrics in percent with units; the walk-forward folds in a table
    assert "total return" in page.text and "%" in page.text and "e+0" not in page.text
    assert "50,000.00 USDC" in page.text
    assert [row[0] for row in page.table_rows["walk-forward"]] == ["0", "1"]
    report = json.loads((tmp_path / "report.json").read_text())
    hold = float(candles.close[-1]) / float(candles.open[0]) - 1.0
    assert report["buy_and_hold_return"] == pytest.approx(hold)
    assert report["details"]["range_exit"]["candle"] == exit_["candle"]
    # the per-period table: every trade in one period, the last equity is the curve's
    periods = page.table_rows["periods"]
    assert sum(int(row[1].replace(",", "")) for row in periods) == len(result.trades)
    assert periods[-1][3] == f"{result.equity[-1]:,.2f}"


def test_cli_backtest_table_prints_percentages_and_units(
    candles: Candles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "candles.csv"
    candles.slice(0, 4_000).write(data)
    args = ["backtest", "--strategy", "grid", "--data", str(data), "--no-progress"]
    grid_args = ["--set", "lower_price=2900", "--set", "upper_price=3100", "--set", "levels=11"]
    code = main([*args, *grid_args, "--set", "order_size=0.5", "--out", str(tmp_path / "r")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "e+05" not in printed and "start_equity" not in printed
    assert "100,000.00 USDC" in printed
    assert any(line.split("│")[1].strip() == "total return" and "%" in line
               for line in printed.splitlines() if line.count("│") == 3)  # fmt: skip
