"""Market activity on the devnet: swaps by Anvil's unlocked dev accounts through the real routers.

Used by the demo and by tests to move prices (open arbitrage gaps, act as a whale). Every swap
goes through Router02 or SwapRouter exactly as a wallet would send it; amounts are integers in
the token's smallest unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from agent.chain.abi import calldata_hex
from agent.chain.registry import DeployedPool
from agent.devnet.jsonrpc import JsonRpc
from agent.errors import FatalError

_FAR_DEADLINE = 2**40


@dataclass(frozen=True, slots=True)
class SwapResult:
    dex: str
    trader: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    tx_hash: str
    block: int


async def balance_of(rpc: JsonRpc, token: str, owner: str) -> int:
    raw = await rpc.call(
        "eth_call",
        [{"to": token, "data": calldata_hex("balanceOf(address)", ["address"], [owner])}, "latest"],
    )
    return int(raw, 16)


async def _transact(rpc: JsonRpc, sender: str, to: str, data: str, label: str) -> dict[str, str]:
    tx_hash = await rpc.call(
        "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(1_500_000)}]
    )
    receipt: dict[str, str] | None = None
    for attempt in range(200):
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            break
        if attempt == 100 and not await rpc.call("anvil_getAutomine", []):
            await rpc.call("evm_mine", [])  # automine is off (a test froze the chain): mine it
        await asyncio.sleep(0.002)  # automine answers just before the block is stored
    if receipt is None or int(receipt["status"], 16) != 1:
        raise FatalError(f"{label} failed (tx {tx_hash})")
    return receipt


async def _approve(rpc: JsonRpc, trader: str, token: str, spender: str, amount: int) -> None:
    data = calldata_hex("approve(address,uint256)", ["address", "uint256"], [spender, amount])
    await _transact(rpc, trader, token, data, "approve")


async def swap_v2(
    rpc: JsonRpc, *, dex: str, router: str, trader: str, path: list[str], amount_in: int
) -> SwapResult:
    """Swap exactly ``amount_in`` along ``path`` through a V2 Router02 (any output accepted)."""
    await _approve(rpc, trader, path[0], router, amount_in)
    before = await balance_of(rpc, path[-1], trader)
    data = calldata_hex(
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [amount_in, 0, path, trader, _FAR_DEADLINE],
    )
    receipt = await _transact(rpc, trader, router, data, f"{dex} swap")
    after = await balance_of(rpc, path[-1], trader)
    return SwapResult(
        dex,
        trader,
        path[0],
        path[-1],
        amount_in,
        after - before,
        receipt["transactionHash"],
        int(receipt["blockNumber"], 16),
    )


async def swap_v3(
    rpc: JsonRpc,
    *,
    swap_router: str,
    trader: str,
    token_in: str,
    token_out: str,
    fee_pips: int,
    amount_in: int,
) -> SwapResult:
    """Swap exactly ``amount_in`` through SwapRouter.exactInputSingle (no price limit)."""
    await _approve(rpc, trader, token_in, swap_router, amount_in)
    before = await balance_of(rpc, token_out, trader)
    data = calldata_hex(
        "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
        ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
        [(token_in, token_out, fee_pips, trader, _FAR_DEADLINE, amount_in, 0, 0)],
    )
    receipt = await _transact(rpc, trader, swap_router, data, "uniswap_v3 swap")
    after = await balance_of(rpc, token_out, trader)
    return SwapResult(
        "uniswap_v3",
        trader,
        token_in,
        token_out,
        amount_in,
        after - before,
        receipt["transactionHash"],
        int(receipt["blockNumber"], 16),
    )


async def swap_on_pool(
    rpc: JsonRpc,
    addresses: Mapping[str, str],
    pool: DeployedPool,
    *,
    trader: str,
    token_in: str,
    amount_in: int,
) -> SwapResult:
    """Sell ``amount_in`` of ``token_in`` on ``pool`` through its DEX's router (V2 or V3)."""
    token_out = pool.token1 if token_in == pool.token0 else pool.token0
    if pool.kind == "v2":
        return await swap_v2(
            rpc,
            dex=pool.dex,
            router=addresses[f"{pool.dex}.router"],
            trader=trader,
            path=[token_in, token_out],
            amount_in=amount_in,
        )
    return await swap_v3(
        rpc,
        swap_router=addresses["uniswap_v3.swap_router"],
        trader=trader,
        token_in=token_in,
        token_out=token_out,
        fee_pips=pool.fee_pips,
        amount_in=amount_in,
    )
