"""Multicall3 batching on the devnet: one HTTP request for many chunks, failures reported as
failures (never as zeros), results pinned to the block they were read at."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from agent.chain.multicall import Call, Multicall
from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.devnet.traders import swap_v2

pytestmark = pytest.mark.chain

GET_RESERVES = function_signature_to_4byte_selector("getReserves()")
BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")


def v2_pool(devnet: Devnet, dex: str = "uniswap_v2") -> Any:
    return next(p for p in devnet.pools if p.kind == "v2" and p.dex == dex)


async def test_failed_calls_come_back_as_failures_not_zeros(w3: Any, devnet: Devnet) -> None:
    pool = v2_pool(devnet)
    weth = devnet.tokens["WETH"].address
    calls = [
        Call(pool.address, GET_RESERVES),
        Call(weth, GET_RESERVES),  # a token has no getReserves: reverts
        Call(weth, BALANCE_OF + encode(["address"], [devnet.accounts[1][0]])),
    ]
    async with RpcClient([devnet.rpc_url]) as client:
        answer = await Multicall(client).aggregate(calls)
    ok, reverted, balance = answer.results
    assert ok.success and int.from_bytes(ok.return_data[:32], "big") > 0
    assert not reverted.success and reverted.error == "reverted"
    assert balance.success and int.from_bytes(balance.return_data, "big") > 0


async def test_many_chunks_travel_in_one_http_request(w3: Any, devnet: Devnet) -> None:
    owners = [address for address, _ in devnet.accounts]
    tokens = [t.address for t in devnet.tokens.values()]
    calls = [
        Call(token, BALANCE_OF + encode(["address"], [owner]))
        for _ in range(20)
        for token in tokens
        for owner in owners
    ]
    async with RpcClient([devnet.rpc_url]) as client:
        multicall = Multicall(client, max_calls_per_chunk=300)
        answer = await multicall.aggregate(calls)
        assert len(multicall.chunk(calls)) == answer.rpc_calls == -(-len(calls) // 300)
        assert client.request_count == 1
        assert client.call_count == answer.rpc_calls
        single = await multicall.aggregate(calls[: len(owners)])
    # results come back in call order: every chunk repeats the same balances
    period = len(tokens) * len(owners)
    values = [r.return_data for r in answer.results]
    assert all(values[i] == values[i % period] for i in range(len(values)))
    assert [r.return_data for r in single.results] == values[: len(owners)]


async def test_results_are_pinned_to_a_block(w3: Any, devnet: Devnet) -> None:
    assert devnet.rpc is not None
    pool = v2_pool(devnet)
    call = [Call(pool.address, GET_RESERVES)]
    async with RpcClient([devnet.rpc_url]) as client:
        multicall = Multicall(client)
        before = await multicall.aggregate(call)
        head = int(await client.call_raw("eth_blockNumber"), 16)
        assert before.block_number == head
        await swap_v2(
            devnet.rpc,
            dex="uniswap_v2",
            router=devnet.addresses["uniswap_v2.router"],
            trader=devnet.accounts[1][0],
            path=[pool.token0, pool.token1],
            amount_in=10**15,
        )
        latest = await multicall.aggregate(call)
        again = await multicall.aggregate(call, before.block_number)
    assert latest.block_number is not None and latest.block_number > head
    assert latest.results[0].return_data != before.results[0].return_data
    assert again.block_number == head
    assert again.results[0].return_data == before.results[0].return_data


async def test_transport_failure_marks_every_call_failed() -> None:
    # nothing listens on port 9 of loopback: the request fails after its retries
    async with RpcClient(["http://127.0.0.1:9"], max_attempts=2, backoff_initial_s=0.001) as c:
        answer = await Multicall(c).aggregate([Call("0x" + "11" * 20, GET_RESERVES)] * 3)
        assert c.counters()["127.0.0.1:9"] == {"requests": 2, "calls": 2, "failures": 2}
    assert answer.block_number is None
    assert [r.success for r in answer.results] == [False, False, False]
    assert all(r.error and "request failed" in r.error for r in answer.results)
