"""DCA: interval and cron schedules, dip and fear multipliers (capped), routes, restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from agent.market.snapshot import AggregatorQuote
from agent.types import Reading
from strategies.dca import DcaParams, DcaSchedule, DcaStrategy
from tests.unit.strategy_market import (
    NOW,
    USDC,
    WETH,
    WETH_USDC_POOL,
    portfolio,
    sentiment_reading,
    snapshot,
    weth_usdc,
)

BASE = 100 * 10**6  # 100 USDC
DAY = 86_400.0


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_interval_schedule_buys_at_start_then_every_interval() -> None:
    schedule = DcaSchedule(BASE, interval_s=DAY)
    t0 = ts("2024-01-01T12:00:00")
    bought = [t for t in (t0 + h * 3_600 for h in range(0, 73)) if schedule.decide(t, 1.0, 1.0)]
    assert bought == [t0, t0 + DAY, t0 + 2 * DAY, t0 + 3 * DAY]


def test_interval_schedule_skips_missed_slots_instead_of_bursting() -> None:
    schedule = DcaSchedule(BASE, interval_s=DAY)
    t0 = ts("2024-01-01T00:00:00")
    assert schedule.decide(t0, 1.0, 1.0) is not None
    # the agent was down for 5.5 days: one buy now, the next on the original cadence
    assert schedule.decide(t0 + 5.5 * DAY, 1.0, 1.0) is not None
    assert schedule.decide(t0 + 5.9 * DAY, 1.0, 1.0) is None
    assert schedule.next_due_ts == t0 + 6 * DAY


def test_cron_schedule_buys_at_the_cron_times_in_utc() -> None:
    schedule = DcaSchedule(BASE, interval_s=None, cron="0 9 * * 1")  # Mondays 09:00 UTC
    start = ts("2024-01-03T10:00:00")  # a Wednesday
    hours = (start + h * 3_600 for h in range(0, 24 * 15))
    bought = [t for t in hours if schedule.decide(t, 1.0, 1.0)]
    assert [datetime.fromtimestamp(t, UTC).isoformat() for t in bought] == [
        "2024-01-08T09:00:00+00:00",
        "2024-01-15T09:00:00+00:00",
    ]


def test_dip_multiplier_applies_from_the_threshold() -> None:
    schedule = DcaSchedule(
        BASE, interval_s=DAY, dip_threshold_pct=10, dip_multiplier=1.5, max_multiplier=3
    )
    order = schedule.decide(0.0, 2_750.0, 3_000.0)  # 8.3 % below the high: no boost
    assert order is not None and order.amount_in == BASE
    order = schedule.decide(DAY, 2_700.0, 3_000.0)  # exactly 10 % below
    assert order is not None and order.amount_in == 150 * 10**6 and order.multiplier == 1.5
    assert order.drawdown_pct == pytest.approx(10.0)


def test_fear_multiplier_and_the_cap() -> None:
    schedule = DcaSchedule(
        BASE,
        interval_s=DAY,
        dip_threshold_pct=10,
        dip_multiplier=2.0,
        fear_threshold=-0.3,
        fear_multiplier=1.5,
        max_multiplier=2.5,
    )
    fear_only = schedule.decide(0.0, 3_000.0, 3_000.0, sentiment=-0.5)
    assert fear_only is not None and fear_only.amount_in == 150 * 10**6
    greed = schedule.decide(DAY, 3_000.0, 3_000.0, sentiment=0.8)
    assert greed is not None and greed.amount_in == BASE
    both = schedule.decide(2 * DAY, 2_000.0, 3_000.0, sentiment=-0.9)  # 2 x 1.5 = 3 -> cap 2.5
    assert both is not None and both.amount_in == 250 * 10**6 and both.multiplier == 2.5


def test_multiplied_amounts_are_exact_integers() -> None:
    schedule = DcaSchedule(
        10**20 + 1, interval_s=DAY, fear_threshold=0, fear_multiplier=1.25, max_multiplier=2
    )
    order = schedule.decide(0.0, 1.0, 1.0, sentiment=-1)
    assert order is not None and order.amount_in == (10**20 + 1) * 5 // 4


def test_params_need_one_schedule_and_a_valid_cron() -> None:
    assert DcaParams().schedule_interval_s == DAY  # neither given: daily
    assert DcaParams(cron="0 9 * * 1").schedule_interval_s is None
    with pytest.raises(ValidationError, match="only one"):
        DcaParams(interval_s=60, cron="0 9 * * 1")
    with pytest.raises(ValidationError, match="cron"):
        DcaParams(cron="every monday")
    with pytest.raises(ValidationError, match="differ"):
        DcaParams(buy_token="WETH", spend_token="weth")


# --- live strategy ---------------------------------------------------------------------------


def params(**overrides: object) -> DcaParams:
    values: dict[str, object] = {"enabled": True, "amount": 100, "interval_s": DAY}
    values.update(overrides)
    return DcaParams.model_validate(values)


def test_live_dca_buys_through_the_pool_with_exact_amounts() -> None:
    strategy = DcaStrategy(params())
    strategy.on_start(None)
    pool = weth_usdc(3_000.0)
    (buy,) = strategy.evaluate(snapshot(pool), portfolio(usdc=10_000))
    assert (buy.token_in, buy.token_out, buy.amount_in) == (USDC, WETH, BASE)
    assert buy.predicted_amount_out == pool.quote_exact_input(USDC, BASE)
    assert buy.route[0].pool == WETH_USDC_POOL
    assert strategy.evaluate(snapshot(pool, timestamp=NOW + 3_600), portfolio(usdc=10_000)) == []


def test_live_dca_takes_the_fresh_1inch_quote_when_it_pays_more() -> None:
    pool = weth_usdc(3_000.0)
    direct = pool.quote_exact_input(USDC, BASE)
    better = AggregatorQuote(USDC, WETH, 2 * BASE, 2 * direct + 2 * 10**12)
    fresh = {(USDC, WETH): Reading("1inch", better, NOW - 5, 30.0)}
    stale = {(USDC, WETH): Reading("1inch", better, NOW - 300, 30.0)}

    via_1inch = DcaStrategy(params())
    (buy,) = via_1inch.evaluate(snapshot(pool, aggregator=fresh), portfolio(usdc=10_000))
    assert buy.route[0].dex == "oneinch"
    # a quote for twice the amount, scaled down: a lower bound of the smaller swap's output
    assert buy.predicted_amount_out == better.amount_out * BASE // better.amount_in > direct

    via_pool = DcaStrategy(params())
    (buy,) = via_pool.evaluate(snapshot(pool, aggregator=stale), portfolio(usdc=10_000))
    assert buy.route[0].pool == WETH_USDC_POOL and buy.predicted_amount_out == direct

    pools_only = DcaStrategy(params(route="pools"))
    (buy,) = pools_only.evaluate(snapshot(pool, aggregator=fresh), portfolio(usdc=10_000))
    assert buy.route[0].dex == "uniswap_v2"


def test_live_dca_never_emits_a_1inch_route_nobody_can_execute() -> None:
    # simulated quotes or paper mode: the snapshot says no aggregator swap can be built
    pool = weth_usdc(3_000.0)
    direct = pool.quote_exact_input(USDC, BASE)
    better = AggregatorQuote(USDC, WETH, 2 * BASE, 2 * direct + 2 * 10**12)
    fresh = {(USDC, WETH): Reading("sim-1inch", better, NOW - 5, 30.0)}

    auto = DcaStrategy(params())
    (buy,) = auto.evaluate(
        snapshot(pool, aggregator=fresh, aggregator_executable=False), portfolio(usdc=10_000)
    )
    assert buy.route[0].dex == "uniswap_v2" and buy.predicted_amount_out == direct

    only_1inch = DcaStrategy(params(route="oneinch"))
    no_route = snapshot(pool, aggregator=fresh, aggregator_executable=False)
    assert only_1inch.evaluate(no_route, portfolio(usdc=10_000)) == []


def test_live_dca_buys_more_after_a_dip_seen_in_earlier_snapshots() -> None:
    strategy = DcaStrategy(params(dip_threshold_pct=10, dip_multiplier=2))
    strategy.on_start(None)
    wallet = portfolio(usdc=10_000)
    (first,) = strategy.evaluate(snapshot(weth_usdc(3_000.0)), wallet)
    assert first.amount_in == BASE
    strategy.evaluate(snapshot(weth_usdc(3_200.0), timestamp=NOW + 3_600), wallet)  # the high
    (dip,) = strategy.evaluate(snapshot(weth_usdc(2_800.0), timestamp=NOW + DAY), wallet)
    assert dip.amount_in == 2 * BASE  # 12.5 % below the 3,200 high


def test_live_dca_state_survives_a_restart() -> None:
    strategy = DcaStrategy(params())
    strategy.on_start(None)
    wallet = portfolio(usdc=10_000)
    assert strategy.evaluate(snapshot(weth_usdc(3_000.0)), wallet)
    saved = json.loads(json.dumps(strategy.state()))
    restarted = DcaStrategy(params())
    restarted.on_start(saved)
    assert restarted.evaluate(snapshot(weth_usdc(3_000.0), timestamp=NOW + 60), wallet) == []
    assert restarted.evaluate(snapshot(weth_usdc(3_000.0), timestamp=NOW + DAY), wallet)


def test_live_dca_skips_a_slot_it_cannot_pay_for() -> None:
    strategy = DcaStrategy(params())
    assert strategy.evaluate(snapshot(weth_usdc(3_000.0)), portfolio(usdc=50)) == []
    assert strategy.schedule is not None and strategy.schedule.next_due_ts == NOW + DAY


def test_live_dca_uses_fear_only_while_sentiment_is_fresh() -> None:
    fearful = {WETH: sentiment_reading(-0.8, age_s=60)}
    stale_fear = {WETH: sentiment_reading(-0.8, age_s=3_600)}
    wallet = portfolio(usdc=10_000)
    boosted = DcaStrategy(params(fear_multiplier=1.5))
    (buy,) = boosted.evaluate(snapshot(weth_usdc(3_000.0), sentiment=fearful), wallet)
    assert buy.amount_in == 150 * 10**6
    neutral = DcaStrategy(params(fear_multiplier=1.5))
    (buy,) = neutral.evaluate(snapshot(weth_usdc(3_000.0), sentiment=stale_fear), wallet)
    assert buy.amount_in == BASE
