"""Cross-DEX arbitrage: cycles over the V2 and V3 pools of every configured DEX.

Two-pool cycles (buy on one pool, sell on another pool of the same pair) and triangular cycles
through the start tokens (WETH, USDC by default). Candidates are filtered by the product of
fee-inclusive marginal rates (> 1 means free money at small size), then sized: closed form for
all-V2 cycles, golden-section search on the exact simulators otherwise, capped by what we hold
and a notional limit. The opportunity carries the exact route and the exact predicted amounts;
its USD profit is net of gas at the snapshot's fee (pool fees are inside the exact amounts).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import ClassVar

from pydantic import Field

from agent.dex.prices import marginal_rate, price_impact_bps
from agent.dex.routes import (
    Leg,
    cycle_profit,
    cycle_rate,
    maximise,
    simulate,
    v2_optimal_cycle_input,
)
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool
from agent.errors import SwapRevert
from agent.market.snapshot import MarketSnapshot, Pool, PortfolioView
from agent.types import Opportunity, RouteHop
from strategies.base import BaseStrategy, StrategyParams


class ArbitrageParams(StrategyParams):
    """``[strategies.arbitrage]``: cross-DEX cycles (two-pool and triangular)."""

    dexes: list[str] = Field(default_factory=lambda: ["uniswap_v2", "sushiswap", "uniswap_v3"])
    base_tokens: list[str] = Field(default_factory=lambda: ["WETH", "USDC"], min_length=1)
    """Symbols of the tokens a cycle starts and ends in (what the executor holds)."""
    max_hops: int = Field(default=3, ge=2, le=3)
    """2: two-pool cycles only; 3: also triangles through the base tokens."""
    min_profit_usd: float = Field(default=1.0, ge=0)
    """Net of gas; smaller edges are not worth the risk."""
    max_input_usd: float = Field(default=10_000.0, gt=0)
    use_flash_swap: bool = False
    """Borrow the input from the first V2 pair instead of the executor's own balance."""
    min_edge_bps: float = Field(default=1.0, ge=0)
    """Marginal-rate edge a cycle needs before it is sized (filters noise cheaply)."""
    max_opportunities: int = Field(default=5, ge=1)
    gas_base: int = Field(default=60_000, gt=0)
    gas_per_v2_hop: int = Field(default=70_000, gt=0)
    gas_per_v3_hop: int = Field(default=120_000, gt=0)
    search_iterations: int = Field(default=60, ge=10, le=200)


@dataclass(frozen=True, slots=True)
class _Sizing:
    """A cycle's exact sizing (``amounts`` None: nothing profitable) and the pool states it
    was computed on (held, so the tick tables their key names by ``id`` stay alive)."""

    amount_in: int
    amounts: list[int] | None
    pools: tuple[Pool, ...]


def _state_key(leg: Leg) -> tuple[object, ...]:
    """Everything the exact simulators read from a leg's pool (V3 tick table by identity)."""
    pool = leg.pool
    if isinstance(pool, V2Pool):
        return (pool.address, leg.token_in, pool.reserve0, pool.reserve1, pool.fee_pips)
    return (
        pool.address,
        leg.token_in,
        pool.sqrt_price_x96,
        pool.tick,
        pool.liquidity,
        pool.fee_pips,
        id(pool.ticks),
    )


def _same_ticks(sizing: _Sizing, legs: Sequence[Leg]) -> bool:
    for leg, cached in zip(legs, sizing.pools, strict=True):
        if isinstance(leg.pool, V3Pool) and (
            not isinstance(cached, V3Pool) or leg.pool.ticks is not cached.ticks
        ):
            return False
    return True


