"""VaR, CVaR and the Monte Carlo of `report`: hand-computed figures, reproducible seeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.analytics.risk import (
    MIN_DAILY_RETURNS,
    MIN_TRADES,
    daily_returns,
    monte_carlo,
    trade_returns,
    value_at_risk,
)

# 40 daily returns in percent, shuffled (the functions must sort them themselves):
#   losses:  -5, -4, -3 x3, -2 x4, -1 x6          sum -32
#   flat:     0 x6
#   gains:   +1 x10, +2 x5, +3 x4                  sum +32
# mean = 0 / 40 = 0
# sum of squares = 25 + 16 + 3*9 + 4*4 + 6*1 + 10*1 + 5*4 + 4*9 = 156
# sample variance = 156 / (40 - 1) = 4 (percent^2) -> sigma = 2 % = 0.02
PERCENT = [
    1, -3, 0, 2, -1, 3, 1, -5, 0, 1, -2, 2, -1, 1, 3, -3, 0, 1, -2, -1,
    2, 1, 0, -4, 3, -1, 1, -2, 2, 0, -3, 1, -1, 1, 3, -2, 0, 2, -1, 1,
]  # fmt: skip
RETURNS = [p / 100 for p in PERCENT]


def test_the_fixture_is_what_its_comment_says() -> None:
    assert len(RETURNS) == 40 and sum(PERCENT) == 0
    assert sum(p * p for p in PERCENT) == 156
    assert sorted(PERCENT)[:3] == [-5, -4, -3]


def test_var_and_cvar_equal_the_hand_computed_figures() -> None:
    report = value_at_risk(RETURNS, equity_usd=10_000.0)
    assert report.enough_data and report.observations == 40
    assert report.mean_return == pytest.approx(0.0, abs=1e-15)
    assert report.stdev_return == pytest.approx(0.02, rel=1e-12)
    at_95, at_99 = report.levels
    assert (at_95.confidence, at_99.confidence) == (0.95, 0.99)

    # historical 95 %: k = ceil(40 * 0.05) = 2 worst days: -5 %, -4 %
    #   VaR  = loss of the 2nd worst day = 4 %;  CVaR = (5 % + 4 %) / 2 = 4.5 %
    assert at_95.historical_var == pytest.approx(0.04)
    assert at_95.historical_cvar == pytest.approx(0.045)
    # in USD at 10,000 of equity: 400 and 450
    assert at_95.historical_var_usd == pytest.approx(400.0)
    assert at_95.historical_cvar_usd == pytest.approx(450.0)
    # historical 99 %: k = ceil(40 * 0.01) = ceil(0.4) = 1 worst day: VaR = CVaR = 5 %
    assert at_99.historical_var == pytest.approx(0.05)
    assert at_99.historical_cvar == pytest.approx(0.05)

    # normal, mu = 0, sigma = 0.02:
    #   z(0.95) = 1.6448536;  VaR = 0.02 * 1.6448536 = 0.0328971
    #   pdf(z) = exp(-1.6448536^2 / 2) / sqrt(2 pi) = exp(-1.3527717) / 2.5066283
    #          = 0.2585227 / 2.5066283 = 0.1031356
    #   CVaR = 0.02 * 0.1031356 / 0.05 = 0.0412543
    assert at_95.parametric_var == pytest.approx(0.0328971, abs=1e-7)
    assert at_95.parametric_cvar == pytest.approx(0.0412543, abs=1e-7)
    #   z(0.99) = 2.3263479;  VaR = 0.02 * 2.3263479 = 0.0465270
    #   pdf(z) = exp(-2.3263479^2 / 2) / sqrt(2 pi) = exp(-2.7059472) / 2.5066283
    #          = 0.0668070 / 2.5066283 = 0.0266521
    #   CVaR = 0.02 * 0.0266521 / 0.01 = 0.0533043
    assert at_99.parametric_var == pytest.approx(0.0465270, abs=1e-7)
    assert at_99.parametric_cvar == pytest.approx(0.0533043, abs=1e-7)
    assert at_99.parametric_var_usd == pytest.approx(465.270, abs=1e-3)


def test_too_few_daily_returns_is_a_message_not_an_error() -> None:
    report = value_at_risk(RETURNS[: MIN_DAILY_RETURNS - 1], equity_usd=1_000.0)
    assert not report.enough_data and report.levels == ()
    assert report.message == (
        "too little data for VaR/CVaR: 19 daily returns, at least 20 needed "
        "(one per UTC day with equity snapshots)"
    )
    assert report.to_dict()["levels"] == []
    assert value_at_risk(RETURNS[:MIN_DAILY_RETURNS]).enough_data


def test_daily_returns_take_each_utc_days_last_equity() -> None:
    day = datetime(2026, 11, 1, tzinfo=UTC)
    points = [
        (day + timedelta(hours=1), 1_000.0),  # the run's first point opens day 1
        (day + timedelta(hours=23), 1_100.0),  # day 1 closes at 1,100: +10 %
        (day + timedelta(days=1, hours=5), 900.0),
        (day + timedelta(days=1, hours=20), 990.0),  # day 2 closes at 990: 990/1100 - 1 = -10 %
        # no snapshot on day 3 (the agent was stopped): day 4's return spans the gap
        (day + timedelta(days=3, hours=2), 1_039.5),  # 1039.5 / 990 - 1 = +5 %
    ]
    assert daily_returns(list(reversed(points))) == pytest.approx([0.10, -0.10, 0.05])
    assert daily_returns([]) == []


def test_trade_returns_divide_by_the_equity_just_before_the_trade() -> None:
    equity = [(10, 1_000.0), (20, 2_000.0), (30, 4_000.0)]
    # block 20's trade: the last snapshot before it is block 10 (1,000): 50 / 1000 = 5 %
    # block 31's trade: block 30 (4,000): -40 / 4000 = -1 %; no block: the first (1,000)
    assert trade_returns([(20, 50.0), (31, -40.0), (None, 10.0)], equity) == pytest.approx(
        [0.05, -0.01, 0.01]
    )


TRADES = [0.01, -0.02, 0.015, 0.003, -0.004, 0.02, -0.01, 0.005, 0.0, 0.007, -0.012, 0.009]


def test_monte_carlo_is_reproducible_with_its_seed() -> None:
    first = monte_carlo(TRADES, equity_usd=5_000.0, horizon_trades=30, seed=42)
    again = monte_carlo(TRADES, equity_usd=5_000.0, horizon_trades=30, seed=42)
    other = monte_carlo(TRADES, equity_usd=5_000.0, horizon_trades=30, seed=43)
    assert first.enough_data and first.paths == 10_000
    assert first.to_dict() == again.to_dict()
    assert first.percentiles != other.percentiles
    ordered = [first.percentiles[p] for p in (5, 25, 50, 75, 95)]
    assert ordered == sorted(ordered) and ordered[0] < 0 < ordered[-1]
    assert first.percentiles_usd[50] == pytest.approx(first.percentiles[50] * 5_000.0)
    assert first.probability_of_loss is not None and 0.0 < first.probability_of_loss < 1.0


def test_monte_carlo_of_only_winning_trades_never_loses() -> None:
    report = monte_carlo([0.001 * (i + 1) for i in range(MIN_TRADES)], seed=1)
    assert report.probability_of_loss == 0.0
    assert report.horizon_trades == MIN_TRADES  # the default: as many trades as observed
    assert report.percentiles[5] > 0


def test_monte_carlo_of_only_losing_trades_always_loses() -> None:
    report = monte_carlo([-0.001] * MIN_TRADES, horizon_trades=5, seed=1)
    assert report.probability_of_loss == 1.0
    # five losses of 0.1 % compounded: 0.999^5 - 1
    assert report.percentiles[50] == pytest.approx(0.999**5 - 1)


def test_monte_carlo_with_too_few_trades_says_so() -> None:
    report = monte_carlo(TRADES[: MIN_TRADES - 1], seed=1)
    assert not report.enough_data and report.probability_of_loss is None
    assert report.message == (
        "too little data for Monte Carlo: 9 trades with a realised USD profit, at least 10 needed"
    )
    nothing = monte_carlo([], seed=1)  # a run without trades
    assert nothing.message is not None and nothing.message.startswith(
        "too little data for Monte Carlo: 0 trades"
    )
    assert value_at_risk([]).message is not None
