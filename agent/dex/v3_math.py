"""Uniswap V3 core math as pure Python integers, mirroring the Solidity libraries line by line.

FullMath, TickMath, SqrtPriceMath, SwapMath, LiquidityMath, BitMath and the tick bitmap walk of
``@uniswap/v3-core`` 1.0.x. Where Solidity would revert (a ``require``, a checked cast, an
overflow in FullMath) these functions raise ``SwapRevert`` (a ``ValueError``) with the revert
string when the contract has one. Prices are Q64.96 fixed point (``sqrt_price_x96``), liquidity
is the pool's ``uint128`` L, amounts are smallest token units, fees are pips (1e-6).

These readable versions are the reference; ``agent.dex.v3.V3Pool`` inlines the same arithmetic in
its swap loop for speed and is tested against them.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.errors import SwapRevert

MAX_UINT256 = (1 << 256) - 1
MAX_UINT160 = (1 << 160) - 1
MAX_UINT128 = (1 << 128) - 1
MAX_INT256 = (1 << 255) - 1
Q96 = 1 << 96
RESOLUTION = 96

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342

FEE_DENOMINATOR_PIPS = 1_000_000


# --- FullMath / UnsafeMath ------------------------------------------------------------------


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a * b / denominator) with 512-bit intermediate, as ``FullMath.mulDiv``.

    Reverts when ``denominator`` is 0 or the result does not fit in uint256.
    """
    if denominator <= 0:
        raise SwapRevert("FullMath: denominator is zero")
    result = a * b // denominator
    if result > MAX_UINT256:
        raise SwapRevert("FullMath: result overflows uint256")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a * b / denominator), as ``FullMath.mulDivRoundingUp`` (same reverts as ``mul_div``)."""
    result = mul_div(a, b, denominator)
    if (a * b) % denominator > 0:
        if result >= MAX_UINT256:
            raise SwapRevert("FullMath: result overflows uint256")
        result += 1
    return result


def div_rounding_up(x: int, y: int) -> int:
    """ceil(x / y) as ``UnsafeMath.divRoundingUp`` (EVM division by zero yields 0)."""
    if y == 0:
        return 0
    return -(-x // y)


# --- BitMath ----------------------------------------------------------------------------------


def most_significant_bit(x: int) -> int:
    """Index of the highest set bit of a non-zero uint256."""
    if x <= 0:
        raise SwapRevert("BitMath: x is zero")
    return x.bit_length() - 1


def least_significant_bit(x: int) -> int:
    """Index of the lowest set bit of a non-zero uint256."""
    if x <= 0:
        raise SwapRevert("BitMath: x is zero")
    return (x & -x).bit_length() - 1


# --- TickMath ---------------------------------------------------------------------------------

_TICK_FACTORS = (
    (0x2, 0xFFF97272373D413259A46990580E213A),
    (0x4, 0xFFF2E50F5F656932EF12357CF3C7FDCC),
    (0x8, 0xFFE5CACA7E10E4E61C3624EAA0941CD0),
    (0x10, 0xFFCB9843D60F6159C9DB58835C926644),
    (0x20, 0xFF973B41FA98C081472E6896DFB254C0),
    (0x40, 0xFF2EA16466C96A3843EC78B326B52861),
    (0x80, 0xFE5DEE046A99A2A811C461F1969C3053),
    (0x100, 0xFCBE86C7900A88AEDCFFC83B479AA3A4),
    (0x200, 0xF987A7253AC413176F2B074CF7815E54),
    (0x400, 0xF3392B0822B70005940C7A398E4B70F3),
    (0x800, 0xE7159475A2C29B7443B29C7FA6E889D9),
    (0x1000, 0xD097F3BDFD2022B8845AD8F792AA5825),
    (0x2000, 0xA9F746462D870FDF8A65DC1F90E061E5),
    (0x4000, 0x70D869A156D2A1B890BB3DF62BAF32F7),
    (0x8000, 0x31BE135F97D08FD981231505542FCFA6),
    (0x10000, 0x9AA508B5B7A84E1C677DE54F3E99BC9),
    (0x20000, 0x5D6AF8DEDB81196699C329225EE604),
    (0x40000, 0x2216E584F5FA1EA926041BEDFE98),
    (0x80000, 0x48A170391F7DC42444E8FA2),
)


def get_sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001^tick) as Q64.96, exactly ``TickMath.getSqrtRatioAtTick`` (reverts 'T')."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise SwapRevert("T")
    ratio = (
        0xFFFCB933BD6FAD37AA2D162D1A594001
        if abs_tick & 0x1
        else 0x100000000000000000000000000000000
    )
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = MAX_UINT256 // ratio
    # Q128.128 -> Q64.96 rounding up, so getTickAtSqrtRatio of the result is consistent
    return (ratio >> 32) + (0 if ratio & 0xFFFFFFFF == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """Greatest tick with ``get_sqrt_ratio_at_tick(tick) <= sqrt_price_x96`` (``TickMath``, 'R').

    Ported step by step (msb, 14 iterations of log2 refinement, tickLow/tickHi bracket) so the
    result equals the contract's for every input, not just mathematically.
    """
    if sqrt_price_x96 < MIN_SQRT_RATIO or sqrt_price_x96 >= MAX_SQRT_RATIO:
        raise SwapRevert("R")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_hi = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_hi:
        return tick_low
    return tick_hi if get_sqrt_ratio_at_tick(tick_hi) <= sqrt_price_x96 else tick_low


# --- LiquidityMath ----------------------------------------------------------------------------


def add_delta(liquidity: int, liquidity_delta: int) -> int:
    """uint128 + int128 with the pool's checks ('LS' underflow, 'LA' overflow)."""
    result = liquidity + liquidity_delta
    if liquidity_delta < 0:
        if result < 0:
            raise SwapRevert("LS")
    elif result > MAX_UINT128:
        raise SwapRevert("LA")
    return result