class ArbitrageStrategy(BaseStrategy[ArbitrageParams]):
    name: ClassVar[str] = "arbitrage"
    Params: ClassVar[type[StrategyParams]] = ArbitrageParams

    def __init__(self, params: ArbitrageParams) -> None:
        super().__init__(params)
        # Sizing a cycle is a pure function of its pools' states and the input cap, and most
        # pools do not change from one block to the next: the previous block's sizings are
        # reused when nothing they read changed (same exact result, no search).
        self._sizings: dict[tuple[object, ...], _Sizing] = {}
        self._next_sizings: dict[tuple[object, ...], _Sizing] = {}

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        self._next_sizings = {}
        try:
            return self._evaluate(snapshot, portfolio)
        finally:
            self._sizings, self._next_sizings = self._next_sizings, {}

    def _evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        params = self.params
        by_symbol = {t.symbol: t.address for t in snapshot.tokens.values()}
        starts = [by_symbol[s] for s in params.base_tokens if s in by_symbol]
        edges = _edges(snapshot, set(params.dexes))
        threshold = 1.0 + params.min_edge_bps / 10_000
        found: list[Opportunity] = []
        for start in starts:
            balance = portfolio.balances.get(start, 0)
            price = snapshot.prices_usd.get(start, 0.0)
            if balance <= 0 or price <= 0:
                continue
            meta = snapshot.tokens[start]
            cap = min(balance, int(params.max_input_usd / price * 10**meta.decimals))
            for legs in self._cycles(start, edges):
                if cycle_rate(legs) <= threshold:
                    continue
                opportunity = self._size(snapshot, legs, cap)
                if opportunity is not None and opportunity.net_profit_usd >= params.min_profit_usd:
                    found.append(opportunity)
        found.sort(key=lambda o: o.net_profit_usd, reverse=True)
        return found[: params.max_opportunities]

    def _cycles(
        self, start: str, edges: dict[tuple[str, str], list[Pool]]
    ) -> Iterator[tuple[Leg, ...]]:
        # Two pools of the same pair: out on one, back on the other.
        for (token_in, token_out), pools in edges.items():
            if token_in != start or len(pools) < 2:
                continue
            for first, second in permutations(pools, 2):
                yield (Leg(first, start, token_out), Leg(second, token_out, start))
        if self.params.max_hops < 3:
            return
        # Triangles start -> x -> y -> start, each hop on its best marginal-rate pool.
        neighbours = [t_out for (t_in, t_out) in edges if t_in == start]
        for x in neighbours:
            for y in neighbours:
                if x == y or (x, y) not in edges:
                    continue
                legs = tuple(
                    Leg(_best_pool(edges[(a, b)], a), a, b)
                    for a, b in ((start, x), (x, y), (y, start))
                )
                yield legs

    def _sizing(self, legs: Sequence[Leg], cap: int) -> _Sizing:
        key = (cap, *(_state_key(leg) for leg in legs))
        cached = self._sizings.get(key)
        if cached is None or not _same_ticks(cached, legs):
            cached = _Sizing(*self._search(legs, cap), tuple(leg.pool for leg in legs))
        self._next_sizings[key] = cached
        return cached

    def _search(self, legs: Sequence[Leg], cap: int) -> tuple[int, list[int] | None]:
        """(input, exact amounts along the cycle) maximising profit, or amounts None."""
        profit = cycle_profit(legs)
        closed_form = v2_optimal_cycle_input(legs)
        if closed_form is not None:
            amount_in = min(closed_form, cap)
        else:
            amount_in = maximise(profit, 1, cap, self.params.search_iterations)
        if amount_in <= 0 or profit(amount_in) <= 0:
            return amount_in, None
        try:
            return amount_in, simulate(legs, amount_in)
        except SwapRevert:
            return amount_in, None

    def _size(self, snapshot: MarketSnapshot, legs: Sequence[Leg], cap: int) -> Opportunity | None:
        sizing = self._sizing(legs, cap)
        if sizing.amounts is None:
            return None
        amount_in, amounts = sizing.amount_in, list(sizing.amounts)
        start = legs[0].token_in
        predicted_profit = amounts[-1] - amount_in
        gas = self.params.gas_base + sum(
            self.params.gas_per_v2_hop
            if isinstance(leg.pool, V2Pool)
            else self.params.gas_per_v3_hop
            for leg in legs
        )
        gross_usd = snapshot.value_usd(start, predicted_profit)
        gas_usd = snapshot.gas_cost_usd(gas)
        route = tuple(_hop(snapshot, leg) for leg in legs)
        return Opportunity(
            id=_opportunity_id(self.name, snapshot.block, route, amount_in),
            strategy=self.name,
            kind="arb",
            route=route,
            token_in=start,
            token_out=start,
            amount_in=amount_in,
            predicted_amount_out=amounts[-1],
            predicted_profit=predicted_profit,
            gross_profit_usd=gross_usd,
            gas_estimate=gas,
            gas_cost_usd=gas_usd,
            net_profit_usd=gross_usd - gas_usd,
            notional_usd=snapshot.value_usd(start, amount_in),
            price_impact_bps=price_impact_bps(legs, amounts),
            block=snapshot.block,
            note=" -> ".join(
                [snapshot.tokens[start].symbol]
                + [
                    f"{snapshot.tokens[leg.token_out].symbol}@{h.dex}"
                    for leg, h in zip(legs, route, strict=True)
                ]
            ),
        )


def _edges(snapshot: MarketSnapshot, dexes: set[str]) -> dict[tuple[str, str], list[Pool]]:
    """Directed token edges -> fresh, liquid pools of the configured DEXes that trade them."""
    edges: dict[tuple[str, str], list[Pool]] = defaultdict(list)
    for address, pool in snapshot.pools.items():
        ref = snapshot.pool_refs.get(address)
        if address in snapshot.stale_pools or (ref is not None and ref.dex not in dexes):
            continue
        if pool.token0 not in snapshot.tokens or pool.token1 not in snapshot.tokens:
            continue
        if marginal_rate(pool, pool.token0) <= 0:
            continue
        edges[(pool.token0, pool.token1)].append(pool)
        edges[(pool.token1, pool.token0)].append(pool)
    return edges


def _best_pool(pools: list[Pool], token_in: str) -> Pool:
    return max(pools, key=lambda p: marginal_rate(p, token_in))


def _hop(snapshot: MarketSnapshot, leg: Leg) -> RouteHop:
    ref = snapshot.pool_refs.get(leg.pool.address)
    kind = "v2" if isinstance(leg.pool, V2Pool) else "v3"
    return RouteHop(
        pool=leg.pool.address,
        dex=ref.dex if ref else kind,
        kind=kind,
        token_in=leg.token_in,
        token_out=leg.token_out,
        fee_pips=leg.pool.fee_pips,
    )


def _opportunity_id(strategy: str, block: int, route: Sequence[RouteHop], amount_in: int) -> str:
    """Deterministic: the same route and size at the same block is the same opportunity."""
    key = f"{strategy}|{block}|{amount_in}|" + "|".join(f"{h.pool}:{h.token_in}" for h in route)
    return f"{strategy}-{block}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
