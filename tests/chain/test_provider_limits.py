"""Reads behind a proxy that enforces a provider's limits, as Infura and Alchemy do: a log
range the provider refuses (Infura's -32005, Alchemy's -32602) is split and asked again and the
pools stay exact; configured limits keep every read (discovery, first load, refresh, logs)
within the caps, so the provider never has to refuse; requests are paced under a rate cap."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode

from agent.chain.limits import ProviderLimits
from agent.chain.logs import get_logs
from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.devnet.traders import swap_v3
from agent.dex.pools import PoolRegistry, fetch_v3_pool
from agent.dex.v3 import V3Pool
from agent.errors import RateLimitedError
from agent.feeds.whales import SWAP_V3_TOPIC
from tests.chain.test_pools import APPROVE, DEADLINE, MINT, new_registry, send
from tests.fakes.rpc_proxy import EnforcedLimits, FaultyRpcProxy

pytestmark = pytest.mark.chain

MINT_PARAMS = "(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"


async def head(client: RpcClient) -> int:
    return int(await client.call_raw("eth_blockNumber"), 16)


async def mint_position(devnet: Devnet, pool: V3Pool, fee_pips: int) -> tuple[int, int]:
    """A new liquidity position around the current tick; returns its (lower, upper) ticks."""
    owner = devnet.accounts[3][0]
    npm = devnet.addresses["uniswap_v3.position_manager"]
    for token in (pool.token0, pool.token1):
        await send(devnet, owner, token, APPROVE + encode(["address", "uint256"], [npm, 2**255]))
    spacing = pool.tick_spacing
    lower = (pool.tick // spacing - 5) * spacing
    upper = (pool.tick // spacing + 9) * spacing
    params = (pool.token0, pool.token1, fee_pips, lower, upper, 10**18, 10**18, 0, 0, owner)
    await send(devnet, owner, npm, MINT + encode([MINT_PARAMS], [(*params, DEADLINE)]))
    return lower, upper


@pytest.mark.parametrize("style", ["infura", "alchemy"])
async def test_refused_log_range_is_split_and_the_mint_still_lands(
    w3: Any, devnet: Devnet, style: str
) -> None:
    target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 3000)
    limits = EnforcedLimits(logs_max_block_range=10, style=style)
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=limits) as proxy,
        RpcClient([proxy.url]) as client,  # knows no limits: it learns from the refusals
        RpcClient([devnet.rpc_url]) as direct,
    ):
        registry = new_registry(client, devnet)
        await registry.discover(t.address for t in devnet.tokens.values())
        assert (await registry.refresh(await head(client))).ok
        before = registry.get(target.address)
        assert isinstance(before, V3Pool)

        await devnet.call("anvil_mine", [hex(14)])
        lower, upper = await mint_position(devnet, before, 3000)
        await devnet.call("anvil_mine", [hex(17)])
        block = await head(direct)
        refreshed = await registry.refresh(block)

        assert proxy.refused["logs_range"] >= 1  # the provider did refuse the 30-block range
        assert refreshed.ok, refreshed.error
        assert refreshed.ticks_reloaded == {target.address}
        after = registry.get(target.address)
        assert isinstance(after, V3Pool)
        assert {lower, upper} <= {tick for tick, _ in after.ticks}
        assert after == await fetch_v3_pool(direct, target.address, block=block)
        # the range is synced: the next block asks for one block only and is refused nothing
        refused = proxy.refused["logs_range"]
        await devnet.call("anvil_mine", [hex(1)])
        assert (await registry.refresh(await head(direct))).ok
        assert proxy.refused["logs_range"] == refused


async def test_configured_limits_keep_every_read_under_the_caps(w3: Any, devnet: Devnet) -> None:
    caps = EnforcedLimits(max_batch_calls=4, max_body_bytes=60_000, logs_max_block_range=10)
    limits = ProviderLimits(
        max_calls_per_batch=4, max_request_bytes=60_000, logs_max_block_range=10
    )
    target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 500)
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=caps) as proxy,
        RpcClient([proxy.url], limits=limits) as client,
        RpcClient([devnet.rpc_url]) as direct,
    ):
        registry = PoolRegistry(
            client,
            v2_factories={"uniswap_v2": devnet.addresses["uniswap_v2.factory"]},
            v3_factory=devnet.addresses["uniswap_v3.factory"],
            multicall=None,
            limits=limits,
        )
        assert registry.multicall is not None
        registry.multicall.max_calls_per_chunk = 50  # small eth_calls: many of them
        registry.multicall.max_request_bytes = limits.max_request_bytes
        added = await registry.discover(t.address for t in devnet.tokens.values())
        assert added > 0
        assert (await registry.refresh(await head(client))).ok  # first load of every pool
        before = registry.get(target.address)
        assert isinstance(before, V3Pool)
        await devnet.call("anvil_mine", [hex(12)])
        await mint_position(devnet, before, 500)
        await devnet.call("anvil_mine", [hex(12)])
        block = await head(direct)
        refreshed = await registry.refresh(block)

        assert refreshed.ok, refreshed.error
        assert registry.get(target.address) == await fetch_v3_pool(
            direct, target.address, block=block
        )
        assert not proxy.refused  # no batch, body or log range was ever over a cap
        assert proxy.calls["eth_getLogs"] >= 3  # the 25-block range went as 10-block pieces
        assert refreshed.http_requests is not None and refreshed.http_requests > 1


async def test_web3_batches_are_split_by_the_limits_too(w3: Any, devnet: Devnet) -> None:
    """What goes through ``RpcClient.web3()`` (web3's batch requests, reads handed an
    ``AsyncWeb3``) is split by calls and bytes like the client's own batches: never refused."""
    caps = EnforcedLimits(max_batch_calls=3, max_body_bytes=300_000)
    limits = ProviderLimits(max_calls_per_batch=3, max_request_bytes=300_000)
    target = next(p for p in devnet.pools if p.kind == "v3" and p.fee_pips == 500)
    accounts = [address for address, _key in devnet.accounts]
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=caps) as proxy,
        RpcClient([proxy.url], limits=limits) as client,
        RpcClient([devnet.rpc_url]) as direct,
    ):
        web3 = client.web3()
        async with web3.batch_requests() as batch:
            for account in accounts:
                batch.add(web3.eth.get_balance(account))
            balances = await batch.async_execute()
        assert balances == [
            int(await direct.call_raw("eth_getBalance", [a, "latest"]), 16) for a in accounts
        ]
        assert proxy.requests == 4  # 10 calls, 3 a batch
        # the bitmap scan of a fee-500 pool: two ~230 kB eth_calls, one request each
        pool = await fetch_v3_pool(web3, target.address)
        assert pool == await fetch_v3_pool(direct, target.address, block=pool.block)
        assert not proxy.refused