# --- SqrtPriceMath ----------------------------------------------------------------------------


def _to_uint160(value: int) -> int:
    if value > MAX_UINT160:
        raise SwapRevert("SafeCast: uint160 overflow")
    return value


def get_next_sqrt_price_from_amount0_rounding_up(
    sqrt_price_x96: int, liquidity: int, amount: int, add: bool
) -> int:
    """Price after adding/removing ``amount`` of token0, rounded up (``SqrtPriceMath``)."""
    if amount == 0:
        return sqrt_price_x96
    numerator1 = liquidity << RESOLUTION
    product = amount * sqrt_price_x96
    if add:
        # the precise formula unless amount * price or the denominator overflows uint256
        if product <= MAX_UINT256:
            denominator = numerator1 + product
            if denominator <= MAX_UINT256:
                return mul_div_rounding_up(numerator1, sqrt_price_x96, denominator)
        denominator1 = numerator1 // sqrt_price_x96 + amount
        if denominator1 > MAX_UINT256:
            raise SwapRevert("LowGasSafeMath: add overflow")
        return div_rounding_up(numerator1, denominator1)
    if product > MAX_UINT256 or numerator1 <= product:
        raise SwapRevert("SqrtPriceMath: output exceeds virtual reserves")
    return _to_uint160(mul_div_rounding_up(numerator1, sqrt_price_x96, numerator1 - product))


def get_next_sqrt_price_from_amount1_rounding_down(
    sqrt_price_x96: int, liquidity: int, amount: int, add: bool
) -> int:
    """Price after adding/removing ``amount`` of token1, rounded down (``SqrtPriceMath``)."""
    if add:
        quotient = (
            (amount << RESOLUTION) // liquidity
            if amount <= MAX_UINT160
            else mul_div(amount, Q96, liquidity)
        )
        result = sqrt_price_x96 + quotient
        if result > MAX_UINT256:
            raise SwapRevert("LowGasSafeMath: add overflow")
        return _to_uint160(result)
    quotient = (
        div_rounding_up(amount << RESOLUTION, liquidity)
        if amount <= MAX_UINT160
        else mul_div_rounding_up(amount, Q96, liquidity)
    )
    if sqrt_price_x96 <= quotient:
        raise SwapRevert("SqrtPriceMath: output exceeds virtual reserves")
    return sqrt_price_x96 - quotient


