"""Discovery's liquidity filter: the agent watches only pools worth watching.

Factories return every pool between the configured tokens, however empty. ``LiquidityFilter``
measures each discovered pool in USD and leaves out those under ``min_liquidity_usd``: the
registry neither loads nor refreshes them. Every ``interval_s`` it discovers again (new pools)
and measures every pool, watched or not, from one multicall of their reserves / slot0 and
liquidity: pools that fell under the floor are dropped, pools that rose above it come back and
are loaded like new ones. Each check is logged and published (``PoolsSkipped``).

The measure: V2, both reserves at USD prices; V3, the virtual reserves of the liquidity in
range at the current price (``L / sqrt P`` and ``L * sqrt P``, what a V2 pool of the same depth
would hold), so a V3 pool whose positions are all out of range counts as empty. Prices come
from the measured pools themselves (``usd_prices``). A pool with one unpriced token counts its
priced side twice; one with no priced token is kept, since it cannot be judged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from agent.dex.pools import Pool, PoolRegistry
from agent.errors import AgentError
from agent.events import EventBus, PoolsSkipped
from agent.market.builder import pool_sides, usd_prices
from agent.types import Token

log = logging.getLogger(__name__)


def pool_liquidity_usd(
    pool: Pool, tokens: Mapping[str, Token], prices: Mapping[str, float]
) -> float | None:
    """USD value of ``pool``'s reserves (V3: virtual reserves in range); None when neither
    token has a price."""
    _price, reserve0, reserve1 = pool_sides(pool, pool.token0)
    sides = [
        reserve / 10.0 ** tokens[token].decimals * prices[token]
        for token, reserve in ((pool.token0, reserve0), (pool.token1, reserve1))
        if token in tokens and token in prices
    ]
    if not sides:
        return None
    return sum(sides) * (2 if len(sides) == 1 else 1)


class LiquidityFilter:
    """Keeps ``registry`` to the pools holding at least ``min_liquidity_usd`` (see module)."""

    def __init__(
        self,
        registry: PoolRegistry,
        tokens: Mapping[str, Token],
        min_liquidity_usd: float,
        interval_s: float,
        events: EventBus | None = None,
    ) -> None:
        self.registry = registry
        self.tokens = dict(tokens)
        self.min_liquidity_usd = min_liquidity_usd
        self.interval_s = interval_s
        self.events = events
        self.name = "liquidity filter"

    async def check(self) -> None:
        """Discover new pools, measure every pool, drop those under the floor and bring back
        skipped ones above it. Raises ``AgentError`` when the reads fail (nothing changes)."""
        registry = self.registry
        await registry.discover(list(self.tokens))
        candidates = set(registry.pool_refs) | registry.skipped_pools
        heads = await registry.read_heads(sorted(candidates))
        prices = usd_prices(heads, self.tokens).prices
        small = {
            address
            for address, pool in heads.items()
            if (usd := pool_liquidity_usd(pool, self.tokens, prices)) is not None
            and usd < self.min_liquidity_usd
        }
        dropped = small - registry.skipped_pools
        added = (registry.skipped_pools & set(heads)) - small
        await registry.skip(dropped)
        registry.unskip(added)
        skipped = len(registry.skipped_pools)
        log.info(
            "liquidity filter: %d of %d pool(s) under $%s skipped (%d dropped, %d added back)",
            skipped,
            len(candidates),
            f"{self.min_liquidity_usd:,.0f}",
            len(dropped),
            len(added),
        )
        if self.events is not None:
            self.events.publish(
                PoolsSkipped(
                    skipped=skipped,
                    dropped=len(dropped),
                    added=len(added),
                    min_liquidity_usd=self.min_liquidity_usd,
                )
            )

    async def run(self) -> None:
        """Check every ``interval_s`` (the first check is the caller's, at start-up); a check
        whose reads fail is logged and tried at the next interval."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except AgentError as exc:
                log.warning(
                    "liquidity filter check failed (%s): next in %.0fs", exc, self.interval_s
                )
