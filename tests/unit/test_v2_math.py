"""Uniswap V2 math against the cases published in Uniswap's v2-core/v2-periphery specs."""

from __future__ import annotations

import random

import pytest

from agent.dex.v2 import V2Pool, get_amount_in, get_amount_out
from agent.errors import InsufficientLiquidity, SwapRevert

E18 = 10**18
TOKEN0 = "0x000000000000000000000000000000000000000A"
TOKEN1 = "0x000000000000000000000000000000000000000b"


def test_router_spec_get_amount_out_and_in() -> None:
    # UniswapV2Router01.spec.ts: getAmountOut / getAmountIn
    assert get_amount_out(2, 100, 100) == 1
    assert get_amount_in(1, 100, 100) == 2
    with pytest.raises(SwapRevert, match="INSUFFICIENT_INPUT_AMOUNT"):
        get_amount_out(0, 100, 100)
    with pytest.raises(InsufficientLiquidity, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_out(2, 0, 100)
    with pytest.raises(InsufficientLiquidity, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_out(2, 100, 0)
    with pytest.raises(SwapRevert, match="INSUFFICIENT_OUTPUT_AMOUNT"):
        get_amount_in(0, 100, 100)
    with pytest.raises(InsufficientLiquidity, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_in(1, 0, 100)
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(100, 100, 100)  # the whole reserve can never be bought


@pytest.mark.parametrize(
    ("swap_amount", "reserve_in", "reserve_out", "expected_out"),
    [
        # UniswapV2Pair.spec.ts swapTestCases: the largest output the K check accepts
        (1, 5, 10, 1662497915624478906),
        (1, 10, 5, 453305446940074565),
        (2, 5, 10, 2851015155847869602),
        (2, 10, 5, 831248957812239453),
        (1, 10, 10, 906610893880149131),
        (1, 100, 100, 987158034397061298),
        (1, 1000, 1000, 996006981039903216),
    ],
)
def test_pair_spec_swap_cases(
    swap_amount: int, reserve_in: int, reserve_out: int, expected_out: int
) -> None:
    assert get_amount_out(swap_amount * E18, reserve_in * E18, reserve_out * E18) == expected_out


def test_fee_pips_3000_equals_library_formula_exactly() -> None:
    rng = random.Random(1)
    for _ in range(5000):
        amount, reserve_in, reserve_out = (rng.randrange(1, 2**112) for _ in range(3))
        assert get_amount_out(amount, reserve_in, reserve_out) == (
            amount * 997 * reserve_out // (reserve_in * 1000 + amount * 997)
        )
        assert get_amount_out(amount, reserve_in, reserve_out, 3000) == (
            amount * 997_000 * reserve_out // (reserve_in * 1_000_000 + amount * 997_000)
        )
        if amount < reserve_out:
            expected_in = reserve_in * amount * 1000 // ((reserve_out - amount) * 997) + 1
            assert get_amount_in(amount, reserve_in, reserve_out) == expected_in
            # paying the quoted input really yields at least the requested output
            assert get_amount_out(expected_in, reserve_in, reserve_out) >= amount


def test_other_fee_tiers() -> None:
    # a 0.25 % fork: 9975 / 10000
    assert get_amount_out(E18, 100 * E18, 100 * E18, 2500) == (
        E18 * 9975 * 100 * E18 // (100 * E18 * 10000 + E18 * 9975)
    )
    assert get_amount_out(E18, 100 * E18, 100 * E18, 2500) > get_amount_out(
        E18, 100 * E18, 100 * E18
    )


def test_overflow_reverts_like_safemath() -> None:
    with pytest.raises(SwapRevert, match="overflow"):
        get_amount_out(2**250, 2**100, 2**100)


def test_pool_quotes_and_swaps_by_token() -> None:
    pool = V2Pool("0xpair", TOKEN0, TOKEN1, 1000 * E18, 3_000_000 * 10**6, block=7)
    out = pool.quote_exact_input(TOKEN0, E18)
    assert out == get_amount_out(E18, 1000 * E18, 3_000_000 * 10**6)
    assert pool.quote_exact_input(TOKEN1.lower(), 3000 * 10**6) == get_amount_out(
        3000 * 10**6, 3_000_000 * 10**6, 1000 * E18
    )
    needed = pool.quote_exact_output(TOKEN1, out)
    assert needed <= E18
    amount_out, after = pool.swap_exact_input(TOKEN0, E18)
    assert amount_out == out
    assert (after.reserve0, after.reserve1) == (1001 * E18, 3_000_000 * 10**6 - out)
    assert (pool.reserve0, pool.reserve1) == (1000 * E18, 3_000_000 * 10**6)  # unchanged
    amount_in, after_out = pool.swap_exact_output(TOKEN0, E18)
    assert after_out.reserve0 == 999 * E18 and after_out.reserve1 == 3_000_000 * 10**6 + amount_in
    assert after.block == 7
    with pytest.raises(ValueError, match="not in pool"):
        pool.quote_exact_input("0x0000000000000000000000000000000000000001", 1)
