"""Uniswap V3 core library math against Uniswap's own published test cases.

Cases come from @uniswap/v3-core test/{FullMath,TickMath,SqrtPriceMath,SwapMath,
LiquidityMath,TickBitmap}.spec.ts; expected values are copied from those specs.
"""

from __future__ import annotations

import math
import random

import pytest

from agent.dex.v3_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MAX_UINT128,
    MAX_UINT256,
    MIN_SQRT_RATIO,
    MIN_TICK,
    add_delta,
    bitmap_from_ticks,
    compute_swap_step,
    get_amount0_delta,
    get_amount0_delta_signed,
    get_amount1_delta,
    get_amount1_delta_signed,
    get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    mul_div,
    mul_div_rounding_up,
    next_initialized_tick_within_one_word,
    ticks_from_bitmap,
)
from agent.errors import SwapRevert

Q128 = 1 << 128
E18 = 10**18


def encode_price_sqrt(reserve1: int, reserve0: int) -> int:
    """sqrt(reserve1 / reserve0) as Q64.96, floored (the specs' encodePriceSqrt)."""
    return math.isqrt((reserve1 << 192) // reserve0)


# --- FullMath ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "denominator"),
    [
        (Q128, 5, 0),  # reverts if denominator is 0
        (Q128, Q128, 0),  # reverts if denominator is 0 and numerator overflows
        (Q128, Q128, 1),  # reverts if output overflows uint256
        (MAX_UINT256, MAX_UINT256, MAX_UINT256 - 1),  # overflow with all max inputs
    ],
)
def test_mul_div_reverts(a: int, b: int, denominator: int) -> None:
    with pytest.raises(SwapRevert):
        mul_div(a, b, denominator)
    with pytest.raises(SwapRevert):
        mul_div_rounding_up(a, b, denominator)


