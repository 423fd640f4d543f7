"""Event-driven pool state on the devnet: after the first load each block costs one request
(the logs and the spot check's reads), V2 Sync and V3 Swap/Mint logs alone keep every pool
equal to a full read, and a drift injected with ``anvil_setStorageAt`` (no log says so) is
found by the rotating spot check, counted and repaired."""

from __future__ import annotations

from typing import Any

import pytest

from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.devnet.traders import swap_on_pool
from agent.dex.pools import PoolRegistry, fetch_v2_pool, fetch_v3_pool
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool
from tests.chain.test_provider_limits import mint_position
from tests.conftest import devnet_copy

pytestmark = pytest.mark.chain


def event_registry(client: RpcClient, devnet: Devnet, spot_check_size: int) -> PoolRegistry:
    a = devnet.addresses
    return PoolRegistry(
        client,
        v2_factories={"uniswap_v2": a["uniswap_v2.factory"], "sushiswap": a["sushiswap.factory"]},
        v3_factory=a["uniswap_v3.factory"],
        event_driven=True,
        spot_check_size=spot_check_size,
    )


def units(devnet: Devnet, token: str) -> int:
    """One whole token, in its smallest units."""
    return next(t.to_units(1) for t in devnet.tokens.values() if t.address == token)


async def head(client: RpcClient) -> int:
    return int(await client.call_raw("eth_blockNumber"), 16)


async def assert_equals_chain(registry: PoolRegistry, client: RpcClient, block: int) -> None:
    for address, pool in registry.pools.items():
        if isinstance(pool, V3Pool):
            assert pool == await fetch_v3_pool(client, address, block=block), address
        else:
            assert pool == await fetch_v2_pool(client, address, pool.fee_pips, block=block)


async def test_logs_alone_keep_every_pool_exact_for_one_request_a_block(
    w3: Any, devnet: Devnet
) -> None:
    assert devnet.rpc is not None
    trader = devnet.accounts[2][0]
    async with RpcClient([devnet.rpc_url]) as client:
        registry = event_registry(client, devnet, spot_check_size=0)
        await registry.discover(t.address for t in devnet.tokens.values())
        assert (await registry.refresh(await head(client))).ok  # the first load
        target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 3000)
        before = registry.get(target.address)
        assert isinstance(before, V3Pool)
        lower, upper = await mint_position(devnet, before, 3000)
        for info in devnet.pools[:6]:  # V2 and V3 swaps in both directions
            for token_in in (info.token0, info.token1):
                await swap_on_pool(
                    devnet.rpc,
                    devnet.addresses,
                    info,
                    trader=trader,
                    token_in=token_in,
                    amount_in=units(devnet, token_in) // 10,
                )
        await swap_on_pool(
            devnet.rpc,
            devnet.addresses,
            target,
            trader=trader,
            token_in=target.token1,
            amount_in=units(devnet, target.token1),
        )
        block = await head(client)
        refreshed = await registry.refresh(block)
        assert refreshed.ok, refreshed.error
        assert refreshed.http_requests == 1  # one eth_getLogs, nothing re-read
        assert registry.event_refreshes == 1 and registry.drift_count == 0
        after = registry.get(target.address)
        assert isinstance(after, V3Pool) and {lower, upper} <= {t for t, _ in after.ticks}
        await assert_equals_chain(registry, client, block)


async def test_topic_only_logs_advance_the_watched_pools_and_leave_the_rest_alone(
    w3: Any, devnet: Devnet
) -> None:
    """Above ``log_address_filter_max_pools`` the logs are asked for by topic alone: swaps on
    pools the registry does not watch are dropped, the watched ones stay exact, and only the
    pools a log changed get a new state (the others keep the block of their last read)."""
    assert devnet.rpc is not None
    trader = devnet.accounts[2][0]
    watched, unwatched = devnet.pools[::2], devnet.pools[1::2]
    async with RpcClient([devnet.rpc_url]) as client:
        registry = event_registry(client, devnet, spot_check_size=0)
        registry.log_address_filter_max_pools = 0
        for info in watched:
            if info.kind == "v2":
                registry.add_v2_pool(info.address, info.token0, info.token1, dex=info.dex)
            else:
                registry.add_v3_pool(info.address, info.token0, info.token1, info.fee_pips)
        loaded_at = await head(client)
        assert (await registry.refresh(loaded_at)).ok
        swapped = [*watched[:3], *unwatched[:3]]
        for info in swapped:
            await swap_on_pool(
                devnet.rpc,
                devnet.addresses,
                info,
                trader=trader,
                token_in=info.token0,
                amount_in=units(devnet, info.token0) // 10,
            )
        block = await head(client)
        refreshed = await registry.refresh(block)
        assert refreshed.ok, refreshed.error
        assert refreshed.http_requests == 1 and registry.event_refreshes == 1
        assert registry.drift_count == 0 and registry.last_block == block
        assert set(registry.pools) == {info.address for info in watched}
        changed = {a for a, pool in registry.pools.items() if pool.block == block}
        assert changed == {info.address for info in watched[:3]}
        assert all(
            pool.block == loaded_at for a, pool in registry.pools.items() if a not in changed
        )
        await assert_equals_chain(registry, client, block)


