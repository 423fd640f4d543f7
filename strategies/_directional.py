"""Shared pieces of the directional strategies (grid, DCA, whale-follow): no I/O, no state.

Resolving configured token references (a symbol like ``WETH`` or a 0x address) against the
snapshot's token map, reading a pool's mid price, choosing the best pool for an exact swap, and
turning the chosen swap into an ``Opportunity`` with exact ``int`` amounts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from agent.dex.prices import mid_price as dex_mid_price
from agent.dex.prices import price_impact_bps as dex_price_impact_bps
from agent.dex.routes import Leg
from agent.dex.v3 import V3Pool
from agent.errors import SwapRevert
from agent.market.snapshot import MarketSnapshot, Pool
from agent.types import Fill, NotFilled, Opportunity, RouteHop, Token

BPS = 10_000
Q96 = 1 << 96
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")

# Gas units of one router swap (a single-hop exactInputSingle / swapExactTokensForTokens,
# including the ERC20 transfers); the engine re-estimates before sending.
DEFAULT_SWAP_GAS = 160_000


def checksum_address(value: str) -> str:
    """``value`` as an EIP-55 address; raises ``ValueError`` (a pydantic field error) if bad."""
    from eth_utils import is_checksum_address, is_hex_address, to_checksum_address

    if not is_hex_address(value):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    if value != value.lower() and value != value.upper() and not is_checksum_address(value):
        raise ValueError(f"bad EIP-55 checksum (expected {to_checksum_address(value)})")
    return str(to_checksum_address(value))


def token_ref(value: str) -> str:
    """A token symbol (``WETH``) or a 0x address (returned checksummed), as agent.toml takes."""
    value = value.strip()
    if value.startswith("0x"):
        return checksum_address(value)
    if not _SYMBOL.fullmatch(value):
        raise ValueError("must be a token symbol like 'WETH' or a 0x address")
    return value


def pair_ref(value: str) -> str:
    """``BASE/QUOTE`` with two different token references."""
    if value.count("/") != 1:
        raise ValueError("must be 'BASE/QUOTE', e.g. 'WETH/USDC'")
    base, quote = (token_ref(part) for part in value.split("/"))
    if base.lower() == quote.lower():
        raise ValueError("base and quote must differ")
    return f"{base}/{quote}"


def resolve_token(snapshot: MarketSnapshot, ref: str) -> Token | None:
    """The snapshot's token for ``ref`` (a checksummed/lower-case address or a symbol)."""
    token = snapshot.tokens.get(ref)
    if token is not None:
        return token
    lowered = ref.lower()
    for address, candidate in snapshot.tokens.items():
        if address.lower() == lowered or candidate.symbol.lower() == lowered:
            return candidate
    return None


def _pool_fee_pips(pool: Pool) -> int:
    return pool.fee_pips


def pools_for_pair(
    snapshot: MarketSnapshot,
    token_a: str,
    token_b: str,
    dexes: frozenset[str] | None = None,
    only_pool: str | None = None,
) -> list[tuple[str, Pool]]:
    """Fresh pools holding both tokens, as ``(address, pool)`` sorted by address.

    Stale pools (their last read failed) are left out: an exact quote on old state is not exact.
    ``dexes`` restricts to those deployments (by ``snapshot.pool_refs[...].dex``); ``only_pool``
    to a single pool address.
    """
    wanted = {token_a.lower(), token_b.lower()}
    found: list[tuple[str, Pool]] = []
    for address, pool in snapshot.pools.items():
        if address in snapshot.stale_pools:
            continue
        if only_pool is not None and address.lower() != only_pool.lower():
            continue
        if {pool.token0.lower(), pool.token1.lower()} != wanted:
            continue
        if dexes is not None:
            ref = snapshot.pool_refs.get(address)
            if ref is None or ref.dex not in dexes:
                continue
        found.append((address, pool))
    found.sort(key=lambda item: item[0].lower())
    return found


