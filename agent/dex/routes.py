"""Routes over pool states: cycle rates, exact multi-hop simulation, optimal input size.

Pure functions over immutable pools. Marginal rates (``agent.dex.prices``: infinitesimal size,
after the fee) are floats and only ever used to *filter* candidates; every amount a trade
carries comes from the exact integer simulators (``V2Pool`` / ``V3Pool``), hop after hop, each
hop's pool state advanced so a route that visits a pool twice is still exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.dex.prices import marginal_rate
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool
from agent.errors import SwapRevert

Pool = V2Pool | V3Pool


@dataclass(frozen=True, slots=True)
class Leg:
    """One hop of a route: sell ``token_in`` for ``token_out`` in ``pool``."""

    pool: Pool
    token_in: str
    token_out: str


def cycle_rate(legs: Sequence[Leg]) -> float:
    """Product of marginal rates: > 1 means a small amount sent round the route grows."""
    rate = 1.0
    for leg in legs:
        rate *= marginal_rate(leg.pool, leg.token_in)
    return rate


def simulate(legs: Sequence[Leg], amount_in: int) -> list[int]:
    """Exact amounts along the route: ``[amount_in, out_hop1, out_hop2, ...]``.

    Raises ``SwapRevert`` where the chain would revert (no liquidity, zero output).
    """
    amounts = [amount_in]
    amount = amount_in
    if amount_in > 0 and len({leg.pool.address for leg in legs}) == len(legs):
        # Every pool is visited once: quote only, without building post-swap states (for V3
        # that includes getTickAtSqrtRatio). The amounts are the same exact integers.
        for leg in legs:
            amount = leg.pool.quote_exact_input(leg.token_in, amount)
            if amount <= 0:
                raise SwapRevert("zero output")
            amounts.append(amount)
        return amounts
    advanced: dict[str, Pool] = {}
    for leg in legs:
        pool = advanced.get(leg.pool.address, leg.pool)
        if isinstance(pool, V2Pool):
            amount, after = pool.swap_exact_input(leg.token_in, amount)
            advanced[pool.address] = after
        else:
            result = pool.swap(leg.token_in, amount)
            amount = result.amount_out
            advanced[pool.address] = result.pool
        if amount <= 0:
            raise SwapRevert("zero output")
        amounts.append(amount)
    return amounts


def v2_optimal_cycle_input(legs: Sequence[Leg]) -> int | None:
    """Closed-form profit-maximising input for a cycle made only of V2 pools.

    Each V2 hop is the map x -> A x / (B + C x) (A = r R_out, B = R_in, C = r, r the fee
    factor); such maps compose into one of the same form, whose profit A x / (B + C x) - x peaks
    at x* = (sqrt(A B) - B) / C. Returns None when the cycle is not profitable at any size.
    """
    a, b, c = 1.0, 1.0, 0.0
    for leg in legs:
        pool = leg.pool
        if not isinstance(pool, V2Pool):
            return None
        r = 1.0 - pool.fee_pips / 1_000_000
        if leg.token_in == pool.token0:
            reserve_in, reserve_out = float(pool.reserve0), float(pool.reserve1)
        else:
            reserve_in, reserve_out = float(pool.reserve1), float(pool.reserve0)
        hop_a, hop_b, hop_c = r * reserve_out, reserve_in, r
        # (f2 . f1): A = A1 A2, B = B1 B2, C = B2 C1 + C2 A1
        a, b, c = a * hop_a, b * hop_b, hop_b * c + hop_c * a
    if c <= 0 or a <= b:
        return None
    optimum = (math.sqrt(a * b) - b) / c
    return int(optimum) if optimum >= 1 else None


def maximise(profit: Callable[[int], int], low: int, high: int, iterations: int = 60) -> int:
    """Input in [low, high] maximising a unimodal integer ``profit`` (golden-section search)."""
    if high <= low:
        return low
    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = float(low), float(high)
    cache: dict[int, int] = {}

    def f(x: float) -> int:
        key = int(x)
        if key not in cache:
            cache[key] = profit(key)
        return cache[key]

    c = b - (b - a) * inv_phi
    d = a + (b - a) * inv_phi
    for _ in range(iterations):
        if b - a < 2:
            break
        if f(c) > f(d):
            b = d
        else:
            a = c
        c = b - (b - a) * inv_phi
        d = a + (b - a) * inv_phi
    return max(cache, key=lambda k: cache[k]) if cache else low


def cycle_profit(legs: Sequence[Leg]) -> Callable[[int], int]:
    """``amount_in -> final - amount_in`` for a cycle, with reverts counted as a huge loss."""

    def profit(amount_in: int) -> int:
        if amount_in <= 0:
            return 0
        try:
            return simulate(legs, amount_in)[-1] - amount_in
        except SwapRevert:
            return -(2**255)

    return profit
