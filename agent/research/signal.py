"""A small, honest ML signal: the probability that the next ``horizon`` candles close higher.

Features of candle ``t`` come only from candles ``<= t``: log returns over several lags, the
rolling volatility of one-candle returns, the volume z-score and the sentiment score (0 when the
candles have none). The model (scikit-learn logistic regression, standardised inputs) is trained
walk-forward: at every ``retrain_every``-th candle it is refitted on the last ``train_window``
rows whose label is already known at that candle (row ``i`` is labelled by ``close[i+horizon]``,
so only rows ``i <= t - horizon`` are used), and it predicts until the next refit.

Two implementations of the same definition, kept equal by tests:

- ``OnlineDirectionSignal`` is the live path: candles are fed one at a time (``update``) and it
  answers with the probability for the candle just closed. It keeps only bounded buffers.
- ``walk_forward_predictions`` is the backtest path over a whole candle series.

Both compute each feature row with ``feature_row`` on the same window and fit the same model on
the same rows, so their predictions are identical, not just close. Limits: a linear model on a
handful of price features has no edge on a random walk; on real markets any edge is small and
decays. It is a weighting input for DCA, not a trading system.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from agent.backtest.data import Candles, FloatArray

FEATURE_NAMES = ("ret_lag_1", "ret_lag_2", "ret_lag_3", "volatility", "volume_z", "sentiment")


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """Features and walk-forward training schedule (counts are candles)."""

    lags: tuple[int, ...] = (1, 6, 24)
    vol_window: int = 24
    volume_window: int = 48
    horizon: int = 1
    retrain_every: int = 500
    train_window: int = 5_000
    min_train_rows: int = 200

    def __post_init__(self) -> None:
        if len(self.lags) != 3 or min(self.lags) < 1:
            raise ValueError("lags: three positive candle counts")
        if min(self.vol_window, self.volume_window) < 2:
            raise ValueError("vol_window and volume_window must be at least 2")
        if min(self.horizon, self.retrain_every, self.min_train_rows) < 1:
            raise ValueError("horizon, retrain_every and min_train_rows must be positive")
        if self.train_window < self.min_train_rows:
            raise ValueError("train_window must be at least min_train_rows")

    @property
    def lookback(self) -> int:
        """Candles a feature row needs, the current one included."""
        return max(max(self.lags), self.vol_window, self.volume_window) + 1


def feature_row(
    close: FloatArray, volume: FloatArray, sentiment: float, config: SignalConfig
) -> FloatArray:
    """The features of the last candle of ``close``/``volume`` (windows of ``config.lookback``)."""
    last = close[-1]
    returns = [math.log(last / close[-1 - lag]) for lag in config.lags]
    one_step = np.diff(np.log(close[-config.vol_window - 1 :]))
    volatility = float(one_step.std())
    recent_volume = volume[-config.volume_window :]
    spread = float(recent_volume.std())
    volume_z = (float(volume[-1]) - float(recent_volume.mean())) / spread if spread > 0 else 0.0
    return np.asarray([*returns, volatility, volume_z, sentiment], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class DirectionModel:
    """A fitted logistic regression on standardised features, applied row by row in numpy."""

    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float

    def up_probability(self, row: FloatArray) -> float:
        z = float(((row - self.mean) / self.scale) @ self.coef) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def _fit(rows: FloatArray, labels: FloatArray) -> DirectionModel | None:
    """A fitted model, or None when the labels are all one class (nothing to learn)."""
    if np.unique(labels).shape[0] < 2:
        return None
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature (no sentiment) carries no information
    regression = LogisticRegression(C=1.0, max_iter=200)
    regression.fit((rows - mean) / scale, labels)
    return DirectionModel(
        mean,
        scale,
        np.asarray(regression.coef_[0], dtype=np.float64),
        float(regression.intercept_[0]),
    )


def _retrain_due(index: int, config: SignalConfig) -> bool:
    return index % config.retrain_every == 0


class OnlineDirectionSignal:
    """The live path: ``update`` with each closed candle, get P(next ``horizon`` closes higher)."""

    def __init__(self, config: SignalConfig | None = None) -> None:
        self.config = config or SignalConfig()
        self.index = -1  # index of the last candle seen
        self._close: deque[float] = deque(maxlen=self.config.lookback + self.config.horizon)
        self._volume: deque[float] = deque(maxlen=self.config.lookback)
        # feature rows waiting for their label: (candle index, row, close at that candle)
        self._unlabelled: deque[tuple[int, FloatArray, float]] = deque()
        self._rows: deque[FloatArray] = deque(maxlen=self.config.train_window)
        self._labels: deque[float] = deque(maxlen=self.config.train_window)
        self._model: DirectionModel | None = None

    def update(self, close: float, volume: float, sentiment: float = 0.0) -> float | None:
        """Observe one closed candle; the up-probability for it (None before the first model)."""
        config = self.config
        self.index += 1
        self._close.append(close)
        self._volume.append(volume)
        # rows whose horizon has now elapsed get their label (known at this candle)
        while self._unlabelled and self._unlabelled[0][0] + config.horizon <= self.index:
            _, labelled_row, then = self._unlabelled.popleft()
            self._rows.append(labelled_row)
            self._labels.append(1.0 if close > then else 0.0)
        row: FloatArray | None = None
        if len(self._volume) >= config.lookback:
            closes = np.asarray(list(self._close)[-config.lookback :], dtype=np.float64)
            volumes = np.asarray(self._volume, dtype=np.float64)
            row = feature_row(closes, volumes, sentiment, config)
            self._unlabelled.append((self.index, row, close))
        if _retrain_due(self.index, config) and len(self._rows) >= config.min_train_rows:
            self._model = _fit(np.asarray(self._rows), np.asarray(self._labels))
        if row is None or self._model is None:
            return None
        return self._model.up_probability(row)


def walk_forward_predictions(candles: Candles, config: SignalConfig | None = None) -> FloatArray:
    """The backtest path: per candle, the up-probability from past data only (NaN: no model)."""
    config = config or SignalConfig()
    n = len(candles)
    close, volume = candles.close, candles.volume
    sentiment = candles.sentiment
    first = config.lookback - 1  # first candle with a feature row
    rows = np.full((n, len(FEATURE_NAMES)), np.nan)
    for t in range(first, n):
        score = float(sentiment[t]) if sentiment is not None else 0.0
        rows[t] = feature_row(close[t - first : t + 1], volume[t - first : t + 1], score, config)
    predictions = np.full(n, np.nan)
    model: DirectionModel | None = None
    for t in range(first, n):
        if _retrain_due(t, config):
            last_labelled = t - config.horizon  # row i's label needs close[i + horizon]
            start = max(first, last_labelled + 1 - config.train_window)
            if last_labelled - start + 1 >= config.min_train_rows:
                labels = close[start + config.horizon : t + 1] > close[start : last_labelled + 1]
                model = _fit(rows[start : last_labelled + 1], labels.astype(np.float64))
        if model is not None:
            predictions[t] = model.up_probability(rows[t])
    return predictions