def mid_price(pool: Pool, base: Token, quote: Token) -> float:
    """Mid price of ``base`` in ``quote`` (before the pool fee, ``agent.dex.prices``), whole
    quote tokens per whole base token.

    Float on purpose: a price is a decision input, never an amount that is sent.
    """
    sold = _as_pool_spells(pool, base.address)
    return dex_mid_price(pool, sold) * 10.0 ** (base.decimals - quote.decimals)


def _as_pool_spells(pool: Pool, token: str) -> str:
    """``token`` as ``pool`` spells it (the exact math compares addresses exactly)."""
    return pool.token0 if pool.token0.lower() == token.lower() else pool.token1


@dataclass(frozen=True, slots=True)
class ExactSwap:
    """An exact-input swap through one pool: amounts in smallest units, as the pool math says."""

    pool_address: str
    pool: Pool
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int


def best_exact_input(
    candidates: list[tuple[str, Pool]], token_in: str, amount_in: int
) -> ExactSwap | None:
    """The pool giving the most ``token_out`` for exactly ``amount_in`` (None if none can).

    Ties go to the first candidate (pools are sorted by address) so the choice is repeatable.
    """
    best: ExactSwap | None = None
    for address, pool in candidates:
        try:
            amount_out = pool.quote_exact_input(token_in, amount_in)
        except SwapRevert:
            continue
        if amount_out <= 0:
            continue
        if best is None or amount_out > best.amount_out:
            token_out = pool.token1 if pool.token0.lower() == token_in.lower() else pool.token0
            best = ExactSwap(address, pool, token_in, token_out, amount_in, amount_out)
    return best


def best_exact_output(
    candidates: list[tuple[str, Pool]], token_out: str, amount_out: int
) -> ExactSwap | None:
    """The cheapest pool to receive at least ``amount_out`` of ``token_out``, as an exact input.

    The input is the pool's exact-output quote; the returned ``amount_out`` is the exact-input
    quote for that input (>= the wanted amount, the router swaps exact inputs).
    """
    best: ExactSwap | None = None
    for address, pool in candidates:
        try:
            amount_in = pool.quote_exact_output(token_out, amount_out)
            token_in = pool.token1 if pool.token0.lower() == token_out.lower() else pool.token0
            received = pool.quote_exact_input(token_in, amount_in)
        except SwapRevert:
            continue
        if received < amount_out:
            continue
        if best is None or amount_in < best.amount_in:
            best = ExactSwap(address, pool, token_in, token_out, amount_in, received)
    return best


def hop_for(snapshot: MarketSnapshot, swap: ExactSwap) -> RouteHop:
    """The ``RouteHop`` of a single-pool swap, tagged with the pool's DEX and kind."""
    ref = snapshot.pool_refs.get(swap.pool_address)
    kind = "v3" if isinstance(swap.pool, V3Pool) else "v2"
    dex = ref.dex if ref is not None else ("uniswap_v3" if kind == "v3" else "uniswap_v2")
    return RouteHop(
        pool=swap.pool_address,
        dex=dex,
        kind=kind,
        token_in=swap.token_in,
        token_out=swap.token_out,
        fee_pips=_pool_fee_pips(swap.pool),
    )


def price_impact_bps(pool: Pool, token_in: Token, token_out: Token, swap: ExactSwap) -> float:
    """The swap's price impact in bps, as ``agent.dex.prices`` defines it (pool fee excluded)."""
    sold = _as_pool_spells(pool, token_in.address)
    bought = pool.token1 if sold == pool.token0 else pool.token0
    return dex_price_impact_bps((Leg(pool, sold, bought),), (swap.amount_in, swap.amount_out))


