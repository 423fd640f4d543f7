"""Benchmark: grid and DCA backtests over >= 1,000,000 generated 1-minute candles.

For each strategy it times the vectorised driver (candles per second) and, in the same run,
the straightforward per-candle loop through the same decision core (the baseline), each the
best of ``--repeat`` runs; checks that both produced identical trades and equity curves; and
writes the report folder of the vectorised run. Prints one JSON document; exits 1 if the
drivers disagree.

    .venv/bin/python scripts/bench_backtest.py [--candles 1000000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.backtest.data import generate_ohlcv
from agent.backtest.engine import BacktestResult, run_dca, run_grid
from agent.backtest.execution import BacktestSettings
from agent.backtest.report import write_report
from strategies.dca import DcaParams
from strategies.grid import GridParams

TARGET_CANDLES_PER_S = 300_000
TARGET_SPEEDUP = 10.0


def _timed(run: Any, *args: Any, repeat: int = 1) -> tuple[BacktestResult, float]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run(*args)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return result, best


def bench(candles_n: int, out: Path, repeat: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    candles = generate_ohlcv(candles_n, seed=seed)
    generate_s = time.perf_counter() - started
    settings = BacktestSettings(initial_quote=500_000)
    cases: dict[str, tuple[Any, Any]] = {
        "grid": (
            run_grid,
            GridParams(
                enabled=True,
                lower_price=2_600,
                upper_price=3_400,
                levels=20,
                order_size="0.5",
                on_range_exit="recenter",
            ),
        ),
        "dca": (
            run_dca,
            DcaParams(
                enabled=True,
                amount=100,
                cron="0 9 * * *",
                dip_lookback_s=7 * 86_400,
                dip_threshold_pct=5,
                dip_multiplier=2,
            ),
        ),
    }
    report: dict[str, Any] = {
        "candles": candles_n,
        "interval_s": 60,
        "seed": seed,
        "generate_s": round(generate_s, 3),
        "targets": {"candles_per_s": TARGET_CANDLES_PER_S, "speedup_vs_loop": TARGET_SPEEDUP},
    }
    all_ok = True
    for name, (run, params) in cases.items():
        fast, fast_s = _timed(run, candles, params, settings, "vectorised", repeat=repeat)
        slow, slow_s = _timed(run, candles, params, settings, "per_candle", repeat=repeat)
        identical = fast.trades == slow.trades
        same_equity = bool(np.array_equal(fast.equity, slow.equity))
        report_dir = out / name
        write_report(fast, report_dir, f"synthetic:{candles_n}:seed={seed}")
        rate = candles_n / fast_s
        speedup = slow_s / fast_s
        ok = identical and same_equity
        all_ok = all_ok and ok
        report[name] = {
            "trades": len(fast.trades),
            "vectorised_s": round(fast_s, 4),
            "candles_per_s": round(rate),
            "per_candle_loop_s": round(slow_s, 4),
            "loop_candles_per_s": round(candles_n / slow_s),
            "speedup_vs_loop": round(speedup, 2),
            "identical_trades": identical,
            "identical_equity": same_equity,
            "meets_targets": rate >= TARGET_CANDLES_PER_S and speedup >= TARGET_SPEEDUP,
            "report_dir": str(report_dir),
        }
    report["all_identical"] = all_ok
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each driver")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="report folders (default: temp)")
    args = parser.parse_args()
    if args.candles < 2:
        parser.error("--candles must be at least 2")
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="bench_backtest_") as tmp:
            report = bench(args.candles, Path(tmp), args.repeat, args.seed)
            for name in ("grid", "dca"):
                written = sorted(p.name for p in (Path(tmp) / name).iterdir())
                report[name]["report_files"] = written
                report[name].pop("report_dir")
    else:
        report = bench(args.candles, args.out, args.repeat, args.seed)
    print(json.dumps(report, indent=2))
    return 0 if report["all_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