def get_next_sqrt_price_from_input(
    sqrt_price_x96: int, liquidity: int, amount_in: int, zero_for_one: bool
) -> int:
    """Price after swapping ``amount_in`` (after fee) into the pool, never past the target."""
    if sqrt_price_x96 <= 0 or liquidity <= 0:
        raise SwapRevert("SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount0_rounding_up(
            sqrt_price_x96, liquidity, amount_in, True
        )
    return get_next_sqrt_price_from_amount1_rounding_down(
        sqrt_price_x96, liquidity, amount_in, True
    )


def get_next_sqrt_price_from_output(
    sqrt_price_x96: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    """Price after taking ``amount_out`` out of the pool, moved at least far enough."""
    if sqrt_price_x96 <= 0 or liquidity <= 0:
        raise SwapRevert("SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount1_rounding_down(
            sqrt_price_x96, liquidity, amount_out, False
        )
    return get_next_sqrt_price_from_amount0_rounding_up(
        sqrt_price_x96, liquidity, amount_out, False
    )


def get_amount0_delta(
    sqrt_ratio_a_x96: int, sqrt_ratio_b_x96: int, liquidity: int, round_up: bool
) -> int:
    """token0 amount between two prices for ``liquidity`` (unsigned, rounded as asked)."""
    if sqrt_ratio_a_x96 > sqrt_ratio_b_x96:
        sqrt_ratio_a_x96, sqrt_ratio_b_x96 = sqrt_ratio_b_x96, sqrt_ratio_a_x96
    numerator1 = liquidity << RESOLUTION
    numerator2 = sqrt_ratio_b_x96 - sqrt_ratio_a_x96
    if sqrt_ratio_a_x96 <= 0:
        raise SwapRevert("SqrtPriceMath: zero price")
    if round_up:
        return div_rounding_up(
            mul_div_rounding_up(numerator1, numerator2, sqrt_ratio_b_x96), sqrt_ratio_a_x96
        )
    return mul_div(numerator1, numerator2, sqrt_ratio_b_x96) // sqrt_ratio_a_x96


def get_amount1_delta(
    sqrt_ratio_a_x96: int, sqrt_ratio_b_x96: int, liquidity: int, round_up: bool
) -> int:
    """token1 amount between two prices for ``liquidity`` (unsigned, rounded as asked)."""
    if sqrt_ratio_a_x96 > sqrt_ratio_b_x96:
        sqrt_ratio_a_x96, sqrt_ratio_b_x96 = sqrt_ratio_b_x96, sqrt_ratio_a_x96
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_ratio_b_x96 - sqrt_ratio_a_x96, Q96)
    return mul_div(liquidity, sqrt_ratio_b_x96 - sqrt_ratio_a_x96, Q96)


def _to_int256(value: int) -> int:
    if value > MAX_INT256:
        raise SwapRevert("SafeCast: int256 overflow")
    return value


def get_amount0_delta_signed(
    sqrt_ratio_a_x96: int, sqrt_ratio_b_x96: int, liquidity_delta: int
) -> int:
    """Signed token0 delta for a liquidity change: rounds up when adding, down when removing."""
    if liquidity_delta < 0:
        return -_to_int256(
            get_amount0_delta(sqrt_ratio_a_x96, sqrt_ratio_b_x96, -liquidity_delta, False)
        )
    return _to_int256(get_amount0_delta(sqrt_ratio_a_x96, sqrt_ratio_b_x96, liquidity_delta, True))


def get_amount1_delta_signed(
    sqrt_ratio_a_x96: int, sqrt_ratio_b_x96: int, liquidity_delta: int
) -> int:
    """Signed token1 delta for a liquidity change: rounds up when adding, down when removing."""
    if liquidity_delta < 0:
        return -_to_int256(
            get_amount1_delta(sqrt_ratio_a_x96, sqrt_ratio_b_x96, -liquidity_delta, False)
        )
    return _to_int256(get_amount1_delta(sqrt_ratio_a_x96, sqrt_ratio_b_x96, liquidity_delta, True))


# --- SwapMath ---------------------------------------------------------------------------------