async def test_a_log_answer_over_the_result_cap_is_split(w3: Any, devnet: Devnet) -> None:
    assert devnet.rpc is not None
    pool = next(p for p in devnet.pools if p.kind == "v3")
    first = int(await devnet.call("eth_blockNumber"), 16) + 1
    for _ in range(4):  # one Swap log per block (Anvil mines each transaction)
        await swap_v3(
            devnet.rpc,
            swap_router=devnet.addresses["uniswap_v3.swap_router"],
            trader=devnet.accounts[1][0],
            token_in=pool.token0,
            token_out=pool.token1,
            fee_pips=pool.fee_pips,
            amount_in=10**12,
        )
    last = int(await devnet.call("eth_blockNumber"), 16)
    query = {"address": [pool.address], "topics": [[SWAP_V3_TOPIC]]}
    expected = await devnet.call(
        "eth_getLogs", [{**query, "fromBlock": hex(first), "toBlock": hex(last)}]
    )
    assert len(expected) == 4
    for style in ("infura", "alchemy"):
        caps = EnforcedLimits(logs_max_block_range=10_000, logs_max_results=1, style=style)
        async with (
            FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=caps) as proxy,
            RpcClient([proxy.url]) as client,
        ):
            logs = await get_logs(client, query, first, last, ProviderLimits())
            assert [(e["blockNumber"], e["logIndex"]) for e in logs] == [
                (e["blockNumber"], e["logIndex"]) for e in expected
            ]
            assert proxy.refused["logs_results"] >= 1


async def test_requests_are_paced_under_the_rate_cap(w3: Any, devnet: Devnet) -> None:
    caps = EnforcedLimits(requests_per_s=5)
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=caps) as proxy,
        RpcClient([proxy.url], max_attempts=1) as eager,
    ):
        with pytest.raises(RateLimitedError):
            for _ in range(12):
                await eager.call_raw("eth_blockNumber")
    paced = ProviderLimits(requests_per_s=4)
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=caps) as proxy,
        RpcClient([proxy.url], max_attempts=1, limits=paced) as client,
    ):
        for _ in range(12):
            await client.call_raw("eth_blockNumber")
        assert not proxy.refused
