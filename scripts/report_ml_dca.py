"""Report: DCA with the ML signal against the same DCA without it, on the same candles.

Seeded synthetic hourly candles (or ``--data FILE``); both runs use the same schedule, boosts,
costs and candles and differ only in ``ml_weight``. Also reports the signal's own out-of-sample
hit rate (P(up) > 0.5 against the next candle's direction), so a better DCA result can be told
apart from luck. Prints one JSON document.

    .venv/bin/python scripts/report_ml_dca.py [--candles 20000] [--ml-weight 1.0] [--data F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agent.backtest.data import generate_ohlcv, load_ohlcv
from agent.backtest.engine import run_dca
from agent.backtest.execution import BacktestSettings
from agent.backtest.report import result_metrics
from agent.research.signal import SignalConfig, walk_forward_predictions
from strategies.dca import DcaParams

KEYS = ("total_return", "sharpe", "sortino", "max_drawdown", "win_rate", "trade_count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candles", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--ml-weight", type=float, default=1.0)
    parser.add_argument("--interval-s", type=float, default=86_400.0)
    args = parser.parse_args()

    if args.data is not None:
        candles = load_ohlcv(args.data)
        source = str(args.data)
    else:
        candles = generate_ohlcv(args.candles, seed=args.seed, interval_s=3_600)
        source = f"synthetic hourly, seed {args.seed}"
    settings = BacktestSettings()
    common = {"enabled": True, "interval_s": args.interval_s, "amount": 100}
    baseline = DcaParams.model_validate(common)
    with_ml = DcaParams.model_validate({**common, "ml_weight": args.ml_weight})
    runs = {}
    for name, params in (("dca", baseline), ("dca_ml", with_ml)):
        result = run_dca(candles, params, settings)
        metrics = result_metrics(result).to_dict()
        spent = sum(t.quote_amount + t.gas_quote for t in result.trades)
        runs[name] = {key: metrics[key] for key in KEYS} | {
            "quote_spent": spent / 10**settings.quote_decimals,
            "base_bought": result.final_base / 10**settings.base_decimals,
            "avg_price_paid": (spent / 10**settings.quote_decimals)
            / (result.final_base / 10**settings.base_decimals),
        }
    predictions = walk_forward_predictions(
        candles,
        SignalConfig(retrain_every=with_ml.ml_retrain_every, train_window=with_ml.ml_train_window),
    )
    known = np.isfinite(predictions[:-1])
    went_up = candles.close[1:] > candles.close[:-1]
    hits = (predictions[:-1] > 0.5) == went_up
    print(
        json.dumps(
            {
                "data": source,
                "candles": len(candles),
                "ml_weight": args.ml_weight,
                "signal_hit_rate": float(hits[known].mean()),
                "signal_predicted_candles": int(known.sum()),
                "up_share": float(went_up[known].mean()),
                **runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