def test_mul_div_exact_cases() -> None:
    assert mul_div(MAX_UINT256, MAX_UINT256, MAX_UINT256) == MAX_UINT256
    # accurate without phantom overflow
    assert mul_div(Q128, 50 * Q128 // 100, 150 * Q128 // 100) == Q128 // 3
    # accurate with phantom overflow
    assert mul_div(Q128, 35 * Q128, 8 * Q128) == 4375 * Q128 // 1000
    # accurate with phantom overflow and repeating decimal
    assert mul_div(Q128, 1000 * Q128, 3000 * Q128) == Q128 // 3


def test_mul_div_rounding_up_exact_cases() -> None:
    assert mul_div_rounding_up(MAX_UINT256, MAX_UINT256, MAX_UINT256) == MAX_UINT256
    assert mul_div_rounding_up(Q128, 50 * Q128 // 100, 150 * Q128 // 100) == Q128 // 3 + 1
    assert mul_div_rounding_up(Q128, 35 * Q128, 8 * Q128) == 4375 * Q128 // 1000
    assert mul_div_rounding_up(Q128, 1000 * Q128, 3000 * Q128) == Q128 // 3 + 1


@pytest.mark.parametrize(
    ("a", "b", "denominator"),
    [
        # mulDiv fits, but rounding up overflows 256 bits
        (535006138814359, 432862656469423142931042426214547535783388063929571229938474969, 2),
        (
            115792089237316195423570985008687907853269984659341747863450311749907997002549,
            115792089237316195423570985008687907853269984659341747863450311749907997002550,
            115792089237316195423570985008687907853269984653042931687443039491902864365164,
        ),
    ],
)
def test_mul_div_rounding_up_reverts_when_rounding_overflows(
    a: int, b: int, denominator: int
) -> None:
    mul_div(a, b, denominator)
    with pytest.raises(SwapRevert):
        mul_div_rounding_up(a, b, denominator)


def test_mul_div_random_inputs_match_exact_rational_math() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        x, y, d = (rng.randrange(1, MAX_UINT256) for _ in range(3))
        if x * y // d > MAX_UINT256:
            with pytest.raises(SwapRevert):
                mul_div(x, y, d)
            continue
        assert mul_div(x, y, d) == x * y // d
        assert mul_div_rounding_up(x, y, d) == -(-x * y // d)


# --- TickMath ---------------------------------------------------------------------------------


def test_sqrt_ratio_at_tick_boundaries() -> None:
    with pytest.raises(SwapRevert, match="T"):
        get_sqrt_ratio_at_tick(MIN_TICK - 1)
    with pytest.raises(SwapRevert, match="T"):
        get_sqrt_ratio_at_tick(MAX_TICK + 1)
    assert get_sqrt_ratio_at_tick(MIN_TICK) == 4295128739 == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MIN_TICK + 1) == 4295343490
    assert get_sqrt_ratio_at_tick(MAX_TICK - 1) == 1461373636630004318706518188784493106690254656249
    assert get_sqrt_ratio_at_tick(MAX_TICK) == 1461446703485210103287273052203988822378723970342
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MIN_TICK) < encode_price_sqrt(1, 2**127)
    assert get_sqrt_ratio_at_tick(MAX_TICK) > encode_price_sqrt(2**127, 1)
    assert get_sqrt_ratio_at_tick(0) == 1 << 96


@pytest.mark.parametrize(
    "tick",
    [
        50,
        100,
        250,
        500,
        1_000,
        2_500,
        3_000,
        4_000,
        5_000,
        50_000,
        150_000,
        250_000,
        500_000,
        738_203,
    ],
)
def test_sqrt_ratio_at_tick_is_within_one_millionth_of_exact(tick: int) -> None:
    for signed_tick in (tick, -tick):
        exact = math.sqrt(1.0001**signed_tick) * 2**96
        assert abs(get_sqrt_ratio_at_tick(signed_tick) - exact) / exact < 1e-6


def test_tick_at_sqrt_ratio_boundaries() -> None:
    with pytest.raises(SwapRevert, match="R"):
        get_tick_at_sqrt_ratio(MIN_SQRT_RATIO - 1)
    with pytest.raises(SwapRevert, match="R"):
        get_tick_at_sqrt_ratio(MAX_SQRT_RATIO)
    assert get_tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert get_tick_at_sqrt_ratio(4295343490) == MIN_TICK + 1
    assert get_tick_at_sqrt_ratio(1461373636630004318706518188784493106690254656249) == (
        MAX_TICK - 1
    )
    assert get_tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1


@pytest.mark.parametrize(
    "ratio",
    [
        MIN_SQRT_RATIO,
        encode_price_sqrt(10**12, 1),
        encode_price_sqrt(10**6, 1),
        encode_price_sqrt(1, 64),
        encode_price_sqrt(1, 8),
        encode_price_sqrt(1, 2),
        encode_price_sqrt(1, 1),
        encode_price_sqrt(2, 1),
        encode_price_sqrt(8, 1),
        encode_price_sqrt(64, 1),
        encode_price_sqrt(1, 10**6),
        encode_price_sqrt(1, 10**12),
        MAX_SQRT_RATIO - 1,
    ],
)
def test_tick_at_sqrt_ratio_is_greatest_tick_below_ratio(ratio: int) -> None:
    tick = get_tick_at_sqrt_ratio(ratio)
    assert abs(tick - math.floor(math.log((ratio / 2**96) ** 2, 1.0001))) <= 1
    assert get_sqrt_ratio_at_tick(tick) <= ratio < get_sqrt_ratio_at_tick(tick + 1)


def test_tick_round_trip_on_random_ticks() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        tick = rng.randint(MIN_TICK, MAX_TICK - 1)
        ratio = get_sqrt_ratio_at_tick(tick)
        assert get_tick_at_sqrt_ratio(ratio) == tick
        assert get_tick_at_sqrt_ratio(ratio - 1) == tick - 1 or ratio - 1 < MIN_SQRT_RATIO
        between = ratio + (get_sqrt_ratio_at_tick(tick + 1) - ratio) // 2
        assert get_tick_at_sqrt_ratio(between) == tick


# --- SqrtPriceMath ----------------------------------------------------------------------------


def test_next_sqrt_price_from_input() -> None:
    with pytest.raises(SwapRevert):
        get_next_sqrt_price_from_input(0, 0, E18 // 10, False)  # price is zero
    with pytest.raises(SwapRevert):
        get_next_sqrt_price_from_input(1, 0, E18 // 10, True)  # liquidity is zero
    with pytest.raises(SwapRevert):
        get_next_sqrt_price_from_input(2**160 - 1, 1024, 1024, False)  # overflows the price
    # any input amount cannot underflow the price
    assert get_next_sqrt_price_from_input(1, 1, 2**255, True) == 1
    price = encode_price_sqrt(1, 1)
    assert get_next_sqrt_price_from_input(price, E18 // 10, 0, True) == price
    assert get_next_sqrt_price_from_input(price, E18 // 10, 0, False) == price
    # returns the minimum price for max inputs
    max_amount_no_overflow = MAX_UINT256 - ((MAX_UINT128 << 96) // (2**160 - 1))
    assert (
        get_next_sqrt_price_from_input(2**160 - 1, MAX_UINT128, max_amount_no_overflow, True) == 1
    )
    assert get_next_sqrt_price_from_input(price, E18, E18 // 10, False) == (
        87150978765690771352898345369
    )
    assert get_next_sqrt_price_from_input(price, E18, E18 // 10, True) == (
        72025602285694852357767227579
    )
    # amountIn > type(uint96).max and zeroForOne = true
    assert get_next_sqrt_price_from_input(price, 10 * E18, 2**100, True) == 624999999995069620
    # can return 1 with enough amountIn and zeroForOne = true
    assert get_next_sqrt_price_from_input(price, 1, MAX_UINT256 // 2, True) == 1


def test_next_sqrt_price_from_output() -> None:
    with pytest.raises(SwapRevert):
        get_next_sqrt_price_from_output(0, 0, E18 // 10, False)
    with pytest.raises(SwapRevert):
        get_next_sqrt_price_from_output(1, 0, E18 // 10, True)
    price = 20282409603651670423947251286016
    # output amount at or beyond the virtual reserves of token0 / token1
    for amount_out, zero_for_one in ((4, False), (5, False), (262145, True), (262144, True)):
        with pytest.raises(SwapRevert):
            get_next_sqrt_price_from_output(price, 1024, amount_out, zero_for_one)
    assert get_next_sqrt_price_from_output(price, 1024, 262143, True) == 77371252455336267181195264
    one = encode_price_sqrt(1, 1)
    assert get_next_sqrt_price_from_output(one, E18 // 10, 0, True) == one
    assert get_next_sqrt_price_from_output(one, E18 // 10, 0, False) == one
    assert get_next_sqrt_price_from_output(one, E18, E18 // 10, False) == (
        88031291682515930659493278152
    )
    assert get_next_sqrt_price_from_output(one, E18, E18 // 10, True) == (
        71305346262837903834189555302
    )
    for zero_for_one in (True, False):
        with pytest.raises(SwapRevert):
            get_next_sqrt_price_from_output(one, 1, MAX_UINT256, zero_for_one)


def test_amount0_delta_rounding() -> None:
    assert get_amount0_delta(encode_price_sqrt(1, 1), encode_price_sqrt(2, 1), 0, True) == 0
    assert get_amount0_delta(encode_price_sqrt(1, 1), encode_price_sqrt(1, 1), 0, True) == 0
    up = get_amount0_delta(encode_price_sqrt(1, 1), encode_price_sqrt(121, 100), E18, True)
    down = get_amount0_delta(encode_price_sqrt(1, 1), encode_price_sqrt(121, 100), E18, False)
    assert up == 90909090909090910
    assert down == up - 1
    # works for prices that overflow
    big_up = get_amount0_delta(encode_price_sqrt(2**90, 1), encode_price_sqrt(2**96, 1), E18, True)
    big_down = get_amount0_delta(
        encode_price_sqrt(2**90, 1), encode_price_sqrt(2**96, 1), E18, False
    )
    assert big_up == big_down + 1
    with pytest.raises(SwapRevert):
        get_amount0_delta(0, 1, 1, True)  # zero price


def test_amount1_delta_rounding() -> None:
    assert get_amount1_delta(encode_price_sqrt(1, 1), encode_price_sqrt(2, 1), 0, True) == 0
    up = get_amount1_delta(encode_price_sqrt(1, 1), encode_price_sqrt(121, 100), E18, True)
    down = get_amount1_delta(encode_price_sqrt(1, 1), encode_price_sqrt(121, 100), E18, False)
    assert up == 100000000000000000
    assert down == up - 1


def test_signed_deltas_round_against_the_pool() -> None:
    a, b = encode_price_sqrt(1, 1), encode_price_sqrt(121, 100)
    assert get_amount0_delta_signed(a, b, E18) == 90909090909090910
    assert get_amount0_delta_signed(a, b, -E18) == -90909090909090909
    assert get_amount1_delta_signed(a, b, E18) == 100000000000000000
    assert get_amount1_delta_signed(a, b, -E18) == -99999999999999999


def test_swap_computation_at_extreme_price() -> None:
    sqrt_p = 1025574284609383690408304870162715216695788925244
    liquidity = 50015962439936049619261659728067971248
    sqrt_q = get_next_sqrt_price_from_input(sqrt_p, liquidity, 406, True)
    assert sqrt_q == 1025574284609383582644711336373707553698163132913
    assert get_amount0_delta(sqrt_q, sqrt_p, liquidity, True) == 406


# --- SwapMath ---------------------------------------------------------------------------------


def test_swap_step_exact_in_capped_at_target_one_for_zero() -> None:
    price, target = encode_price_sqrt(1, 1), encode_price_sqrt(101, 100)
    sqrt_q, amount_in, amount_out, fee = compute_swap_step(price, target, 2 * E18, E18, 600)
    assert (amount_in, fee, amount_out) == (9975124224178055, 5988667735148, 9925619580021728)
    assert amount_in + fee < E18
    assert sqrt_q == target < get_next_sqrt_price_from_input(price, 2 * E18, E18, False)


def test_swap_step_exact_out_capped_at_target_one_for_zero() -> None:
    price, target = encode_price_sqrt(1, 1), encode_price_sqrt(101, 100)
    sqrt_q, amount_in, amount_out, fee = compute_swap_step(price, target, 2 * E18, -E18, 600)
    assert (amount_in, fee, amount_out) == (9975124224178055, 5988667735148, 9925619580021728)
    assert amount_out < E18
    assert sqrt_q == target < get_next_sqrt_price_from_output(price, 2 * E18, E18, False)


def test_swap_step_exact_in_fully_spent_one_for_zero() -> None:
    price, target = encode_price_sqrt(1, 1), encode_price_sqrt(1000, 100)
    sqrt_q, amount_in, amount_out, fee = compute_swap_step(price, target, 2 * E18, E18, 600)
    assert (amount_in, fee, amount_out) == (999400000000000000, 600000000000000, 666399946655997866)
    assert amount_in + fee == E18
    assert sqrt_q < target
    assert sqrt_q == get_next_sqrt_price_from_input(price, 2 * E18, E18 - fee, False)


def test_swap_step_exact_out_fully_received_one_for_zero() -> None:
    price, target = encode_price_sqrt(1, 1), encode_price_sqrt(10000, 100)
    sqrt_q, amount_in, amount_out, fee = compute_swap_step(price, target, 2 * E18, -E18, 600)
    assert (amount_in, fee, amount_out) == (2 * E18, 1200720432259356, E18)
    assert sqrt_q < target
    assert sqrt_q == get_next_sqrt_price_from_output(price, 2 * E18, E18, False)


def test_swap_step_amount_out_is_capped_at_desired_amount() -> None:
    assert compute_swap_step(
        417332158212080721273783715441582,
        1452870262520218020823638996,
        159344665391607089467575320103,
        -1,
        1,
    ) == (417332158212080721273783715441581, 1, 1, 1)


def test_swap_step_target_price_of_one_uses_partial_input() -> None:
    assert compute_swap_step(2, 1, 1, 3915081100057732413702495386755767, 1) == (
        1,
        39614081257132168796771975168,
        0,
        39614120871253040049813,
    )


def test_swap_step_entire_input_taken_as_fee() -> None:
    assert compute_swap_step(
        2413, 79887613182836312, 1985041575832132834610021537970, 10, 1872
    ) == (
        2413,
        0,
        0,
        10,
    )


def test_swap_step_intermediate_insufficient_liquidity_exact_output() -> None:
    sqrt_p = 20282409603651670423947251286016
    assert compute_swap_step(sqrt_p, sqrt_p * 11 // 10, 1024, -4, 3000) == (
        sqrt_p * 11 // 10,
        26215,
        0,
        79,
    )
    assert compute_swap_step(sqrt_p, sqrt_p * 9 // 10, 1024, -263000, 3000) == (
        sqrt_p * 9 // 10,
        1,
        26214,
        1,
    )


# --- LiquidityMath ----------------------------------------------------------------------------


def test_add_delta() -> None:
    assert add_delta(1, 0) == 1
    assert add_delta(1, -1) == 0
    assert add_delta(1, 1) == 2
    with pytest.raises(SwapRevert, match="LA"):
        add_delta(2**128 - 15, 15)
    with pytest.raises(SwapRevert, match="LS"):
        add_delta(0, -1)
    with pytest.raises(SwapRevert, match="LS"):
        add_delta(3, -4)


# --- TickBitmap -------------------------------------------------------------------------------


def _next(ticks: list[int], tick: int, lte: bool) -> tuple[int, bool]:
    return next_initialized_tick_within_one_word(bitmap_from_ticks(ticks, 1), tick, 1, lte)


INITIALIZED = [-200, -55, -4, 70, 78, 84, 139, 240, 535]


def test_next_initialized_tick_to_the_right() -> None:
    assert _next(INITIALIZED, 78, False) == (84, True)
    assert _next(INITIALIZED, -55, False) == (-4, True)
    assert _next(INITIALIZED, 77, False) == (78, True)
    assert _next(INITIALIZED, -56, False) == (-55, True)
    assert _next(INITIALIZED, 255, False) == (511, False)  # stops at the word boundary
    assert _next(INITIALIZED, -257, False) == (-200, True)
    assert _next([*INITIALIZED, 340], 328, False) == (340, True)
    assert _next(INITIALIZED, 508, False) == (511, False)
    assert _next(INITIALIZED, 255, False) == (511, False)
    assert _next(INITIALIZED, 383, False) == (511, False)


def test_next_initialized_tick_to_the_left() -> None:
    assert _next(INITIALIZED, 78, True) == (78, True)
    assert _next(INITIALIZED, 79, True) == (78, True)
    assert _next(INITIALIZED, 258, True) == (256, False)  # does not exceed the word boundary
    assert _next(INITIALIZED, 256, True) == (256, False)
    assert _next(INITIALIZED, 72, True) == (70, True)
    assert _next(INITIALIZED, -257, True) == (-512, False)
    assert _next(INITIALIZED, 1023, True) == (768, False)
    assert _next(INITIALIZED, 900, True) == (768, False)
    assert _next([*INITIALIZED, 329], 456, True) == (329, True)


def test_bitmap_round_trip() -> None:
    ticks = sorted({random.Random(3).randrange(-20000, 20000) * 60 for _ in range(300)})
    assert ticks_from_bitmap(bitmap_from_ticks(ticks, 60), 60) == ticks
