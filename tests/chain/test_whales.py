"""Whale watcher on the devnet: an impersonated whale swaps on a V2 and a V3 pool in one block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import AsyncWeb3

from agent.chain.limits import ProviderLimits
from agent.chain.logs import get_logs
from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.feeds.whales import WhaleWatcher
from agent.types import WhaleTrade
from tests.fakes.rpc_proxy import EnforcedLimits, FaultyRpcProxy

pytestmark = pytest.mark.chain

WHALE = to_checksum_address("0x" + "7a" * 20)
DEADLINE = 2**40


def calldata(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def send(devnet: Devnet, sender: str, to: str, data: str) -> str:
    tx_hash: str = await devnet.call(
        "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(1_000_000)}]
    )
    return tx_hash


async def balance(devnet: Devnet, token: str, owner: str) -> int:
    data = calldata("balanceOf(address)", ["address"], [owner])
    return int(await devnet.call("eth_call", [{"to": token, "data": data}, "latest"]), 16)


def pool(devnet: Devnet, dex: str, a: str, b: str, fee_pips: int | None = None) -> str:
    wanted = {devnet.addresses[a], devnet.addresses[b]}
    for info in devnet.pools:
        same_pair = info.dex == dex and {info.token0, info.token1} == wanted
        if same_pair and (fee_pips is None or info.fee_pips == fee_pips):
            return info.address
    raise AssertionError(f"no {dex} pool {a}/{b}")


async def test_watcher_reports_v2_and_v3_whale_trades_exactly(
    devnet: Devnet, w3: AsyncWeb3
) -> None:
    a = devnet.addresses
    usdc, weth, wbtc = a["USDC"], a["WETH"], a["WBTC"]
    router, swap_router = a["uniswap_v2.router"], a["uniswap_v3.swap_router"]
    decoy = devnet.accounts[2][0]
    v2_in, v3_in, decoy_in = 30_000 * 10**6, 60_000 * 10**6, 5_000 * 10**6

    # A fresh address, impersonated, with gas money and minted USDC.
    await devnet.call("anvil_impersonateAccount", [WHALE])
    await devnet.call("anvil_setBalance", [WHALE, hex(10**20)])
    for owner in (WHALE, decoy):
        mint = calldata("mint(address,uint256)", ["address", "uint256"], [owner, 10**12])
        await send(devnet, devnet.accounts[0][0], usdc, mint)

    # What the routers promise before anything moves (the pools are distinct, so order
    # inside the block doesn't change either quote).
    raw = await devnet.call(
        "eth_call",
        [
            {
                "to": router,
                "data": calldata(
                    "getAmountsOut(uint256,address[])",
                    ["uint256", "address[]"],
                    [v2_in, [usdc, weth]],
                ),
            },
            "latest",
        ],
    )
    expected_v2_out = decode(["uint256[]"], bytes.fromhex(raw[2:]))[0][-1]
    raw = await devnet.call(
        "eth_call",
        [
            {
                "to": a["uniswap_v3.quoter_v2"],
                "data": calldata(
                    "quoteExactInputSingle((address,address,uint256,uint24,uint160))",
                    ["(address,address,uint256,uint24,uint160)"],
                    [(usdc, wbtc, v3_in, 3000, 0)],
                ),
            },
            "latest",
        ],
    )
    expected_v3_out = decode(["uint256", "uint160", "uint32", "uint256"], bytes.fromhex(raw[2:]))[0]

    await devnet.call("evm_setAutomine", [False])
    try:
        approve = "approve(address,uint256)"
        await send(devnet, WHALE, usdc, calldata(approve, ["address", "uint256"], [router, v2_in]))
        v2_tx = await send(
            devnet,
            WHALE,
            router,
            calldata(
                "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                ["uint256", "uint256", "address[]", "address", "uint256"],
                [v2_in, 0, [usdc, weth], WHALE, DEADLINE],
            ),
        )
        await send(
            devnet, WHALE, usdc, calldata(approve, ["address", "uint256"], [swap_router, v3_in])
        )
        v3_tx = await send(
            devnet,
            WHALE,
            swap_router,
            calldata(
                "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
                [(usdc, wbtc, 3000, WHALE, DEADLINE, v3_in, 0, 0)],
            ),
        )
        # Someone else trades in the same block on a different V2 DEX: not a whale trade.
        sushi = a["sushiswap.router"]
        await send(
            devnet, decoy, usdc, calldata(approve, ["address", "uint256"], [sushi, decoy_in])
        )
        await send(
            devnet,
            decoy,
            sushi,
            calldata(
                "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                ["uint256", "uint256", "address[]", "address", "uint256"],
                [decoy_in, 0, [usdc, weth], decoy, DEADLINE],
            ),
        )
        await devnet.call("evm_mine", [])
    finally:
        await devnet.call("evm_setAutomine", [True])
        await devnet.call("anvil_stopImpersonatingAccount", [WHALE])

    receipts = [await w3.eth.get_transaction_receipt(h) for h in (v2_tx, v3_tx)]  # type: ignore[arg-type]
    assert all(r["status"] == 1 for r in receipts)
    block = receipts[0]["blockNumber"]
    assert receipts[1]["blockNumber"] == block

    watcher = WhaleWatcher(
        w3, [WHALE], pool_tokens={p.address: (p.token0, p.token1) for p in devnet.pools}
    )
    trades = await watcher.scan(block)

    assert watcher.get_logs_calls == 1
    assert trades == [
        WhaleTrade(
            WHALE,
            usdc,
            weth,
            v2_in,
            expected_v2_out,
            pool(devnet, "uniswap_v2", "USDC", "WETH"),
            v2_tx,
            block,
        ),
        WhaleTrade(
            WHALE,
            usdc,
            wbtc,
            v3_in,
            expected_v3_out,
            pool(devnet, "uniswap_v3", "USDC", "WBTC", 3000),
            v3_tx,
            block,
        ),
    ]
    # The amounts are what the whale's balances actually moved by.
    assert await balance(devnet, weth, WHALE) == expected_v2_out
    assert await balance(devnet, wbtc, WHALE) == expected_v3_out
    assert {t.token for t in watcher.transfers if t.sender == WHALE} == {usdc}

    # Without the pool registry the watcher reads token0()/token1() once per pool: same result.
    bare = WhaleWatcher(w3, [WHALE])
    assert await bare.scan(block) == trades

    # Polling from that block onwards reports the trades once.
    bare.next_block = block
    assert await bare.poll() == trades
    await devnet.mine(1)
    assert await bare.poll() == []

    # Through the RpcClient behind a provider that takes 2 blocks per eth_getLogs: the
    # refused 6-block range is split and asked again, and the same trades come out.
    caps = EnforcedLimits(logs_max_block_range=2, style="alchemy")
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=caps) as proxy,
        RpcClient([proxy.url]) as client,
    ):
        limited = WhaleWatcher(
            client.web3(),
            [WHALE],
            fetch_logs=lambda query, first, last: get_logs(
                client, query, first, last, ProviderLimits()
            ),
        )
        assert await limited.scan(block - 3, block + 2) == trades
        assert proxy.refused["logs_range"] >= 1
