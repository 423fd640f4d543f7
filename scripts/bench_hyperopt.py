"""Benchmark: hyperopt trials per minute with 1 and 2 worker processes, and whether the search
found anything that holds up out of sample.

Deterministic synthetic candles (seeded; written as CSV and loaded back through the loader) are
split into the search data and a final holdout share that no trial ever sees. The same number
of grid trials runs twice, each in a fresh journal-file study: once with one worker process,
once with two. Then the best parameters of the one-worker study and the strategy's defaults are
backtested on the holdout. Prints one JSON document.

    .venv/bin/python scripts/bench_hyperopt.py [--candles 300000] [--trials 60] [--strategy grid]

Two rates per run: ``wall`` includes starting the worker processes (a fresh interpreter each,
importing numpy/pandas/optuna: seconds on a loaded machine), ``steady`` counts from the first
trial's start to the last trial's end as the study recorded them. On a shared or small machine
the ratio says how much a second core actually gave, not the theoretical 2.0.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.backtest.data import generate_ohlcv, load_ohlcv
from agent.backtest.engine import RUNNERS
from agent.backtest.execution import BacktestSettings
from agent.backtest.report import result_metrics
from agent.research.hyperopt import (
    SearchSetup,
    best_params,
    create_study,
    make_params,
    run_parallel,
    score,
    split_holdout,
)


def _holdout_metrics(strategy: str, candles: Any, params: Any, settings: Any) -> dict[str, Any]:
    metrics = result_metrics(RUNNERS[strategy](candles, params, settings)).to_dict()
    keep = ("total_return", "sharpe", "sortino", "calmar", "max_drawdown", "trade_count")
    return {key: metrics[key] for key in keep}


def _steady_rate(study: Any) -> float:
    """Trials per minute from the first trial's start to the last one's end."""
    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return len(trials) / max((last - first).total_seconds(), 1e-9) * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candles", type=int, default=300_000)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--strategy", choices=("grid", "dca"), default="grid")
    parser.add_argument("--objective", default="sharpe")
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = BacktestSettings()
    with tempfile.TemporaryDirectory(prefix="bench-hyperopt-") as tmp:
        data = Path(tmp) / "candles.csv"
        generate_ohlcv(args.candles, seed=args.seed, interval_s=60).write(data)
        search, holdout = split_holdout(load_ohlcv(data), args.holdout)
        assert holdout is not None
        setup = SearchSetup(args.strategy, search, settings, args.objective, folds=3)
        rates: dict[int, float] = {}
        steady: dict[int, float] = {}
        studies = {}
        for jobs in (1, 2):
            storage = f"journal:{Path(tmp) / f'jobs{jobs}.journal'}"
            started = time.perf_counter()
            ran = run_parallel(setup, storage, "bench", args.trials, jobs, args.seed)
            elapsed = time.perf_counter() - started
            rates[jobs] = ran / elapsed * 60
            studies[jobs] = create_study(storage, "bench")
            steady[jobs] = _steady_rate(studies[jobs])
        study = studies[1]
        best = best_params(setup, study)
        default = make_params(args.strategy, {}, None)
        result = {
            "strategy": args.strategy,
            "objective": args.objective,
            "candles": args.candles,
            "search_candles": len(search),
            "holdout_candles": len(holdout),
            "trials": args.trials,
            "cpu_count": os.cpu_count(),
            "wall_trials_per_minute_1_worker": round(rates[1], 2),
            "wall_trials_per_minute_2_workers": round(rates[2], 2),
            "wall_speedup_2_vs_1": round(rates[2] / rates[1], 3),
            "steady_trials_per_minute_1_worker": round(steady[1], 2),
            "steady_trials_per_minute_2_workers": round(steady[2], 2),
            "steady_speedup_2_vs_1": round(steady[2] / steady[1], 3),
            "best_params": study.best_trial.params,
            "best_search_objective": study.best_value,
            "holdout": {
                "best_objective": score(args.strategy, holdout, best, settings, args.objective),
                "default_objective": score(
                    args.strategy, holdout, default, settings, args.objective
                ),
                "best_metrics": _holdout_metrics(args.strategy, holdout, best, settings),
                "default_metrics": _holdout_metrics(args.strategy, holdout, default, settings),
            },
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
