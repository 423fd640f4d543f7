"""The one vocabulary of price, price impact and minimum out, so every strategy, the risk gate
and the executor mean the same thing by each word.

* mid price: the pool's price for an infinitesimal trade *before* its fee (reserves ratio for
  V2, ``sqrt_price_x96`` squared for V3), in smallest units of the other token per smallest unit
  of the token sold;
* marginal rate: what an infinitesimal trade really gets, the mid price *after* the pool fee;
* price impact: how much worse the trade's exact execution is than the marginal rate, in basis
  points, for the worst hop of a route. The pool fee is NOT part of it: the fee is a known cost
  (it is in every exact quote and in the profit), while the impact measures how far the trade
  walks the curve, i.e. how thin the pool is for that size. So ``risk.max_price_impact_bps``
  means the same for an arbitrage cycle, a grid order or a DCA buy, and a 1 % fee-tier pool
  does not use half of a 200 bps limit before the trade has any size;
* minimum out: the predicted exact output less the slippage allowance, rounded down.

Prices and impact are floats (decision inputs, never amounts that are sent); amounts are
``int`` in smallest units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool

BPS = 10_000
_Q96 = float(2**96)

Pool = V2Pool | V3Pool


class Hop(Protocol):
    """One hop of a route: sell ``token_in`` in ``pool`` (``agent.dex.routes.Leg``)."""

    @property
    def pool(self) -> Pool: ...

    @property
    def token_in(self) -> str: ...


def mid_price(pool: Pool, token_in: str) -> float:
    """Smallest units of the other token per smallest unit of ``token_in``, before the fee,
    for an infinitesimal trade; 0.0 for an empty pool. ``token_in`` is spelled as the pool
    spells its tokens (anything but ``token0`` counts as ``token1``)."""
    if isinstance(pool, V2Pool):
        if token_in == pool.token0:
            reserve_in, reserve_out = pool.reserve0, pool.reserve1
        else:
            reserve_in, reserve_out = pool.reserve1, pool.reserve0
        if reserve_in <= 0 or reserve_out <= 0:
            return 0.0
        return reserve_out / reserve_in
    if pool.liquidity <= 0:
        return 0.0
    price1_per_0 = (pool.sqrt_price_x96 / _Q96) ** 2
    if token_in == pool.token0:
        return price1_per_0
    return 1.0 / price1_per_0 if price1_per_0 > 0 else 0.0


def marginal_rate(pool: Pool, token_in: str) -> float:
    """Units of the other token per unit of ``token_in`` for an infinitesimal trade, after fee."""
    return mid_price(pool, token_in) * (1.0 - pool.fee_pips / 1_000_000)


def price_impact_bps(hops: Sequence[Hop], amounts: Sequence[int]) -> float:
    """The worst hop's shortfall of its exact output against its marginal rate, in basis points
    (the pool fee excluded, see the module docstring). ``amounts`` is ``[amount_in, out_hop1,
    out_hop2, ...]`` as ``agent.dex.routes.simulate`` returns it; never negative."""
    worst = 0.0
    for hop, amount_in, amount_out in zip(hops, amounts, amounts[1:], strict=False):
        ideal = marginal_rate(hop.pool, hop.token_in) * amount_in
        if ideal > 0:
            worst = max(worst, (ideal - amount_out) / ideal * BPS)
    return worst


def min_amount_out(predicted_amount_out: int, slippage_bps: int) -> int:
    """``predicted_amount_out`` minus ``slippage_bps`` basis points, rounded down."""
    return predicted_amount_out * (BPS - slippage_bps) // BPS
