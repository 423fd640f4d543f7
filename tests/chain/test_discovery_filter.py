"""Discovery's liquidity filter on the devnet: pools under ``min_liquidity_usd`` are skipped and
reported, never loaded or refreshed; the periodic recheck drops a pool whose liquidity fell
under the floor and brings back one whose liquidity rose above it (then loaded like a new one).
Liquidity is moved with ``anvil_setStorageAt`` (V2 reserves, slot 8; V3 active liquidity,
slot 4), the same storage the pools' own reads return."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.dex.pools import fetch_v2_pool, fetch_v3_pool
from agent.errors import TicksNotLoaded
from agent.events import EventBus, PoolsSkipped
from agent.market.builder import usd_prices
from agent.market.discovery import LiquidityFilter, pool_liquidity_usd
from tests.chain.test_first_load import WINDOW_PCT, background_registry, head

pytestmark = pytest.mark.chain


async def set_slot(devnet: Devnet, address: str, slot: int, value: int) -> int:
    """Write ``value`` to ``slot`` of ``address``; returns what was there."""
    old = int(await devnet.call("eth_getStorageAt", [address, hex(slot), "latest"]), 16)
    await devnet.call("anvil_setStorageAt", [address, hex(slot), f"0x{value:064x}"])
    await devnet.mine(1)
    return old


async def test_pools_under_the_floor_are_skipped_and_the_recheck_follows_liquidity(
    w3: Any, devnet: Devnet, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = {t.address: t for t in devnet.tokens.values()}
    pair = next(p for p in devnet.pools if p.kind == "v2")
    pool = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 3000)
    async with RpcClient([devnet.rpc_url]) as client:
        registry = background_registry(client, devnet)
        await registry.discover(list(tokens))
        heads = await registry.read_heads(sorted(registry.pool_refs))
        # heads carry price and depth only: a quote on a V3 head is refused, never guessed
        with pytest.raises(TicksNotLoaded):
            heads[pool.address].quote_exact_input(heads[pool.address].token0, 1)
        prices = usd_prices(heads, tokens).prices
        measured = {a: pool_liquidity_usd(p, tokens, prices) for a, p in heads.items()}
        assert all(usd is not None for usd in measured.values())
        # a floor under both pools (the devnet's pools hold millions)
        floor = min(measured[pair.address] or 0, measured[pool.address] or 0) / 10
        under = {a for a, usd in measured.items() if usd is not None and usd < floor}
        events = EventBus()
        published: list[PoolsSkipped] = []
        events.subscribe(lambda e: published.append(e) if isinstance(e, PoolsSkipped) else None)
        liquidity = LiquidityFilter(registry, tokens, floor, 3600.0, events)
        caplog.set_level(logging.INFO, logger="agent.market.discovery")

        await liquidity.check()
        assert registry.skipped_pools == under
        assert published[-1].skipped == len(under)
        assert f"{len(under)} of {len(measured)} pool(s) under" in caplog.text

        # the pair and the pool lose almost all their liquidity: the recheck drops them
        reserves = await set_slot(devnet, pair.address, 8, (5 << 112) | 5)
        active = await set_slot(devnet, pool.address, 4, 5)
        await liquidity.check()
        assert {pair.address, pool.address} <= registry.skipped_pools
        assert published[-1].dropped == 2
        # skipped pools are neither loaded nor refreshed nor stale
        await registry.load_pending(forever=False)
        refreshed = await registry.refresh(await head(client))
        assert refreshed.ok, refreshed.error
        assert pair.address not in registry.pools and pool.address not in registry.pools
        assert pair.address not in registry.loading_pools | registry.stale_pools

        # their liquidity comes back: the next recheck adds them, the loader loads them exactly
        await set_slot(devnet, pair.address, 8, reserves)
        await set_slot(devnet, pool.address, 4, active)
        await liquidity.check()
        assert not {pair.address, pool.address} & registry.skipped_pools
        assert published[-1].added == 2
        assert {pair.address, pool.address} <= registry.loading_pools
        # loads read at the registry's block, and logs bring them forward: a storage write
        # has no log, so bring the registry past it first
        assert (await registry.refresh(await head(client))).ok
        await registry.load_pending(forever=False)
        await devnet.mine(1)
        block = await head(client)
        refreshed = await registry.refresh(block)
        assert refreshed.ok, refreshed.error
        assert registry.get(pair.address) == await fetch_v2_pool(client, pair.address, block=block)
        assert registry.get(pool.address) == await fetch_v3_pool(
            client, pool.address, block, window_pct=WINDOW_PCT
        )
