"""PoolRegistry on the devnet: discovery through the factories, one request per block,
tick re-reads only for pools with Mint/Burn logs, stale flags, block watchers, failover."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from agent.chain.rpc import RpcClient, poll_new_blocks, subscribe_new_blocks
from agent.devnet import Devnet
from agent.devnet.traders import swap_v3
from agent.dex.pools import PoolRegistry, fetch_v2_pool, fetch_v3_pool
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool

pytestmark = pytest.mark.chain

DEADLINE = 2**40
MINT = function_signature_to_4byte_selector(
    "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
)
DECREASE = function_signature_to_4byte_selector(
    "decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))"
)
TOKEN_OF_OWNER = function_signature_to_4byte_selector("tokenOfOwnerByIndex(address,uint256)")
POSITIONS = function_signature_to_4byte_selector("positions(uint256)")
APPROVE = function_signature_to_4byte_selector("approve(address,uint256)")


def new_registry(client: RpcClient, devnet: Devnet, **options: Any) -> PoolRegistry:
    """A registry of the devnet's factories; ``options`` are PoolRegistry's other fields."""
    a = devnet.addresses
    return PoolRegistry(
        client,
        v2_factories={"uniswap_v2": a["uniswap_v2.factory"], "sushiswap": a["sushiswap.factory"]},
        v3_factory=a["uniswap_v3.factory"],
        **options,
    )


async def send(devnet: Devnet, sender: str, to: str, data: bytes) -> None:
    tx_hash = await devnet.call(
        "eth_sendTransaction",
        [{"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(1_500_000)}],
    )
    for _ in range(200):
        receipt = await devnet.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            assert int(receipt["status"], 16) == 1
            return
        await asyncio.sleep(0.005)
    raise AssertionError("transaction not mined")


async def test_discovery_finds_every_devnet_pool(w3: Any, devnet: Devnet) -> None:
    async with RpcClient([devnet.rpc_url]) as client:
        registry = new_registry(client, devnet)
        added = await registry.discover(t.address for t in devnet.tokens.values())
        assert client.request_count == 1
    assert added == len(devnet.pools)
    refs = registry.pool_refs
    for info in devnet.pools:
        ref = refs[info.address]
        assert (ref.dex, ref.kind) == (info.dex, info.kind)


async def test_refresh_is_one_request_and_equals_direct_reads(w3: Any, devnet: Devnet) -> None:
    async with RpcClient([devnet.rpc_url]) as client:
        registry = new_registry(client, devnet)
        await registry.discover(t.address for t in devnet.tokens.values())
        head = int(await client.call_raw("eth_blockNumber"), 16)
        first = await registry.refresh(head)  # loads all tick state
        assert first.ok and first.updated == len(devnet.pools)
        await devnet.mine(1)
        result = await registry.refresh(head + 1)
        assert result.ok
        assert (result.http_requests, result.rpc_calls) == (1, 2)  # multicall + getLogs
        assert result.ticks_reloaded == frozenset()
        for info in devnet.pools:
            state = registry.get(info.address)
            assert state is not None and state.block == head + 1
            if info.kind == "v2":
                assert isinstance(state, V2Pool)
                assert state == await fetch_v2_pool(client, info.address, block=head + 1)
            else:
                assert isinstance(state, V3Pool)
                assert state == await fetch_v3_pool(w3, info.address, block=head + 1)


async def test_mint_and_burn_reload_only_that_pools_ticks(w3: Any, devnet: Devnet) -> None:
    owner = devnet.accounts[3][0]
    npm = devnet.addresses["uniswap_v3.position_manager"]
    target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 3000)
    async with RpcClient([devnet.rpc_url]) as client:
        registry = new_registry(client, devnet)
        await registry.discover(t.address for t in devnet.tokens.values())
        assert (await registry.refresh(int(await client.call_raw("eth_blockNumber"), 16))).ok
        before = registry.get(target.address)
        assert isinstance(before, V3Pool)
        for token in (target.token0, target.token1):
            await send(
                devnet, owner, token, APPROVE + encode(["address", "uint256"], [npm, 2**255])
            )
        spacing = before.tick_spacing
        lower = (before.tick // spacing - 7) * spacing
        upper = (before.tick // spacing + 3) * spacing
        params = (
            target.token0,
            target.token1,
            3000,
            lower,
            upper,
            10**18,
            10**18,
            0,
            0,
            owner,
            DEADLINE,
        )
        await send(
            devnet,
            owner,
            npm,
            MINT
            + encode(
                [
                    "(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"
                ],
                [params],
            ),
        )
        # some other pool moves too (a swap, no Mint/Burn): it must not reload ticks
        other = next(p for p in devnet.pools if p.kind == "v3" and p.address != target.address)
        assert devnet.rpc is not None
        await swap_v3(
            devnet.rpc,
            swap_router=devnet.addresses["uniswap_v3.swap_router"],
            trader=devnet.accounts[1][0],
            token_in=other.token0,
            token_out=other.token1,
            fee_pips=other.fee_pips,
            amount_in=10**12,
        )
        head = int(await client.call_raw("eth_blockNumber"), 16)
        minted = await registry.refresh(head)
        assert minted.ok and minted.ticks_reloaded == {target.address}
        after_mint = registry.get(target.address)
        assert isinstance(after_mint, V3Pool)
        assert {lower, upper} <= {t for t, _ in after_mint.ticks}
        assert after_mint == await fetch_v3_pool(client, target.address, block=head)
        assert registry.get(other.address) == await fetch_v3_pool(client, other.address, block=head)

        # burn the whole position: its ticks disappear again
        raw = await client.call_raw(
            "eth_call",
            [
                {
                    "to": npm,
                    "data": "0x"
                    + (TOKEN_OF_OWNER + encode(["address", "uint256"], [owner, 0])).hex(),
                },
                "latest",
            ],
        )
        token_id = int(raw, 16)
        raw = await client.call_raw(
            "eth_call",
            [
                {"to": npm, "data": "0x" + (POSITIONS + encode(["uint256"], [token_id])).hex()},
                "latest",
            ],
        )
        liquidity = decode(
            [
                "uint96",
                "address",
                "address",
                "address",
                "uint24",
                "int24",
                "int24",
                "uint128",
                "uint256",
                "uint256",
                "uint128",
                "uint128",
            ],
            bytes.fromhex(raw[2:]),
        )[7]
        await send(
            devnet,
            owner,
            npm,
            DECREASE
            + encode(
                ["(uint256,uint128,uint256,uint256,uint256)"],
                [(token_id, liquidity, 0, 0, DEADLINE)],
            ),
        )
        head = int(await client.call_raw("eth_blockNumber"), 16)
        burned = await registry.refresh(head)
        assert burned.ok and burned.ticks_reloaded == {target.address}
        after_burn = registry.get(target.address)
        assert after_burn == await fetch_v3_pool(client, target.address, block=head)
        assert isinstance(after_burn, V3Pool)
        assert after_burn.ticks == before.ticks


async def test_unreadable_pool_is_stale_never_zero(w3: Any, devnet: Devnet) -> None:
    weth = devnet.tokens["WETH"].address
    async with RpcClient([devnet.rpc_url]) as client:
        registry = new_registry(client, devnet)
        await registry.discover(t.address for t in devnet.tokens.values())
        registry.add_v2_pool(weth, weth, devnet.tokens["USDC"].address, dex="bogus")
        registry.add_v3_pool(devnet.tokens["DAI"].address, weth, weth, 3000)
        result = await registry.refresh(int(await client.call_raw("eth_blockNumber"), 16))
    assert result.error is None
    assert result.stale == {weth, devnet.tokens["DAI"].address}
    assert registry.get(weth) is None
    assert set(registry.errors()) == result.stale
    assert len(registry.pools) == len(devnet.pools)


async def test_failover_to_the_second_endpoint(w3: Any, devnet: Devnet) -> None:
    async with RpcClient(
        ["http://127.0.0.1:9", devnet.rpc_url], backoff_initial_s=0.001, timeout_s=2
    ) as client:
        for _ in range(3):
            assert int(await client.call_raw("eth_blockNumber"), 16) > 0
        counters = client.counters()
        w3_block = await client.web3().eth.block_number
    assert w3_block > 0
    dead, alive = counters.values()
    assert dead["failures"] == dead["requests"] == 1  # cooled down after its first failure
    assert alive["requests"] == 3 and alive["failures"] == 0


async def test_new_blocks_over_http_polling_and_websocket(w3: Any, devnet: Devnet) -> None:
    async def first_blocks(source: Any, count: int) -> list[int]:
        seen: list[int] = []
        async for number in source:
            seen.append(number)
            if len(seen) == count:
                break
        return seen

    async def miner() -> None:
        for _ in range(30):
            await asyncio.sleep(0.05)
            await devnet.mine(1)

    async with RpcClient([devnet.rpc_url]) as client:
        mining = asyncio.create_task(miner())
        try:
            async with asyncio.timeout(20):
                polled, pushed = await asyncio.gather(
                    first_blocks(poll_new_blocks(client, poll_interval_s=0.01), 3),
                    first_blocks(subscribe_new_blocks(devnet.ws_url), 3),
                )
        finally:
            mining.cancel()
            await asyncio.gather(mining, return_exceptions=True)
    assert polled == sorted(set(polled))
    assert pushed == sorted(set(pushed)) and len(pushed) == 3
