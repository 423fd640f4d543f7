"""Uniswap V2 constant-product math and pool state, wei-exact with ``UniswapV2Library``.

Fees are in pips (hundredths of a basis point): 3000 is the 0.30 % of Uniswap V2 and its forks.
With ``fee_pips=3000`` the results are exactly the library's ``997 / 1000`` formulas (the
``1e6`` form differs only by a common factor of 1000 that cancels in the integer division).
No I/O here: ``fetch_v2_pool`` lives in ``agent.dex.pools`` and is re-exported below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.errors import InsufficientLiquidity, SwapRevert

if TYPE_CHECKING:
    from web3 import AsyncWeb3

MAX_UINT256 = (1 << 256) - 1
FEE_DENOMINATOR_PIPS = 1_000_000
DEFAULT_FEE_PIPS = 3000

_INSUFFICIENT_INPUT = "UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT"
_INSUFFICIENT_OUTPUT = "UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT"
_INSUFFICIENT_LIQUIDITY = "UniswapV2Library: INSUFFICIENT_LIQUIDITY"


def get_amount_out(
    amount_in: int, reserve_in: int, reserve_out: int, fee_pips: int = DEFAULT_FEE_PIPS
) -> int:
    """Output amount (smallest units of the output token) for ``amount_in`` of the input token.

    Mirrors ``UniswapV2Library.getAmountOut``, including its reverts (raised as ``SwapRevert``,
    a ``ValueError``): zero input, empty reserves, uint256 overflow.
    """
    if amount_in <= 0:
        raise SwapRevert(_INSUFFICIENT_INPUT)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity(_INSUFFICIENT_LIQUIDITY)
    if fee_pips == 3000:
        amount_in_with_fee = amount_in * 997
        numerator = amount_in_with_fee * reserve_out
        denominator = reserve_in * 1000 + amount_in_with_fee
    else:
        amount_in_with_fee = amount_in * (FEE_DENOMINATOR_PIPS - fee_pips)
        numerator = amount_in_with_fee * reserve_out
        denominator = reserve_in * FEE_DENOMINATOR_PIPS + amount_in_with_fee
    if numerator > MAX_UINT256 or denominator > MAX_UINT256:
        raise SwapRevert("ds-math-mul-overflow")
    return numerator // denominator


def get_amount_in(
    amount_out: int, reserve_in: int, reserve_out: int, fee_pips: int = DEFAULT_FEE_PIPS
) -> int:
    """Input amount (smallest units) needed to receive exactly ``amount_out``.

    Mirrors ``UniswapV2Library.getAmountIn``: rounds up by adding 1 to the floor quotient, and
    reverts (``SwapRevert``/``InsufficientLiquidity``) when ``amount_out >= reserve_out``.
    """
    if amount_out <= 0:
        raise SwapRevert(_INSUFFICIENT_OUTPUT)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity(_INSUFFICIENT_LIQUIDITY)
    if amount_out >= reserve_out:
        # the library underflows (reserveOut - amountOut) or divides by zero here
        raise InsufficientLiquidity("ds-math-sub-underflow")
    if fee_pips == 3000:
        numerator = reserve_in * amount_out * 1000
        denominator = (reserve_out - amount_out) * 997
    else:
        numerator = reserve_in * amount_out * FEE_DENOMINATOR_PIPS
        denominator = (reserve_out - amount_out) * (FEE_DENOMINATOR_PIPS - fee_pips)
    if numerator > MAX_UINT256:
        raise SwapRevert("ds-math-mul-overflow")
    return numerator // denominator + 1


@dataclass(frozen=True, slots=True)
class V2Pool:
    """State of one V2 pair at ``block``. Reserves in smallest units; immutable.

    ``block`` is where the state was read or last changed: it holds at every later block until
    the pair's next change (a ``PoolRegistry`` advanced by events replaces only the states its
    logs changed). It is not part of equality: the same reserves are the same state.

    Token addresses are compared exactly first and case-insensitively as a fallback, so
    checksummed and lower-case addresses both work.
    """

    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    fee_pips: int = DEFAULT_FEE_PIPS
    block: int = field(default=0, compare=False)

    def _is_token0(self, token: str) -> bool:
        if token == self.token0:
            return True
        if token == self.token1:
            return False
        lowered = token.lower()
        if lowered == self.token0.lower():
            return True
        if lowered == self.token1.lower():
            return False
        raise ValueError(f"token {token} is not in pool {self.address}")

    def quote_exact_input(self, token_in: str, amount_in: int) -> int:
        """Amount of the other token received for ``amount_in`` of ``token_in`` (smallest units)."""
        if token_in == self.token0:
            reserve_in, reserve_out = self.reserve0, self.reserve1
        elif token_in == self.token1:
            reserve_in, reserve_out = self.reserve1, self.reserve0
        elif self._is_token0(token_in):
            reserve_in, reserve_out = self.reserve0, self.reserve1
        else:
            reserve_in, reserve_out = self.reserve1, self.reserve0
        return get_amount_out(amount_in, reserve_in, reserve_out, self.fee_pips)

    def quote_exact_output(self, token_out: str, amount_out: int) -> int:
        """Amount of the other token to pay in to receive ``amount_out`` of ``token_out``."""
        if self._is_token0(token_out):
            return get_amount_in(amount_out, self.reserve1, self.reserve0, self.fee_pips)
        return get_amount_in(amount_out, self.reserve0, self.reserve1, self.fee_pips)

    def swap_exact_input(self, token_in: str, amount_in: int) -> tuple[int, V2Pool]:
        """``(amount_out, pool_after)`` for swapping ``amount_in`` of ``token_in`` in."""
        amount_out = self.quote_exact_input(token_in, amount_in)
        return amount_out, self._after(self._is_token0(token_in), amount_in, amount_out)

    def swap_exact_output(self, token_out: str, amount_out: int) -> tuple[int, V2Pool]:
        """``(amount_in, pool_after)`` for receiving exactly ``amount_out`` of ``token_out``."""
        amount_in = self.quote_exact_output(token_out, amount_out)
        return amount_in, self._after(not self._is_token0(token_out), amount_in, amount_out)

    def _after(self, zero_for_one: bool, amount_in: int, amount_out: int) -> V2Pool:
        if zero_for_one:
            reserve0, reserve1 = self.reserve0 + amount_in, self.reserve1 - amount_out
        else:
            reserve0, reserve1 = self.reserve0 - amount_out, self.reserve1 + amount_in
        return V2Pool(
            self.address, self.token0, self.token1, reserve0, reserve1, self.fee_pips, self.block
        )


async def fetch_v2_pool(
    w3: AsyncWeb3[Any], address: str, fee_pips: int = DEFAULT_FEE_PIPS
) -> V2Pool:
    """Read token0, token1 and reserves of the pair at ``address`` in one multicall."""
    from agent.dex.pools import fetch_v2_pool as _fetch

    return await _fetch(w3, address, fee_pips)