async def test_drift_set_in_storage_is_found_by_the_spot_check_and_repaired(
    w3: Any, devnet: Devnet
) -> None:
    async with RpcClient([devnet.rpc_url]) as client:
        registry = event_registry(client, devnet, spot_check_size=3)
        await registry.discover(t.address for t in devnet.tokens.values())
        assert (await registry.refresh(await head(client))).ok
        pair = next(p for p in registry.pools.values() if isinstance(p, V2Pool))
        pool = next(p for p in registry.pools.values() if isinstance(p, V3Pool))
        # UniswapV2Pair slot 8 packs reserve0 | reserve1 << 112 | blockTimestampLast << 224
        packed = int(await devnet.call("eth_getStorageAt", [pair.address, "0x8", "latest"]), 16)
        assert packed & (2**112 - 1) == pair.reserve0
        packed -= pair.reserve0 // 3
        await devnet.call("anvil_setStorageAt", [pair.address, "0x8", f"0x{packed:064x}"])
        # UniswapV3Pool slot 4 is liquidity
        stored = int(await devnet.call("eth_getStorageAt", [pool.address, "0x4", "latest"]), 16)
        assert stored == pool.liquidity
        await devnet.call(
            "anvil_setStorageAt", [pool.address, "0x4", f"0x{pool.liquidity + 12345:064x}"]
        )

        drifted: set[str] = set()
        rounds = 0
        while drifted != {pair.address, pool.address}:
            rounds += 1
            assert rounds <= len(registry.pools) // 3 + 2, "the spot check never got there"
            await devnet.mine(1)
            refreshed = await registry.refresh(await head(client))
            assert refreshed.ok, refreshed.error
            drifted |= refreshed.drifted
        assert registry.drift_count == 2  # counted once each: repaired, they stay exact
        block = await head(client)
        repaired_pair = registry.get(pair.address)
        assert isinstance(repaired_pair, V2Pool)
        assert repaired_pair.reserve0 == pair.reserve0 - pair.reserve0 // 3
        repaired_pool = registry.get(pool.address)
        assert isinstance(repaired_pool, V3Pool)
        assert repaired_pool.liquidity == pool.liquidity + 12345
        await devnet.mine(1)
        block = await head(client)
        assert (await registry.refresh(block)).ok
        await assert_equals_chain(registry, client, block)
        assert registry.drift_count == 2


async def test_a_mint_reorged_out_is_undone(devnet: Devnet) -> None:
    async with devnet_copy(devnet) as devnet, RpcClient([devnet.rpc_url]) as client:
        registry = event_registry(client, devnet, spot_check_size=0)
        await registry.discover(t.address for t in devnet.tokens.values())
        assert (await registry.refresh(await head(client))).ok
        target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 3000)
        before = registry.get(target.address)
        assert isinstance(before, V3Pool)
        lower, upper = await mint_position(devnet, before, 3000)
        await devnet.mine(1)
        minted = await registry.refresh(await head(client))
        assert minted.ok and registry.event_refreshes == 1
        with_mint = registry.get(target.address)
        assert isinstance(with_mint, V3Pool)
        assert {lower, upper} <= {t for t, _ in with_mint.ticks}

        # the block with the Mint and the one after it are replaced by empty ones
        await devnet.call("anvil_reorg", [2, []])
        await devnet.mine(1)
        block = await head(client)
        refreshed = await registry.refresh(block)
        assert refreshed.ok, refreshed.error
        assert registry.reorgs_handled == 1
        assert target.address in refreshed.ticks_reloaded
        after = registry.get(target.address)
        assert isinstance(after, V3Pool)
        # the Mint's ticks and liquidity are gone again
        assert after.ticks == before.ticks != with_mint.ticks
        assert after.liquidity == before.liquidity != with_mint.liquidity
        await assert_equals_chain(registry, client, block)
        assert registry.drift_count == 0


async def test_an_older_head_reloads_rather_than_applying_logs_twice(
    w3: Any, devnet: Devnet
) -> None:
    async with RpcClient([devnet.rpc_url]) as client:
        registry = event_registry(client, devnet, spot_check_size=0)
        await registry.discover(t.address for t in devnet.tokens.values())
        start = await head(client)
        assert (await registry.refresh(start)).ok
        target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 500)
        before = registry.get(target.address)
        assert isinstance(before, V3Pool)
        await mint_position(devnet, before, 500)
        latest = await head(client)
        assert (await registry.refresh(latest)).ok
        # a head from before the Mint (a lagging endpoint), then the latest again
        assert (await registry.refresh(start)).ok
        assert registry.get(target.address) == before
        assert (await registry.refresh(latest)).ok
        await assert_equals_chain(registry, client, latest)
        assert registry.drift_count == 0
