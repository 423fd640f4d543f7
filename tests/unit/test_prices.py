"""One meaning of price impact for every strategy: the pool fee is not part of it."""

from __future__ import annotations

import pytest

from agent.dex.prices import marginal_rate, mid_price, min_amount_out, price_impact_bps
from agent.dex.routes import Leg, simulate
from agent.dex.v2 import V2Pool
from agent.types import Token
from strategies._directional import ExactSwap
from strategies._directional import price_impact_bps as directional_impact_bps

USDC = Token("0x" + "11" * 20, "USDC", 6)
WETH = Token("0x" + "22" * 20, "WETH", 18)


def weth_usdc(fee_pips: int, depth_weth: int = 10_000) -> V2Pool:
    """A pair at 3,000 USDC per WETH."""
    return V2Pool(
        "0x" + "33" * 20, USDC.address, WETH.address, depth_weth * 3_000 * 10**6,
        depth_weth * 10**18, fee_pips,
    )  # fmt: skip


def test_the_fee_is_in_the_marginal_rate_but_not_in_the_mid_price() -> None:
    pool = weth_usdc(fee_pips=10_000)
    assert mid_price(pool, WETH.address) == pytest.approx(3_000 * 10**6 / 10**18)
    assert marginal_rate(pool, WETH.address) == pytest.approx(mid_price(pool, WETH.address) * 0.99)


@pytest.mark.parametrize("fee_pips", [500, 3_000, 10_000])
def test_a_small_trade_has_no_impact_whatever_the_fee_tier(fee_pips: int) -> None:
    pool = weth_usdc(fee_pips)
    amounts = simulate([Leg(pool, WETH.address, USDC.address)], 10**16)  # 0.01 WETH
    assert price_impact_bps([Leg(pool, WETH.address, USDC.address)], amounts) < 1.0


def test_impact_grows_with_size_and_is_the_same_for_a_route_and_a_directional_swap() -> None:
    pool = weth_usdc(fee_pips=3_000, depth_weth=100)
    leg = Leg(pool, WETH.address, USDC.address)
    amounts = simulate([leg], 5 * 10**18)  # 5 % of the pool's WETH
    impact = price_impact_bps([leg], amounts)
    # x*y=k: selling 5 % of the reserve gets ~1/1.05 of the marginal rate, ~476 bps short
    assert impact == pytest.approx(476, abs=2)
    swap = ExactSwap(pool.address, pool, WETH.address, USDC.address, amounts[0], amounts[1])
    assert directional_impact_bps(pool, WETH, USDC, swap) == pytest.approx(impact)


def test_minimum_out_rounds_down() -> None:
    assert min_amount_out(1_000_001, 30) == 997_000
