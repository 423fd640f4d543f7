"""Uniswap V3 pool state and swap simulation, wei-exact with the pool contract and QuoterV2.

``V3Pool`` is an immutable snapshot (price, tick, active liquidity, every initialized tick with
its ``liquidity_net``, the block it was read at). ``quote_exact_input`` / ``quote_exact_output``
run the pool's swap loop locally; ``swap`` also returns the pool state after the swap.

The loop mirrors ``UniswapV3Pool.swap`` step for step, including the step the contract takes at
every tick-bitmap word boundary (``nextInitializedTickWithinOneWord`` looks at one 256-bit word
at a time): each step rounds its amounts separately, so skipping a boundary would change the
result by a few wei. For speed the bitmap is replaced by a sorted tuple of initialized ticks
walked with an index, the SqrtPriceMath/SwapMath formulas are inlined (readable versions in
``agent.dex.v3_math``), and sqrt prices of initialized ticks are precomputed.

A pool may hold only the ticks of some bitmap words (``loaded_tick_range``, see
``agent.dex.pools``): the swap then runs with its price limit clamped to the edge of those
words, which changes no step before the edge, and a swap that would go on past the edge raises
``TicksNotLoaded`` (the table notes the direction so the registry loads more words).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from agent.dex.v3_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MAX_UINT128,
    MAX_UINT160,
    MAX_UINT256,
    MIN_SQRT_RATIO,
    MIN_TICK,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)
from agent.errors import InsufficientLiquidity, SwapRevert, TicksNotLoaded

if TYPE_CHECKING:
    from web3 import AsyncWeb3

FEE_TIERS_PIPS = (100, 500, 3000, 10000)
TICK_SPACING_BY_FEE = {100: 1, 500: 10, 3000: 60, 10000: 200}

_PIPS = 1_000_000
_MAX_MEMO = 4096  # full-step memo entries per tick table before it is cleared


class _TickTable:
    """Sorted initialized ticks with their liquidity_net and sqrt prices, plus a cache of
    sqrt prices at word-boundary ticks. Shared by a pool and the pools its swaps produce
    (ticks only change on Mint/Burn, which the registry re-reads)."""

    __slots__ = (
        "full_steps",
        "liquidity_nets",
        "sqrt_prices",
        "ticks",
        "wanted",
        "word_edge_sqrt_prices",
    )

    def __init__(self, ticks: tuple[tuple[int, int], ...]) -> None:
        self.ticks: tuple[int, ...] = tuple(t for t, _ in ticks)
        self.liquidity_nets: tuple[int, ...] = tuple(n for _, n in ticks)
        self.sqrt_prices: tuple[int, ...] = tuple(get_sqrt_ratio_at_tick(t) for t in self.ticks)
        # lazily filled; a cache of a pure function, so sharing it never changes a result
        self.word_edge_sqrt_prices: dict[int, int] = {}
        # (start, target, liquidity) -> (amount_in, amount_out, fee) of a step reaching target
        self.full_steps: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        # "below" / "above" once a quote was refused for leaving the loaded ticks that way:
        # the registry reads it to extend the window at its next refresh (a note, not state)
        self.wanted: set[str] = set()


@dataclass(frozen=True, slots=True)
class V3SwapResult:
    """Outcome of a simulated swap. Amounts in smallest units; ``pool`` is the state after."""

    amount_in: int
    amount_out: int
    pool: V3Pool


@dataclass(frozen=True, slots=True)
class V3Pool:
    """Immutable state of a Uniswap V3 pool at ``block``.

    ``ticks`` holds every initialized tick (liquidityGross > 0, even when its liquidity_net is 0)
    as ``(tick, liquidity_net)`` pairs in ascending tick order. ``sqrt_price_x96`` is Q64.96,
    ``liquidity`` the active uint128 L, ``fee_pips`` the pool fee in millionths.

    ``loaded_tick_range`` is ``(lowest, highest)`` tick of the tick-bitmap words that were read
    (whole words: every initialized tick in them is in ``ticks``), or None when every word was;
    an empty range (lowest above highest) means no tick is known.
    A swap that would move the price past it raises ``TicksNotLoaded`` instead of guessing.
    """

    address: str
    token0: str
    token1: str
    fee_pips: int
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks: tuple[tuple[int, int], ...]
    block: int = field(default=0, compare=False)  # read or last changed at: see ``V2Pool``
    _table: _TickTable | None = field(default=None, repr=False, compare=False)
    loaded_tick_range: tuple[int, int] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self._table is None:
            if any(a[0] >= b[0] for a, b in zip(self.ticks, self.ticks[1:], strict=False)):
                object.__setattr__(self, "ticks", tuple(sorted(self.ticks)))
            object.__setattr__(self, "_table", _TickTable(self.ticks))

    @classmethod
    def from_ticks(
        cls,
        *,
        address: str,
        token0: str,
        token1: str,
        fee_pips: int,
        tick_spacing: int,
        sqrt_price_x96: int,
        tick: int,
        liquidity: int,
        ticks: Iterable[tuple[int, int]],
        block: int = 0,
    ) -> V3Pool:
        """Build a pool from unsorted ``(tick, liquidity_net)`` pairs."""
        return cls(
            address,
            token0,
            token1,
            fee_pips,
            tick_spacing,
            sqrt_price_x96,
            tick,
            liquidity,
            tuple(sorted(ticks)),
            block,
        )

    def wanted_ticks(self) -> frozenset[str]:
        """ "below" / "above": directions a quote on this tick table was refused for leaving
        the loaded ticks (the registry extends the window that way)."""
        assert self._table is not None
        return frozenset(self._table.wanted)

    # --- public quoting API ---------------------------------------------------------------

    def zero_for_one(self, token_in: str) -> bool:
        """True when ``token_in`` is token0 (the swap lowers the price)."""
        if token_in == self.token0:
            return True
        if token_in == self.token1:
            return False
        lowered = token_in.lower()
        if lowered == self.token0.lower():
            return True
        if lowered == self.token1.lower():
            return False
        raise ValueError(f"token {token_in} is not in pool {self.address}")

    def quote_exact_input(
        self, token_in: str, amount_in: int, sqrt_price_limit_x96: int | None = None
    ) -> int:
        """Amount out (smallest units) for ``amount_in`` of ``token_in``, as QuoterV2 returns it.

        Like QuoterV2 and SwapRouter, a swap stopped by the price limit (or by running out of
        liquidity) returns the output of the part that was filled.
        """
        if amount_in <= 0:
            raise SwapRevert("AS")
        result = self._simulate(self.zero_for_one(token_in), amount_in, sqrt_price_limit_x96)
        return result[1]

    def quote_exact_output(
        self, token_out: str, amount_out: int, sqrt_price_limit_x96: int | None = None
    ) -> int:
        """Amount in (smallest units) needed to receive ``amount_out`` of ``token_out``.

        Without a price limit QuoterV2 requires the full output; when the pool cannot deliver
        it this raises ``InsufficientLiquidity``. With a limit it returns the input for the
        partial output, as QuoterV2 does.
        """
        if amount_out <= 0:
            raise SwapRevert("AS")
        zero_for_one = not self.zero_for_one(token_out)
        result = self._simulate(zero_for_one, -amount_out, sqrt_price_limit_x96)
        if sqrt_price_limit_x96 is None and result[1] != amount_out:
            raise InsufficientLiquidity(
                f"pool {self.address} can deliver only {result[1]} of {amount_out} requested"
            )
        return result[0]

    def swap(
        self, token_in: str, amount_specified: int, sqrt_price_limit_x96: int | None = None
    ) -> V3SwapResult:
        """Simulate ``pool.swap`` selling ``token_in``; returns amounts and the pool afterwards.

        ``amount_specified`` > 0 is an exact input of ``token_in``; < 0 an exact output of the
        other token (the pool's sign convention). Partial fills are returned as they happen on
        chain (a router/quoter with no price limit would revert on a partial exact output).
        """
        if amount_specified == 0:
            raise SwapRevert("AS")
        zero_for_one = self.zero_for_one(token_in)
        amount_in, amount_out, sqrt_price, tick, liquidity = self._simulate(
            zero_for_one, amount_specified, sqrt_price_limit_x96
        )
        if tick is None:
            tick = get_tick_at_sqrt_ratio(sqrt_price)
        pool = V3Pool(
            self.address,
            self.token0,
            self.token1,
            self.fee_pips,
            self.tick_spacing,
            sqrt_price,
            tick,
            liquidity,
            self.ticks,
            self.block,
            self._table,
            loaded_tick_range=self.loaded_tick_range,
        )
        return V3SwapResult(amount_in, amount_out, pool)

    # --- the swap loop --------------------------------------------------------------------

    def _simulate(
        self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None
    ) -> tuple[int, int, int, int | None, int]:
        """``(amount_in, amount_out, sqrt_price_after, tick_after | None, liquidity_after)``.

        ``tick_after`` is None when it must be derived from the final price (left to the
        caller so that quotes skip getTickAtSqrtRatio).
        """
        sqrt_price = self.sqrt_price_x96
        edge: int | None = None  # the loaded range's edge, when it is nearer than the limit
        if zero_for_one:
            limit = MIN_SQRT_RATIO + 1 if sqrt_price_limit_x96 is None else sqrt_price_limit_x96
            if not (MIN_SQRT_RATIO < limit < sqrt_price):
                raise SwapRevert("SPL")
            if self.loaded_tick_range is not None:
                edge, limit = self._loaded_edge(True, limit)
            result = self._swap_zero_for_one(amount_specified, limit)
        else:
            limit = MAX_SQRT_RATIO - 1 if sqrt_price_limit_x96 is None else sqrt_price_limit_x96
            if not (sqrt_price < limit < MAX_SQRT_RATIO):
                raise SwapRevert("SPL")
            if self.loaded_tick_range is not None:
                edge, limit = self._loaded_edge(False, limit)
            result = self._swap_one_for_zero(amount_specified, limit)
        if edge is not None and result[2] == edge:
            # stopped at the edge of the loaded ticks with the amount not yet filled: the rest
            # of the swap would read tick-bitmap words that were not loaded
            unfilled = (
                result[0] != amount_specified
                if amount_specified > 0
                else result[1] != -amount_specified
            )
            if unfilled:
                self._refuse("below" if zero_for_one else "above")
        if result[0] <= 0:
            # QuoterV2's and SwapRouter's callbacks require a positive input delta
            raise InsufficientLiquidity(f"pool {self.address} has no liquidity in that direction")
        return result

    def _loaded_edge(self, zero_for_one: bool, limit: int) -> tuple[int | None, int]:
        """``(edge, limit)``: the sqrt price at the loaded range's edge the swap moves toward,
        and the limit clamped to it (None and the limit as given when the limit comes first).
        Up to the edge the steps are the contract's: the loaded words hold every tick there.
        Raises ``TicksNotLoaded`` when the price already sits at or past that edge."""
        assert self.loaded_tick_range is not None and self._table is not None
        lowest, highest = self.loaded_tick_range
        spacing = self.tick_spacing
        cache = self._table.word_edge_sqrt_prices
        edge_tick = lowest if zero_for_one else highest
        edge = cache.get(edge_tick)
        if edge is None:
            edge = cache[edge_tick] = get_sqrt_ratio_at_tick(edge_tick)
        compressed = self.tick // spacing
        if zero_for_one:
            # the first step reads the word of the current tick
            if self.sqrt_price_x96 <= edge or compressed > highest // spacing:
                self._refuse("below" if self.sqrt_price_x96 <= edge else "above")
            return (edge, edge) if limit < edge else (None, limit)
        # the first step reads the word of the current tick + 1
        if self.sqrt_price_x96 >= edge or compressed + 1 < lowest // spacing:
            self._refuse("above" if self.sqrt_price_x96 >= edge else "below")
        return (edge, edge) if limit > edge else (None, limit)

    def _refuse(self, direction: str) -> NoReturn:
        assert self._table is not None
        self._table.wanted.add(direction)
        raise TicksNotLoaded(self.address, direction)

    def _swap_zero_for_one(
        self, amount_specified: int, limit: int
    ) -> tuple[int, int, int, int | None, int]:
        table = self._table
        assert table is not None
        ticks = table.ticks
        sqrt_prices = table.sqrt_prices
        nets = table.liquidity_nets
        edge_cache = table.word_edge_sqrt_prices
        full_steps = table.full_steps
        spacing = self.tick_spacing
        word_ticks = spacing << 8
        fee = self.fee_pips
        fee_complement = _PIPS - fee
        sqrt_price = self.sqrt_price_x96
        tick = self.tick
        tick_known = True  # False once the final tick must come from the final price
        liquidity = self.liquidity
        exact_in = amount_specified > 0
        remaining = amount_specified if exact_in else -amount_specified
        calculated = 0  # output so far (exact in) or input incl. fee so far (exact out)

        # index of the largest initialized tick <= compressed(tick) * spacing
        index = bisect_right(ticks, (tick // spacing) * spacing) - 1

        while remaining != 0 and sqrt_price != limit:
            if liquidity == 0:
                # every step through empty words moves the price for zero amounts: jump over them
                if index >= 0:
                    sqrt_next = sqrt_prices[index]
                    if sqrt_next >= limit:
                        sqrt_price = sqrt_next
                        liquidity -= nets[index]
                        if liquidity < 0 or liquidity > MAX_UINT128:
                            raise SwapRevert("LS")
                        tick = ticks[index] - 1
                        index -= 1
                        continue
                sqrt_price = limit
                tick = _tick_after_empty_jump_zero_for_one(limit, word_ticks)
                break

            word_start = (tick // word_ticks) * word_ticks
            if index >= 0 and ticks[index] >= word_start:
                tick_next = ticks[index]
                sqrt_next = sqrt_prices[index]
                initialized = True
            else:
                tick_next = word_start if word_start > MIN_TICK else MIN_TICK
                initialized = False
                cached = edge_cache.get(tick_next)
                if cached is None:
                    cached = edge_cache[tick_next] = get_sqrt_ratio_at_tick(tick_next)
                sqrt_next = cached
            target = limit if sqrt_next < limit else sqrt_next
            start = sqrt_price
            # amounts for going all the way to target: a pure function of (start, target, L),
            # memoized because sizing searches quote the same ranges again and again
            step_key = (start, target, liquidity)
            full_step = full_steps.get(step_key)
            if full_step is None:
                # getAmount0Delta(target, price, L, roundUp): two divisions rounding up
                rounded = -(-((liquidity << 96) * (start - target)) // start)
                full_in = -(-rounded // target)
                full_step = (
                    full_in,
                    (liquidity * (start - target)) >> 96,  # getAmount1Delta(.., roundDown)
                    -(-(full_in * fee) // fee_complement),  # fee when the target is reached
                )
                if len(full_steps) > _MAX_MEMO:
                    full_steps.clear()
                full_steps[step_key] = full_step

            if exact_in:
                # amountRemainingLessFee >= amountIn, without the division
                if remaining * fee_complement >= full_step[0] * _PIPS:
                    sqrt_price = target
                    amount_in, amount_out, fee_amount = full_step
                else:
                    remaining_less_fee = remaining * fee_complement // _PIPS
                    # getNextSqrtPriceFromAmount0RoundingUp(price, L, amount, add=True)
                    if remaining_less_fee == 0:
                        sqrt_price = start
                    else:
                        numerator1 = liquidity << 96
                        product = remaining_less_fee * start
                        denominator = numerator1 + product
                        if product <= MAX_UINT256 and denominator <= MAX_UINT256:
                            sqrt_price = -(-(numerator1 * start) // denominator)
                        else:
                            sqrt_price = -(
                                -numerator1 // (numerator1 // start + remaining_less_fee)
                            )
                    if sqrt_price != target:
                        rounded = -(-((liquidity << 96) * (start - sqrt_price)) // start)
                        amount_in = -(-rounded // sqrt_price)
                        amount_out = (liquidity * (start - sqrt_price)) >> 96
                        fee_amount = remaining - amount_in
                    else:
                        amount_in, amount_out, fee_amount = full_step
                remaining -= amount_in + fee_amount
                calculated += amount_out
            else:
                if remaining >= full_step[1]:
                    sqrt_price = target
                    amount_in, amount_out, fee_amount = full_step
                else:
                    # getNextSqrtPriceFromAmount1RoundingDown(price, L, amount, add=False)
                    quotient = -(-(remaining << 96) // liquidity)
                    if start <= quotient:
                        raise SwapRevert("SqrtPriceMath: output exceeds virtual reserves")
                    sqrt_price = start - quotient
                    if sqrt_price != target:
                        amount_out = (liquidity * (start - sqrt_price)) >> 96
                        rounded = -(-((liquidity << 96) * (start - sqrt_price)) // start)
                        amount_in = -(-rounded // sqrt_price)
                        fee_amount = -(-(amount_in * fee) // fee_complement)
                    else:
                        amount_in, amount_out, fee_amount = full_step
                    if amount_out > remaining:
                        amount_out = remaining
                remaining -= amount_out
                calculated += amount_in + fee_amount

            if sqrt_price == sqrt_next:
                if initialized:
                    liquidity -= nets[index]  # liquidity_net is negated going left
                    if liquidity < 0 or liquidity > MAX_UINT128:
                        raise SwapRevert("LS" if liquidity < 0 else "LA")
                    index -= 1
                tick = tick_next - 1
            elif sqrt_price != start:
                tick_known = False  # the loop ends here; derived from the price if needed

        final_tick = tick if tick_known else None
        if exact_in:
            return amount_specified - remaining, calculated, sqrt_price, final_tick, liquidity
        return calculated, -amount_specified - remaining, sqrt_price, final_tick, liquidity

    def _swap_one_for_zero(
        self, amount_specified: int, limit: int
    ) -> tuple[int, int, int, int | None, int]:
        table = self._table
        assert table is not None
        ticks = table.ticks
        sqrt_prices = table.sqrt_prices
        nets = table.liquidity_nets
        edge_cache = table.word_edge_sqrt_prices
        full_steps = table.full_steps
        tick_count = len(ticks)
        spacing = self.tick_spacing
        word_ticks = spacing << 8
        fee = self.fee_pips
        fee_complement = _PIPS - fee
        sqrt_price = self.sqrt_price_x96
        tick = self.tick
        tick_known = True  # False once the final tick must come from the final price
        liquidity = self.liquidity
        exact_in = amount_specified > 0
        remaining = amount_specified if exact_in else -amount_specified
        calculated = 0

        # index of the smallest initialized tick > compressed(tick) * spacing
        index = bisect_right(ticks, (tick // spacing) * spacing)

        while remaining != 0 and sqrt_price != limit:
            if liquidity == 0:
                if index < tick_count:
                    sqrt_next = sqrt_prices[index]
                    if sqrt_next <= limit:
                        sqrt_price = sqrt_next
                        liquidity += nets[index]
                        if liquidity < 0 or liquidity > MAX_UINT128:
                            raise SwapRevert("LS" if liquidity < 0 else "LA")
                        tick = ticks[index]
                        index += 1
                        continue
                # stepping word by word would end on the same tick as getTickAtSqrtRatio(limit)
                sqrt_price = limit
                tick_known = False
                break

            # last tick of the word holding compressed(tick) + 1
            word_end = ((tick // spacing + 1) >> 8) * word_ticks + word_ticks - spacing
            if index < tick_count and ticks[index] <= word_end:
                tick_next = ticks[index]
                sqrt_next = sqrt_prices[index]
                initialized = True
            else:
                tick_next = word_end if word_end < MAX_TICK else MAX_TICK
                initialized = False
                cached = edge_cache.get(tick_next)
                if cached is None:
                    cached = edge_cache[tick_next] = get_sqrt_ratio_at_tick(tick_next)
                sqrt_next = cached
            target = limit if sqrt_next > limit else sqrt_next
            start = sqrt_price
            step_key = (start, target, liquidity)
            full_step = full_steps.get(step_key)
            if full_step is None:
                # getAmount1Delta(price, target, L, roundUp); -(x >> 96) of a negative x is
                # ceil(-x / 2**96)
                full_in = -((liquidity * (start - target)) >> 96)
                full_step = (
                    full_in,
                    # getAmount0Delta(price, target, L, roundDown)
                    (liquidity << 96) * (target - start) // target // start,
                    -(-(full_in * fee) // fee_complement),
                )
                if len(full_steps) > _MAX_MEMO:
                    full_steps.clear()
                full_steps[step_key] = full_step

            if exact_in:
                if remaining * fee_complement >= full_step[0] * _PIPS:
                    sqrt_price = target
                    amount_in, amount_out, fee_amount = full_step
                else:
                    remaining_less_fee = remaining * fee_complement // _PIPS
                    # getNextSqrtPriceFromAmount1RoundingDown(price, L, amount, add=True)
                    sqrt_price = start + (remaining_less_fee << 96) // liquidity
                    if sqrt_price > MAX_UINT160:
                        raise SwapRevert("SafeCast: uint160 overflow")
                    if sqrt_price != target:
                        amount_in = -((liquidity * (start - sqrt_price)) >> 96)
                        amount_out = (liquidity << 96) * (sqrt_price - start) // sqrt_price // start
                        fee_amount = remaining - amount_in
                    else:
                        amount_in, amount_out, fee_amount = full_step
                remaining -= amount_in + fee_amount
                calculated += amount_out
            else:
                if remaining >= full_step[1]:
                    sqrt_price = target
                    amount_in, amount_out, fee_amount = full_step
                else:
                    # getNextSqrtPriceFromAmount0RoundingUp(price, L, amount, add=False)
                    numerator1 = liquidity << 96
                    product = remaining * start
                    if product > MAX_UINT256 or numerator1 <= product:
                        raise SwapRevert("SqrtPriceMath: output exceeds virtual reserves")
                    sqrt_price = -(-(numerator1 * start) // (numerator1 - product))
                    if sqrt_price > MAX_UINT160:
                        raise SwapRevert("SafeCast: uint160 overflow")
                    if sqrt_price != target:
                        amount_out = numerator1 * (sqrt_price - start) // sqrt_price // start
                        amount_in = -((liquidity * (start - sqrt_price)) >> 96)
                        fee_amount = -(-(amount_in * fee) // fee_complement)
                    else:
                        amount_in, amount_out, fee_amount = full_step
                    if amount_out > remaining:
                        amount_out = remaining
                remaining -= amount_out
                calculated += amount_in + fee_amount

            if sqrt_price == sqrt_next:
                if initialized:
                    liquidity += nets[index]
                    if liquidity < 0 or liquidity > MAX_UINT128:
                        raise SwapRevert("LS" if liquidity < 0 else "LA")
                    index += 1
                tick = tick_next
            elif sqrt_price != start:
                tick_known = False

        final_tick = tick if tick_known else None
        if exact_in:
            return amount_specified - remaining, calculated, sqrt_price, final_tick, liquidity
        return calculated, -amount_specified - remaining, sqrt_price, final_tick, liquidity


def _tick_after_empty_jump_zero_for_one(limit: int, word_ticks: int) -> int:
    """Tick the pool ends on after stepping word by word through empty ticks down to ``limit``.

    The contract's last step ends exactly on a word-edge price only when ``limit`` is that
    price; then the tick is edge - 1, otherwise getTickAtSqrtRatio(limit).
    """
    tick = get_tick_at_sqrt_ratio(limit)
    if tick % word_ticks == 0 and get_sqrt_ratio_at_tick(tick) == limit:
        return tick - 1
    return tick


async def fetch_v3_pool(w3: AsyncWeb3[Any], address: str) -> V3Pool:
    """Read slot0, liquidity, fee, spacing and every initialized tick of the pool at ``address``
    (tickBitmap words and ``ticks()`` in batched multicalls), pinned to one block."""
    from agent.dex.pools import fetch_v3_pool as _fetch

    return await _fetch(w3, address)