def compute_swap_step(
    sqrt_ratio_current_x96: int,
    sqrt_ratio_target_x96: int,
    liquidity: int,
    amount_remaining: int,
    fee_pips: int,
) -> tuple[int, int, int, int]:
    """One step of a swap inside one price range: ``(sqrt_ratio_next, amount_in, amount_out, fee)``.

    ``amount_remaining`` > 0 is exact input (fee included), < 0 exact output. Mirrors
    ``SwapMath.computeSwapStep`` including the ``max`` reuse and the output cap.
    """
    zero_for_one = sqrt_ratio_current_x96 >= sqrt_ratio_target_x96
    exact_in = amount_remaining >= 0
    amount_in = 0
    amount_out = 0
    if exact_in:
        amount_remaining_less_fee = mul_div(
            amount_remaining, FEE_DENOMINATOR_PIPS - fee_pips, FEE_DENOMINATOR_PIPS
        )
        amount_in = (
            get_amount0_delta(sqrt_ratio_target_x96, sqrt_ratio_current_x96, liquidity, True)
            if zero_for_one
            else get_amount1_delta(sqrt_ratio_current_x96, sqrt_ratio_target_x96, liquidity, True)
        )
        if amount_remaining_less_fee >= amount_in:
            sqrt_ratio_next_x96 = sqrt_ratio_target_x96
        else:
            sqrt_ratio_next_x96 = get_next_sqrt_price_from_input(
                sqrt_ratio_current_x96, liquidity, amount_remaining_less_fee, zero_for_one
            )
    else:
        amount_out = (
            get_amount1_delta(sqrt_ratio_target_x96, sqrt_ratio_current_x96, liquidity, False)
            if zero_for_one
            else get_amount0_delta(sqrt_ratio_current_x96, sqrt_ratio_target_x96, liquidity, False)
        )
        if -amount_remaining >= amount_out:
            sqrt_ratio_next_x96 = sqrt_ratio_target_x96
        else:
            sqrt_ratio_next_x96 = get_next_sqrt_price_from_output(
                sqrt_ratio_current_x96, liquidity, -amount_remaining, zero_for_one
            )

    reached_target = sqrt_ratio_target_x96 == sqrt_ratio_next_x96
    if zero_for_one:
        if not (reached_target and exact_in):
            amount_in = get_amount0_delta(
                sqrt_ratio_next_x96, sqrt_ratio_current_x96, liquidity, True
            )
        if not (reached_target and not exact_in):
            amount_out = get_amount1_delta(
                sqrt_ratio_next_x96, sqrt_ratio_current_x96, liquidity, False
            )
    else:
        if not (reached_target and exact_in):
            amount_in = get_amount1_delta(
                sqrt_ratio_current_x96, sqrt_ratio_next_x96, liquidity, True
            )
        if not (reached_target and not exact_in):
            amount_out = get_amount0_delta(
                sqrt_ratio_current_x96, sqrt_ratio_next_x96, liquidity, False
            )

    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining

    if exact_in and sqrt_ratio_next_x96 != sqrt_ratio_target_x96:
        # the target was not reached: everything left over after amount_in is fee
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, FEE_DENOMINATOR_PIPS - fee_pips)
    return sqrt_ratio_next_x96, amount_in, amount_out, fee_amount


# --- TickBitmap -------------------------------------------------------------------------------


def tick_position(compressed_tick: int) -> tuple[int, int]:
    """``(word_pos, bit_pos)`` of a compressed tick in the bitmap (``TickBitmap.position``)."""
    return compressed_tick >> 8, compressed_tick & 0xFF


