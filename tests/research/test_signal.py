"""The ML signal: past predictions never depend on future candles; live equals backtest."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from agent.backtest.data import Candles, generate_ohlcv
from agent.backtest.engine import run_dca
from agent.backtest.execution import BacktestSettings
from agent.research.signal import OnlineDirectionSignal, SignalConfig, walk_forward_predictions
from strategies.dca import DcaParams, DcaSchedule

CONFIG = SignalConfig(retrain_every=100, train_window=600, min_train_rows=100)


def _candles(n: int = 1_500) -> Candles:
    return generate_ohlcv(n, seed=11, interval_s=3_600, half_life_days=5.0)


def _mutated_after(candles: Candles, t: int) -> Candles:
    """The same candles up to ``t``; every later close, high, low and volume changed."""
    rng = np.random.default_rng(99)
    factor = np.ones(len(candles))
    factor[t + 1 :] = np.exp(rng.normal(0, 0.05, len(candles) - t - 1))
    volume = candles.volume.copy()
    volume[t + 1 :] = rng.lognormal(5.0, 1.0, len(candles) - t - 1)
    return replace(
        candles,
        close=candles.close * factor,
        high=candles.high * factor,
        low=candles.low * factor,
        volume=volume,
    )


def test_changing_future_candles_never_changes_a_past_prediction() -> None:
    candles = _candles()
    before = walk_forward_predictions(candles, CONFIG)
    assert np.isfinite(before).sum() > 1_000  # the model predicted most candles
    for t in (250, 700, 1_199):
        after = walk_forward_predictions(_mutated_after(candles, t), CONFIG)
        np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
        # the mutation is real: later predictions did change
        assert not np.array_equal(before[t + 1 :], after[t + 1 :])


def test_online_signal_fed_candle_by_candle_equals_the_backtest_predictions() -> None:
    candles = _candles()
    online = OnlineDirectionSignal(CONFIG)
    live = [
        online.update(float(c), float(v))
        for c, v in zip(candles.close, candles.volume, strict=True)
    ]
    batch = walk_forward_predictions(candles, CONFIG)
    assert [None if np.isnan(p) else float(p) for p in batch] == live


def test_live_dca_decisions_on_the_same_candles_equal_the_backtest_buys() -> None:
    candles = _candles(2_000)
    params = DcaParams(
        enabled=True,
        interval_s=6 * 3_600.0,
        ml_weight=1.5,
        ml_retrain_every=100,
        ml_train_window=600,
        dip_multiplier=2.0,
        max_multiplier=4.0,
    )
    settings = BacktestSettings()
    backtest = {(t.candle, t.quote_amount) for t in run_dca(candles, params, settings).trades}
    # the live path: the strategy's own signal feed and schedule, one closed candle at a time
    from strategies.dca import DcaStrategy

    strategy = DcaStrategy(params)
    schedule = DcaSchedule.from_params(params, settings.quote_decimals)
    live: set[tuple[int, int]] = set()
    for i in range(len(candles)):
        probability = strategy.observe_candle(
            float(candles.close[i]), float(candles.volume[i]), 0.0
        )
        start = int(np.searchsorted(candles.ts, candles.ts[i] - params.dip_lookback_s, "right"))
        order = schedule.decide(
            float(candles.ts[i]),
            float(candles.close[i]),
            float(candles.high[start : i + 1].max()),
            0.0,
            probability,
        )
        if order is not None:
            live.add((i, order.amount_in))
    assert live == backtest
    # the signal did weight the buys: amounts differ from the plain amount
    assert len({amount for _, amount in live}) > 5


def test_live_strategy_closes_pool_prices_into_candles_for_the_signal() -> None:
    from strategies.dca import DcaStrategy

    strategy = DcaStrategy(DcaParams(enabled=True, ml_weight=1.0, ml_candle_s=60.0))
    # three minutes of prices every 20 s; each minute's candle closes at its last price
    prices = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0, 108.0, 109.0]
    for step, price in enumerate(prices):
        strategy._observe_price(1_699_999_980 + 20.0 * step, price, 0.0)  # a minute start
    assert strategy.signal is not None
    # minutes [0,60), [60,120), [120,180) closed; the minute at 180 s is still open
    assert list(strategy.signal._close) == [102.0, 105.0, 108.0]
    assert strategy.up_probability is None  # no model before enough candles