def swap_opportunity(
    snapshot: MarketSnapshot,
    *,
    strategy: str,
    opportunity_id: str,
    route: tuple[RouteHop, ...],
    token_in: Token,
    token_out: Token,
    amount_in: int,
    predicted_amount_out: int,
    gas_estimate: int,
    impact_bps: float,
    gross_profit_usd: float | None = None,
    note: str = "",
) -> Opportunity:
    """A directional ``swap`` opportunity with USD figures from the snapshot's valuation prices.

    ``gross_profit_usd`` defaults to the swap's mark-to-market edge (USD value out minus USD
    value in, so fees and impact show as a small negative); strategies with a real expected
    profit (a grid round trip) pass their own.
    """
    notional_usd = snapshot.value_usd(token_in.address, amount_in)
    if gross_profit_usd is None:
        value_out_usd = snapshot.value_usd(token_out.address, predicted_amount_out)
        gross_profit_usd = value_out_usd - notional_usd
    gas_cost_usd = snapshot.gas_cost_usd(gas_estimate)
    return Opportunity(
        id=opportunity_id,
        strategy=strategy,
        kind="swap",
        route=route,
        token_in=token_in.address,
        token_out=token_out.address,
        amount_in=amount_in,
        predicted_amount_out=predicted_amount_out,
        predicted_profit=0,
        gross_profit_usd=gross_profit_usd,
        gas_estimate=gas_estimate,
        gas_cost_usd=gas_cost_usd,
        net_profit_usd=gross_profit_usd - gas_cost_usd,
        notional_usd=notional_usd,
        price_impact_bps=impact_bps,
        block=snapshot.block,
        note=note,
    )


def pool_swap_opportunity(
    snapshot: MarketSnapshot,
    swap: ExactSwap,
    *,
    strategy: str,
    opportunity_id: str,
    token_in: Token,
    token_out: Token,
    gas_estimate: int,
    gross_profit_usd: float | None = None,
    note: str = "",
) -> Opportunity:
    """``swap_opportunity`` for one exact swap through one pool: its hop, amounts and impact."""
    return swap_opportunity(
        snapshot,
        strategy=strategy,
        opportunity_id=opportunity_id,
        route=(hop_for(snapshot, swap),),
        token_in=token_in,
        token_out=token_out,
        amount_in=swap.amount_in,
        predicted_amount_out=swap.amount_out,
        gas_estimate=gas_estimate,
        impact_bps=price_impact_bps(swap.pool, token_in, token_out, swap),
        gross_profit_usd=gross_profit_usd,
        note=note,
    )


class PendingSwap(Protocol):
    """What a strategy remembers about a swap it proposed until its fill arrives."""

    @property
    def token_in(self) -> str: ...

    @property
    def token_out(self) -> str: ...

    @property
    def amount_in(self) -> int: ...


def match_pending(pending: Mapping[str, PendingSwap], fill: Fill | NotFilled) -> str | None:
    """The id of the pending swap ``fill`` settles, or None when it is not ours.

    A fill names its opportunity; one that does not (journaled before fills carried it)
    matches by the intent id, which the engine names ``<opportunity id>-<suffix>``, then by
    direction and the predicted input amount (which the engine copies from the opportunity
    unchanged).
    """
    named = proposal_of(fill, pending)
    if named is not None:
        return named
    for order_id, swap in pending.items():
        if (
            swap.token_in.lower() == fill.token_in.lower()
            and swap.token_out.lower() == fill.token_out.lower()
            and swap.amount_in == fill.predicted_amount_in
        ):
            return order_id
    return None


def proposal_of(fill: Fill | NotFilled, ids: Iterable[str]) -> str | None:
    """Which of ``ids`` (opportunity ids) ``fill`` names: its opportunity id, else the one its
    intent id (``<opportunity id>-<suffix>``) starts with; None when none."""
    known = list(ids)
    if fill.opportunity_id is not None and fill.opportunity_id in known:
        return fill.opportunity_id
    for order_id in known:
        if fill.intent_id == order_id or fill.intent_id.startswith(order_id + "-"):
            return order_id
    return None