def next_initialized_tick_within_one_word(
    bitmap: Mapping[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """Next initialized tick at or left of (``lte``) / right of ``tick`` within its bitmap word.

    ``bitmap`` maps word position (int16) to the uint256 word. Returns ``(next_tick,
    initialized)``; when nothing is initialized in the word, the word's edge and ``False``. This
    one-word limit is why the pool's swap loop takes a step at every word boundary.
    """
    compressed = tick // tick_spacing
    if lte:
        word_pos, bit_pos = tick_position(compressed)
        mask = (1 << bit_pos) - 1 + (1 << bit_pos)
        masked = bitmap.get(word_pos, 0) & mask
        if masked != 0:
            return (compressed - (bit_pos - most_significant_bit(masked))) * tick_spacing, True
        return (compressed - bit_pos) * tick_spacing, False
    word_pos, bit_pos = tick_position(compressed + 1)
    mask = MAX_UINT256 ^ ((1 << bit_pos) - 1)
    masked = bitmap.get(word_pos, 0) & mask
    if masked != 0:
        return (compressed + 1 + (least_significant_bit(masked) - bit_pos)) * tick_spacing, True
    return (compressed + 1 + (255 - bit_pos)) * tick_spacing, False


def ticks_from_bitmap(bitmap: Mapping[int, int], tick_spacing: int) -> list[int]:
    """All initialized ticks (ascending) encoded in bitmap words ``{word_pos: word}``."""
    ticks: list[int] = []
    for word_pos in sorted(bitmap):
        word = bitmap[word_pos]
        while word:
            low_bit = word & -word
            bit_pos = low_bit.bit_length() - 1
            ticks.append(((word_pos << 8) + bit_pos) * tick_spacing)
            word ^= low_bit
    return ticks


def bitmap_from_ticks(ticks: list[int] | tuple[int, ...], tick_spacing: int) -> dict[int, int]:
    """Bitmap words ``{word_pos: word}`` with a bit set for each initialized tick."""
    bitmap: dict[int, int] = {}
    for tick in ticks:
        if tick % tick_spacing:
            raise ValueError(f"tick {tick} is not a multiple of tick spacing {tick_spacing}")
        word_pos, bit_pos = tick_position(tick // tick_spacing)
        bitmap[word_pos] = bitmap.get(word_pos, 0) | (1 << bit_pos)
    return bitmap


# --- UniswapV3Pool.swap -----------------------------------------------------------------------


def swap_reference(
    *,
    sqrt_price_x96: int,
    tick: int,
    liquidity: int,
    tick_spacing: int,
    fee_pips: int,
    bitmap: Mapping[int, int],
    liquidity_net: Mapping[int, int],
    zero_for_one: bool,
    amount_specified: int,
    sqrt_price_limit_x96: int,
) -> tuple[int, int, int, int, int]:
    """The swap loop of ``UniswapV3Pool.swap`` line by line, over bitmap words.

    Returns ``(amount0, amount1, sqrt_price_x96, tick, liquidity)`` with the pool's signs
    (positive = paid into the pool). Slow and plain on purpose: it is the reference the fast
    loop in ``agent.dex.v3`` is tested against.
    """
    if amount_specified == 0:
        raise SwapRevert("AS")
    if zero_for_one:
        if not (MIN_SQRT_RATIO < sqrt_price_limit_x96 < sqrt_price_x96):
            raise SwapRevert("SPL")
    elif not (sqrt_price_x96 < sqrt_price_limit_x96 < MAX_SQRT_RATIO):
        raise SwapRevert("SPL")
    exact_input = amount_specified > 0
    remaining = amount_specified
    calculated = 0
    while remaining != 0 and sqrt_price_x96 != sqrt_price_limit_x96:
        step_start = sqrt_price_x96
        tick_next, initialized = next_initialized_tick_within_one_word(
            bitmap, tick, tick_spacing, zero_for_one
        )
        tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
        sqrt_price_next = get_sqrt_ratio_at_tick(tick_next)
        passes_limit = (
            sqrt_price_next < sqrt_price_limit_x96
            if zero_for_one
            else sqrt_price_next > sqrt_price_limit_x96
        )
        sqrt_price_x96, amount_in, amount_out, fee_amount = compute_swap_step(
            sqrt_price_x96,
            sqrt_price_limit_x96 if passes_limit else sqrt_price_next,
            liquidity,
            remaining,
            fee_pips,
        )
        if exact_input:
            remaining -= amount_in + fee_amount
            calculated -= amount_out
        else:
            remaining += amount_out
            calculated += amount_in + fee_amount
        if sqrt_price_x96 == sqrt_price_next:
            if initialized:
                net = liquidity_net[tick_next]
                liquidity = add_delta(liquidity, -net if zero_for_one else net)
            tick = tick_next - 1 if zero_for_one else tick_next
        elif sqrt_price_x96 != step_start:
            tick = get_tick_at_sqrt_ratio(sqrt_price_x96)
    if zero_for_one == exact_input:
        amount0, amount1 = amount_specified - remaining, calculated
    else:
        amount0, amount1 = calculated, amount_specified - remaining
    return amount0, amount1, sqrt_price_x96, tick, liquidity
