"""The fast V3 swap loop in ``V3Pool`` against the line-by-line port of UniswapV3Pool.swap.

Randomized pools (all four fee tiers, overlapping positions, gaps with zero liquidity,
full-range positions) and swaps (both directions, exact in and out, dust to pool-draining
sizes, price limits including limits that sit exactly on word-boundary prices): amounts and the
resulting price, tick and liquidity must be identical.
"""

from __future__ import annotations

import random

import pytest

from agent.dex.pools import loaded_tick_range
from agent.dex.v3 import TICK_SPACING_BY_FEE, V3Pool
from agent.dex.v3_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    bitmap_from_ticks,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    swap_reference,
)
from agent.errors import InsufficientLiquidity, SwapRevert, TicksNotLoaded

TOKEN0 = "0x000000000000000000000000000000000000000A"
TOKEN1 = "0x000000000000000000000000000000000000000b"


def random_pool(rng: random.Random, fee_pips: int, with_gap: bool) -> V3Pool:
    spacing = TICK_SPACING_BY_FEE[fee_pips]
    min_usable = -(-MIN_TICK // spacing) * spacing
    max_usable = (MAX_TICK // spacing) * spacing
    center = rng.randrange(-200_000, 200_000)
    nets: dict[int, int] = {}
    positions: list[tuple[int, int, int]] = []
    width_words = rng.choice([1, 3, 20])
    for _ in range(rng.randint(1, 12)):
        lower = (center + rng.randrange(-256 * spacing * width_words, 0)) // spacing * spacing
        upper = lower + spacing * rng.randint(1, 256 * width_words)
        if with_gap and rng.random() < 0.5:
            lower, upper = lower - 300 * spacing, lower - 40 * spacing
        lower = min(max(lower, min_usable), max_usable - spacing)
        upper = min(max(upper, lower + spacing), max_usable)
        liquidity = rng.choice([1, 10**6, 10**15, 10**20, 10**24])
        positions.append((lower, upper, liquidity))
    if rng.random() < 0.3:
        positions.append((min_usable, max_usable, rng.choice([10**9, 10**18])))
    for lower, upper, liquidity in positions:
        nets[lower] = nets.get(lower, 0) + liquidity
        nets[upper] = nets.get(upper, 0) - liquidity
    if rng.random() < 0.2:
        # an initialized tick whose net is zero still stops a swap step
        lower, _, liquidity = positions[0]
        nets[max(lower - spacing, min_usable)] = nets.get(max(lower - spacing, min_usable), 0)
    tick_choice = rng.random()
    if tick_choice < 0.15:
        # price exactly on an initialized tick
        tick = rng.choice(sorted(nets))
        sqrt_price = get_sqrt_ratio_at_tick(tick)
    else:
        sqrt_price = get_sqrt_ratio_at_tick(center) + rng.randrange(0, 10**20)
        tick = get_tick_at_sqrt_ratio(sqrt_price)
    liquidity = sum(liq for lower, upper, liq in positions if lower <= tick < upper)
    return V3Pool(
        "0xpool",
        TOKEN0,
        TOKEN1,
        fee_pips,
        spacing,
        sqrt_price,
        tick,
        liquidity,
        tuple(sorted(nets.items())),
        block=1,
    )


def reference(pool: V3Pool, zero_for_one: bool, amount: int, limit: int) -> tuple[int, ...]:
    spacing = pool.tick_spacing
    amount0, amount1, sqrt_price, tick, liquidity = swap_reference(
        sqrt_price_x96=pool.sqrt_price_x96,
        tick=pool.tick,
        liquidity=pool.liquidity,
        tick_spacing=spacing,
        fee_pips=pool.fee_pips,
        bitmap=bitmap_from_ticks([t for t, _ in pool.ticks], spacing),
        liquidity_net=dict(pool.ticks),
        zero_for_one=zero_for_one,
        amount_specified=amount,
        sqrt_price_limit_x96=limit,
    )
    amount_in, amount_out = (amount0, -amount1) if zero_for_one else (amount1, -amount0)
    return amount_in, amount_out, sqrt_price, tick, liquidity


def random_limit(rng: random.Random, pool: V3Pool, zero_for_one: bool) -> int | None:
    choice = rng.random()
    if choice < 0.5:
        return None
    ticks = [t for t, _ in pool.ticks]
    if choice < 0.7:
        # exactly on a word-boundary price
        word = pool.tick_spacing * 256
        edge = (pool.tick // word) * word - (rng.randint(0, 3) * word if zero_for_one else -word)
        edge = min(max(edge, MIN_TICK + 1), MAX_TICK - 1)
        return get_sqrt_ratio_at_tick(edge)
    if choice < 0.85 and ticks:
        return get_sqrt_ratio_at_tick(rng.choice(ticks))
    step = rng.randrange(1, 3000) * pool.tick_spacing
    tick = pool.tick - step if zero_for_one else pool.tick + step
    return get_sqrt_ratio_at_tick(min(max(tick, MIN_TICK + 1), MAX_TICK - 1)) + rng.randrange(
        -(10**6), 10**6
    )


@pytest.mark.parametrize("fee_pips", [100, 500, 3000, 10000])
def test_fast_loop_equals_reference(fee_pips: int) -> None:
    rng = random.Random(fee_pips)
    compared = 0
    reverted = 0
    for _ in range(150):
        pool = random_pool(rng, fee_pips, with_gap=rng.random() < 0.4)
        for _ in range(6):
            zero_for_one = rng.random() < 0.5
            amount = rng.choice([1, 2, 997, 10**6, 10**12, 10**18, 10**21, 10**24, 10**30])
            amount = amount * rng.randint(1, 9)
            if rng.random() < 0.5:
                amount = -amount
            limit = random_limit(rng, pool, zero_for_one)
            limit_value = (
                limit
                if limit is not None
                else (MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1)
            )
            token_in = TOKEN0 if zero_for_one else TOKEN1
            try:
                expected = reference(pool, zero_for_one, amount, limit_value)
            except SwapRevert:
                with pytest.raises(SwapRevert):
                    pool.swap(token_in, amount, limit)
                reverted += 1
                continue
            if expected[0] <= 0:
                with pytest.raises(InsufficientLiquidity):
                    pool.swap(token_in, amount, limit)
                continue
            result = pool.swap(token_in, amount, limit)
            after = result.pool
            got = (result.amount_in, result.amount_out, after.sqrt_price_x96, after.tick)
            assert (*got, after.liquidity) == expected, (pool, zero_for_one, amount, limit)
            compared += 1
    assert compared > 500
    assert reverted < compared


def test_quotes_do_not_mutate_and_match_swap() -> None:
    rng = random.Random(5)
    pool = random_pool(rng, 3000, with_gap=False)
    before = (pool.sqrt_price_x96, pool.tick, pool.liquidity)
    amount_out = pool.quote_exact_input(TOKEN0, 10**18)
    assert (pool.sqrt_price_x96, pool.tick, pool.liquidity) == before
    result = pool.swap(TOKEN0, 10**18)
    assert result.amount_out == amount_out
    assert result.pool is not pool and result.pool.sqrt_price_x96 < pool.sqrt_price_x96


def test_exact_output_without_limit_requires_the_full_amount() -> None:
    spacing = 60
    pool = V3Pool(
        "0xpool",
        TOKEN0,
        TOKEN1,
        3000,
        spacing,
        1 << 96,
        0,
        10**18,
        ((-600, 10**18), (600, -(10**18))),
    )
    # asking for more token1 than the range holds: QuoterV2 reverts without a limit
    with pytest.raises(InsufficientLiquidity):
        pool.quote_exact_output(TOKEN1, 10**20)
    # with a price limit QuoterV2 returns the input for the partial output
    limit = get_sqrt_ratio_at_tick(-300)
    amount_in = pool.quote_exact_output(TOKEN1, 10**20, limit)
    partial = pool.swap(TOKEN0, -(10**20), limit)
    assert partial.amount_in == amount_in and partial.amount_out < 10**20
    assert partial.pool.sqrt_price_x96 == limit


def test_price_limit_on_wrong_side_is_rejected() -> None:
    pool = V3Pool("0xpool", TOKEN0, TOKEN1, 500, 10, 1 << 96, 0, 10**18, ())
    with pytest.raises(SwapRevert, match="SPL"):
        pool.quote_exact_input(TOKEN0, 10**6, (1 << 96) + 1)
    with pytest.raises(SwapRevert, match="SPL"):
        pool.quote_exact_input(TOKEN1, 10**6, (1 << 96) - 1)


def test_token_lookup_is_case_insensitive() -> None:
    pool = V3Pool("0xpool", TOKEN0, TOKEN1, 500, 10, 1 << 96, 0, 10**18, ())
    assert pool.quote_exact_input(TOKEN1.lower(), 10**6) == pool.quote_exact_input(TOKEN1, 10**6)
    with pytest.raises(ValueError, match="not in pool"):
        pool.quote_exact_input("0x0000000000000000000000000000000000000001", 1)


def swap_outcome(pool: V3Pool, token_in: str, amount: int, limit: int | None) -> object:
    try:
        result = pool.swap(token_in, amount, limit)
    except TicksNotLoaded:
        return "refused"
    except SwapRevert as exc:
        return ("reverted", exc.reason)
    after = result.pool
    return (result.amount_in, result.amount_out, after.sqrt_price_x96, after.tick, after.liquidity)


@pytest.mark.parametrize("fee_pips", [100, 500, 3000, 10000])
def test_a_pool_with_some_words_loaded_is_exact_or_refuses(fee_pips: int) -> None:
    """The same pool with only the ticks of a few bitmap words around its price: every swap
    either gives exactly what the whole table gives, or is refused; and one that stays inside
    the words is never refused."""
    rng = random.Random(fee_pips + 7)
    exact_inside = refused = 0
    for _ in range(150):
        full = random_pool(rng, fee_pips, with_gap=rng.random() < 0.4)
        spacing = full.tick_spacing
        word = (full.tick // spacing) >> 8
        words = range(word - rng.randint(0, 2), word + rng.randint(0, 2) + 1)
        loaded = loaded_tick_range(words, spacing)
        assert loaded is not None
        lowest, highest = loaded
        windowed = V3Pool(
            full.address,
            full.token0,
            full.token1,
            full.fee_pips,
            spacing,
            full.sqrt_price_x96,
            full.tick,
            full.liquidity,
            tuple((t, n) for t, n in full.ticks if lowest <= t <= highest),
            full.block,
            loaded_tick_range=loaded,
        )
        low_price, high_price = get_sqrt_ratio_at_tick(lowest), get_sqrt_ratio_at_tick(highest)
        for _ in range(6):
            zero_for_one = rng.random() < 0.5
            amount = rng.choice([1, 997, 10**6, 10**12, 10**18, 10**21, 10**24]) * rng.randint(1, 9)
            amount = -amount if rng.random() < 0.5 else amount
            limit = random_limit(rng, full, zero_for_one)
            token_in = TOKEN0 if zero_for_one else TOKEN1
            expected = swap_outcome(full, token_in, amount, limit)
            got = swap_outcome(windowed, token_in, amount, limit)
            assert got in ("refused", expected), (full, words, zero_for_one, amount, limit)
            refused += got == "refused"
            stayed_inside = (
                isinstance(expected, tuple)
                and len(expected) == 5
                and low_price < full.sqrt_price_x96 < high_price
                and low_price < expected[2] < high_price
            )
            if stayed_inside:
                assert got == expected, "refused a swap that stayed inside the words"
                exact_inside += 1
    assert exact_inside > 100 and refused > 50
