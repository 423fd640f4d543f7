"""The devnet behaves like mainnet Uniswap: swaps move balances exactly as the routers and the
quoter predict, Multicall3 answers at its canonical address, and a fork is isolated upstream."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.abi import v2_pair_address, v3_pool_address
from agent.devnet import Devnet
from agent.devnet.deploy import MULTICALL3_ADDRESS
from tests.conftest import load_abi

DEADLINE = 2**40


async def balance(w3: AsyncWeb3, token: str, owner: str) -> int:
    erc20 = w3.eth.contract(address=w3.to_checksum_address(token), abi=load_abi("ERC20"))
    return int(await erc20.functions.balanceOf(owner).call())


async def send(w3: AsyncWeb3, tx_fn: Any, sender: str) -> dict[str, Any]:
    tx_hash = await tx_fn.transact({"from": sender})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return dict(receipt)


def test_stack_has_every_named_contract(devnet: Devnet) -> None:
    for name in (
        "WETH",
        "USDC",
        "WBTC",
        "DAI",
        "uniswap_v2.factory",
        "uniswap_v2.router",
        "sushiswap.factory",
        "sushiswap.router",
        "uniswap_v3.factory",
        "uniswap_v3.swap_router",
        "uniswap_v3.quoter_v2",
        "uniswap_v3.position_manager",
        "multicall3",
    ):
        assert devnet.addresses[name].startswith("0x")
    assert {devnet.tokens[s].decimals for s in ("USDC", "WBTC", "DAI")} == {6, 8, 18}
    fees = {p.fee_pips for p in devnet.pools if p.kind == "v3"}
    assert fees == {100, 500, 3000, 10000}
    assert {p.dex for p in devnet.pools if p.kind == "v2"} == {"uniswap_v2", "sushiswap"}


async def test_pools_exist_where_factories_say(w3: AsyncWeb3, devnet: Devnet) -> None:
    a = devnet.addresses
    v2f = w3.eth.contract(address=a["sushiswap.factory"], abi=load_abi("UniswapV2Factory"))
    v3f = w3.eth.contract(address=a["uniswap_v3.factory"], abi=load_abi("UniswapV3Factory"))
    pair = await v2f.functions.getPair(a["WETH"], a["USDC"]).call()
    assert pair == v2_pair_address(a["sushiswap.factory"], a["WETH"], a["USDC"])
    pool = await v3f.functions.getPool(a["WETH"], a["USDC"], 500).call()
    assert pool == v3_pool_address(a["uniswap_v3.factory"], a["WETH"], a["USDC"], 500)
    assert len(await w3.eth.get_code(pool)) > 1000


async def test_realistic_prices(w3: AsyncWeb3, devnet: Devnet) -> None:
    a = devnet.addresses
    router = w3.eth.contract(address=a["uniswap_v2.router"], abi=load_abi("UniswapV2Router02"))
    out = await router.functions.getAmountsOut(10**18, [a["WETH"], a["USDC"]]).call()
    assert 2_950 * 10**6 < out[1] < 3_000 * 10**6  # 1 ETH ~ 3,000 USDC less 0.3% fee
    out = await router.functions.getAmountsOut(10**8, [a["WBTC"], a["USDC"]]).call()
    assert 59_000 * 10**6 < out[1] < 60_000 * 10**6


@pytest.mark.parametrize("dex", ["uniswap_v2", "sushiswap"])
async def test_v2_swap_moves_balances_as_router_predicted(
    w3: AsyncWeb3, devnet: Devnet, dex: str
) -> None:
    a = devnet.addresses
    trader = devnet.accounts[1][0]
    router = w3.eth.contract(address=a[f"{dex}.router"], abi=load_abi("UniswapV2Router02"))
    weth = w3.eth.contract(address=a["WETH"], abi=load_abi("ERC20"))
    amount_in = 3 * 10**18
    path = [a["WETH"], a["USDC"]]
    predicted = (await router.functions.getAmountsOut(amount_in, path).call())[-1]
    weth_before = await balance(w3, a["WETH"], trader)
    usdc_before = await balance(w3, a["USDC"], trader)

    await send(w3, weth.functions.approve(router.address, amount_in), trader)
    fn = router.functions.swapExactTokensForTokens(amount_in, predicted, path, trader, DEADLINE)
    await send(w3, fn, trader)

    assert await balance(w3, a["WETH"], trader) == weth_before - amount_in
    assert await balance(w3, a["USDC"], trader) == usdc_before + predicted


async def test_v3_swap_moves_balances_as_quoter_predicted(w3: AsyncWeb3, devnet: Devnet) -> None:
    a = devnet.addresses
    trader = devnet.accounts[2][0]
    quoter = w3.eth.contract(address=a["uniswap_v3.quoter_v2"], abi=load_abi("QuoterV2"))
    router = w3.eth.contract(address=a["uniswap_v3.swap_router"], abi=load_abi("SwapRouter"))
    usdc = w3.eth.contract(address=a["USDC"], abi=load_abi("ERC20"))
    amount_in = 1_500_000 * 10**6  # large enough to cross several initialized ticks
    quote = await quoter.functions.quoteExactInputSingle(
        (a["USDC"], a["WETH"], amount_in, 3000, 0)
    ).call()
    predicted_out, ticks_crossed = quote[0], quote[2]
    assert ticks_crossed >= 1
    weth_before = await balance(w3, a["WETH"], trader)

    await send(w3, usdc.functions.approve(router.address, amount_in), trader)
    params = (a["USDC"], a["WETH"], 3000, trader, DEADLINE, amount_in, predicted_out, 0)
    await send(w3, router.functions.exactInputSingle(params), trader)

    assert await balance(w3, a["WETH"], trader) == weth_before + predicted_out


async def test_multicall3_answers_at_canonical_address(w3: AsyncWeb3) -> None:
    # A plain eth_call of getBlockNumber() (selector 0x42cbb15c), as any client would send it.
    raw = await w3.eth.call({"to": MULTICALL3_ADDRESS, "data": "0x42cbb15c"})
    assert int.from_bytes(raw, "big") == await w3.eth.block_number


async def test_fork_sees_same_pools_and_is_isolated_from_upstream(
    w3: AsyncWeb3, devnet: Devnet
) -> None:
    a = devnet.addresses
    pair = v2_pair_address(a["uniswap_v2.factory"], a["WETH"], a["USDC"])
    pair_abi = load_abi("UniswapV2Pair")
    upstream_reserves = (
        await w3.eth.contract(address=pair, abi=pair_abi).functions.getReserves().call()
    )

    async with Devnet(
        fork_url=devnet.rpc_url, deployment=devnet.deployment, deployments_dir=None
    ) as fork:
        fw3 = AsyncWeb3(AsyncHTTPProvider(fork.rpc_url))
        try:
            fork_pair = fw3.eth.contract(address=pair, abi=pair_abi)
            assert await fork_pair.functions.getReserves().call() == upstream_reserves
            trader = fork.accounts[3][0]
            router = fw3.eth.contract(
                address=a["uniswap_v2.router"], abi=load_abi("UniswapV2Router02")
            )
            weth = fw3.eth.contract(address=a["WETH"], abi=load_abi("ERC20"))
            await send(fw3, weth.functions.approve(router.address, 10**18), trader)
            fn = router.functions.swapExactTokensForTokens(
                10**18, 0, [a["WETH"], a["USDC"]], trader, DEADLINE
            )
            await send(fw3, fn, trader)
            assert await fork_pair.functions.getReserves().call() != upstream_reserves
        finally:
            await fw3.provider.disconnect()

    upstream_after = (
        await w3.eth.contract(address=pair, abi=pair_abi).functions.getReserves().call()
    )
    assert upstream_after == upstream_reserves


async def test_saved_state_restarts_with_the_same_deployment(devnet: Devnet) -> None:
    assert devnet.state_file is not None
    async with Devnet(state_file=devnet.state_file, deployments_dir=None) as again:
        assert again.loaded_from_state
        assert again.addresses == devnet.addresses
        code = await again.call("eth_getCode", [devnet.addresses["uniswap_v3.quoter_v2"], "latest"])
        assert len(code) > 1000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_anvil_stops_on_exception(devnet: Devnet) -> None:
    node = Devnet(fork_url=devnet.rpc_url, deployments_dir=None)
    with pytest.raises(RuntimeError):
        async with node:
            pid = node.node.pid
            assert pid is not None and _alive(pid)
            raise RuntimeError("boom")
    assert not _alive(pid)


async def test_anvil_stops_on_cancellation(devnet: Devnet) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    async def run() -> None:
        async with Devnet(fork_url=devnet.rpc_url, deployments_dir=None) as node:
            assert node.node.pid is not None
            pids.append(node.node.pid)
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pids and not _alive(pids[0])


def test_missing_binary_says_make_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.devnet import node

    monkeypatch.delenv("ANVIL_BIN", raising=False)
    monkeypatch.setattr(node, "PROJECT_ROOT", node.PROJECT_ROOT / "does-not-exist")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Exception, match="make setup"):
        node.anvil_binary()
