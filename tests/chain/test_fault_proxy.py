"""The pool registry behind a JSON-RPC endpoint that fails 30% of requests (HTTP 500/429,
resets, timeouts, truncated and garbled bodies) keeps running, marks what it could not read as
stale without zeroing it, and converges to the chain's exact state."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from agent.chain.rpc import RpcClient, poll_new_blocks
from agent.devnet import Devnet
from agent.devnet.traders import swap_on_pool
from agent.dex.pools import PoolRegistry, fetch_v2_pool, fetch_v3_pool
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool
from tests.fakes.rpc_proxy import FAULTS, FaultyRpcProxy

pytestmark = pytest.mark.chain

NOT_A_POOL = "0x000000000000000000000000000000000000dEaD"


async def move_markets(devnet: Devnet, rng: random.Random) -> None:
    """A few real swaps on random pools, sent straight to the node (not through the proxy)."""
    assert devnet.rpc is not None
    trader = devnet.accounts[2][0]
    a = devnet.addresses
    for info in rng.sample(list(devnet.pools), 3):
        token_in = rng.choice([info.token0, info.token1])
        symbol = next(s for s, t in devnet.tokens.items() if t.address == token_in)
        amount = devnet.tokens[symbol].to_units(1) // 10
        await swap_on_pool(devnet.rpc, a, info, trader=trader, token_in=token_in, amount_in=amount)


async def test_registry_converges_behind_a_faulty_endpoint(w3: Any, devnet: Devnet) -> None:
    rng = random.Random(3)
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.3, slow_reply_s=0.4, seed=11) as proxy,
        RpcClient(
            [proxy.url],
            timeout_s=0.2,
            max_attempts=2,
            backoff_initial_s=0.001,
            backoff_max_s=0.01,
            cooldown_s=0.0,
        ) as client,
        RpcClient([devnet.rpc_url]) as direct,
    ):
        registry = PoolRegistry(client)
        for info in devnet.pools:
            if info.kind == "v2":
                registry.add_v2_pool(info.address, info.token0, info.token1, dex=info.dex)
            else:
                registry.add_v3_pool(
                    info.address, info.token0, info.token1, info.fee_pips, info.tick_spacing
                )
        # a "pool" that answers nothing useful: it must stay stale, never become zeros
        registry.add_v2_pool(NOT_A_POOL, devnet.tokens["WETH"].address, NOT_A_POOL, dex="x")

        results = []
        failed_with_states: list[dict[str, V2Pool | V3Pool]] = []

        async def refresh_loop() -> None:
            async for block in poll_new_blocks(client, poll_interval_s=0.005):
                before = registry.pools
                result = await registry.refresh(block)  # must never raise
                results.append(result)
                if result.error is not None and before:
                    failed_with_states.append(before)
                    # a failed read keeps the last good state of every pool
                    assert registry.pools.keys() >= before.keys()
                if len(results) >= 40:
                    return

        async def traffic() -> None:
            while True:
                await move_markets(devnet, rng)
                await asyncio.sleep(0.01)

        mover = asyncio.create_task(traffic())
        try:
            async with asyncio.timeout(120):
                await refresh_loop()
        finally:
            mover.cancel()
            await asyncio.gather(mover, return_exceptions=True)

        assert set(proxy.injected) == set(FAULTS), proxy.injected
        assert any(r.error for r in results), "no refresh ever failed: the faults did not bite"
        assert any(r.ok or r.stale == {NOT_A_POOL} for r in results)
        assert all(NOT_A_POOL in r.stale for r in results)
        assert registry.get(NOT_A_POOL) is None
        for states in failed_with_states:
            for pool in states.values():
                if isinstance(pool, V2Pool):
                    assert pool.reserve0 > 0 and pool.reserve1 > 0
                else:
                    assert pool.sqrt_price_x96 > 0 and pool.liquidity > 0

        # Anvil announces an automined block a moment before it has stored its state; mine one
        # more (empty) block so the reference reads below see a settled head.
        await devnet.mine(1)
        # converge: keep refreshing the (still faulty) endpoint until one refresh succeeds
        for _ in range(50):
            head = int(await direct.call_raw("eth_blockNumber"), 16)
            final = await registry.refresh(head)
            if final.error is None and final.stale == {NOT_A_POOL}:
                break
        else:
            pytest.fail("the registry never caught up")
        for info in devnet.pools:
            state = registry.get(info.address)
            if info.kind == "v2":
                assert state == await fetch_v2_pool(direct, info.address, block=head)
            else:
                assert state == await fetch_v3_pool(direct, info.address, block=head)
