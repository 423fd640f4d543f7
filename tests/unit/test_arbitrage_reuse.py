"""The arbitrage strategy reuses last block's sizings only where nothing they read changed:
results are always those of a fresh strategy on the same snapshot."""

from __future__ import annotations

from agent.dex.routes import Leg, simulate
from agent.dex.v3 import V3Pool
from agent.dex.v3_math import get_sqrt_ratio_at_tick
from strategies.arbitrage import ArbitrageParams, ArbitrageStrategy
from tests.unit.test_arbitrage import RICH, USDC, WETH, snapshot, v2

PARAMS = ArbitrageParams(max_input_usd=1e7, min_profit_usd=0)


def v3(ticks: tuple[tuple[int, int], ...], tick: int = -195_350) -> V3Pool:
    return V3Pool(
        address="0x" + "b3" * 20,
        token0=WETH,
        token1=USDC,
        fee_pips=500,
        tick_spacing=10,
        sqrt_price_x96=get_sqrt_ratio_at_tick(tick),
        tick=tick,
        liquidity=10**18,
        ticks=ticks,
        block=1,
    )


def test_reused_sizings_equal_a_fresh_strategy_block_after_block() -> None:
    wide = ((-200_000, 10**18), (-190_000, -(10**18)))
    narrow = ((-200_000, 10**18), (-195_400, -(10**18) // 2), (-190_000, -(10**18) // 2))
    markets = [
        snapshot(v2("0x" + "a1" * 20, 1_000, 3_000_000), v3(wide)),
        snapshot(v2("0x" + "a1" * 20, 1_000, 3_000_000), v3(wide)),  # nothing moved
        snapshot(v2("0x" + "a1" * 20, 1_000, 2_950_000), v3(wide)),  # the V2 side moved
        snapshot(v2("0x" + "a1" * 20, 1_000, 2_950_000), v3(narrow)),  # same price, new ticks
        snapshot(v2("0x" + "a1" * 20, 1_000, 3_000_000), v3(wide)),  # back to the start
    ]
    reusing = ArbitrageStrategy(PARAMS)
    for market in markets:
        found = reusing.evaluate(market, RICH)
        assert found == ArbitrageStrategy(PARAMS).evaluate(market, RICH)
        assert found and found[0].predicted_profit > 0


def test_a_route_through_one_pool_twice_sees_its_own_first_swap() -> None:
    pool = v2("0x" + "a1" * 20, 1_000, 3_000_000)
    there_and_back = [Leg(pool, WETH, USDC), Leg(pool, USDC, WETH)]
    amounts = simulate(there_and_back, 10**18)
    usdc_out, after = pool.swap_exact_input(WETH, 10**18)
    assert amounts == [10**18, usdc_out, after.quote_exact_input(USDC, usdc_out)]
    assert amounts[-1] < 10**18  # fees both ways: the pool's state advanced in between
