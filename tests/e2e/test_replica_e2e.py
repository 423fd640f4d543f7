"""The whole agent on replicas of real chains, configured as an operator would for mainnet:
``chain.name = "ethereum"`` (or ``"base"``), the chain's id, an RPC URL and no deployment file,
so every address comes from the registry.

* Paper: DCA buys WBTC with USDT through the pools; the fill is the chain's own quote.
* Fork and live: DCA spends USDT (approvals without return values) for WETH and WBTC, and USDC
  for WBTC; the wallet's balances move by exactly the fills.
* Fork: the arbitrage strategy closes a SushiSwap/Uniswap V2 WETH-USDT gap through an
  ArbExecutor deployed with each DEX's own pair init-code hash, for exactly the predicted profit.
* Base: a V3 directional swap fills through SwapRouter02 (Base has no SwapRouter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from agent.chain.arb_executor import encode_deployment, load_arb_executor_artifact
from agent.chain.registry import addresses_for
from agent.devnet import Devnet
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.traders import balance_of, swap_v2
from agent.store.models import IntentStatus
from tests.conftest import reverted
from tests.e2e.harness import (
    AGENT_ACCOUNT,
    GAPPER,
    running_agent,
    tree_for,
    write_config,
)

ETHEREUM_TOKENS = ["WETH", "USDC", "USDT", "WBTC"]


def _call(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def _send_as(rpc: JsonRpc, sender: str, tx: dict[str, str]) -> dict[str, Any]:
    await rpc.call("anvil_impersonateAccount", [sender])
    tx_hash = await rpc.call("eth_sendTransaction", [{"from": sender, "gas": hex(6_000_000), **tx}])
    receipt: dict[str, Any] | None = None
    while receipt is None:
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    assert int(receipt["status"], 16) == 1, receipt
    return receipt


def replica_tree(
    replica: Devnet,
    workdir: Path,
    *,
    tokens: list[str],
    strategies: dict[str, Any],
    mode: str = "fork",
    arb_executor: str = "",
    dexes: list[str] | None = None,
) -> dict[str, Any]:
    """An agent.toml for a public chain served by ``replica``: no deployment file."""
    tree = tree_for(
        rpc_url=replica.rpc_url,
        deployment_file=workdir / "unused.json",
        workdir=workdir,
        arb_executor=arb_executor,
        tokens=tokens,
        strategies=strategies,
    )
    tree["chain"] = {
        "name": replica.name,
        "chain_id": replica.chain_id,
        "rpc_urls": [replica.rpc_url],
        "poll_interval_s": 0.2,
    }
    tree["execution"]["mode"] = mode
    if not arb_executor:
        del tree["execution"]["arb_executor"]
    if dexes is not None:
        tree["market"]["dexes"] = dexes
    return tree


def dca(buy: str, spend: str, amount: int) -> dict[str, Any]:
    return {
        "dca": {
            "enabled": True,
            "buy_token": buy,
            "spend_token": spend,
            "amount": amount,
            "interval_s": 3_600,
            "route": "pools",
        }
    }


@pytest.fixture
async def ethereum(ethereum_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(ethereum_replica):
        yield ethereum_replica


@pytest.fixture
async def base(base_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(base_replica):
        yield base_replica


async def test_paper_run_on_the_ethereum_replica_buys_wbtc_with_usdt(
    ethereum: Devnet, workdir: Path
) -> None:
    tree = replica_tree(
        ethereum,
        workdir,
        tokens=ETHEREUM_TOKENS,
        strategies=dca("WBTC", "USDT", 3_000),
        mode="paper",
    )
    tree["execution"]["paper_balances"] = {"USDT": "10000"}
    cfg = write_config(workdir / "agent.toml", tree, {})
    assert cfg.chain.deployment_file is None
    tokens = addresses_for("ethereum").tokens
    async with running_agent(cfg, mode="paper") as agent:
        # Every pool between the four tokens on the three DEXes was found through the registry.
        dexes = {ref.dex for ref in agent.parts.registry.pool_refs.values()}
        assert dexes == {"uniswap_v2", "sushiswap", "uniswap_v3"}
        report = await agent.tick()
        assert report.started == 1, report.rejected
        (fill,) = agent.parts.engine.report.fills
        assert fill.mode == "paper" and fill.amount_out == fill.predicted_amount_out > 0
        record = await agent.parts.journal.get_intent(fill.intent_id)
        assert (record.intent.token_in, record.intent.token_out) == (
            tokens["USDT"].address,
            tokens["WBTC"].address,
        )
        balances = await agent.parts.journal.paper_balances()
        assert balances[tokens["USDT"].address] == 7_000 * 10**6
        assert balances[tokens["WBTC"].address] == fill.amount_out


@pytest.mark.parametrize(
    ("mode", "buy", "spend", "amount"),
    [
        ("fork", "WETH", "USDT", 5_000),
        ("fork", "WBTC", "USDC", 9_000),
        ("live", "WBTC", "USDT", 12_000),
    ],
)
async def test_fork_and_live_runs_on_the_ethereum_replica_fill_dca_buys(
    ethereum: Devnet, workdir: Path, mode: str, buy: str, spend: str, amount: int
) -> None:
    assert ethereum.rpc is not None
    tokens = addresses_for("ethereum").tokens
    tree = replica_tree(
        ethereum, workdir, tokens=ETHEREUM_TOKENS, strategies=dca(buy, spend, amount), mode=mode
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    spent_before = await balance_of(ethereum.rpc, tokens[spend].address, AGENT_ACCOUNT)
    bought_before = await balance_of(ethereum.rpc, tokens[buy].address, AGENT_ACCOUNT)
    async with running_agent(cfg, mode=mode) as agent:
        report = await agent.tick()
        assert report.started == 1, report.rejected
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        fill = fills[0]
        assert fill.mode == mode and fill.tx_hash is not None
        assert fill.amount_out >= fill.predicted_amount_out * 9_970 // 10_000
        record = await agent.parts.journal.get_intent(fill.intent_id)
        assert record.status == IntentStatus.FILLED
    spent = spent_before - await balance_of(ethereum.rpc, tokens[spend].address, AGENT_ACCOUNT)
    bought = await balance_of(ethereum.rpc, tokens[buy].address, AGENT_ACCOUNT) - bought_before
    assert spent == amount * 10 ** tokens[spend].decimals == fill.amount_in
    assert bought == fill.amount_out


async def test_fork_run_on_the_ethereum_replica_arbitrages_a_sushiswap_gap_for_the_predicted_profit(
    ethereum_replica: Devnet, ethereum: Devnet, workdir: Path
) -> None:
    rpc = ethereum.rpc
    assert rpc is not None
    reg = addresses_for("ethereum")
    tokens = reg.tokens
    # The ArbExecutor checks every V2 callback against the pair address its factory's own
    # init-code hash gives: Uniswap's for uniswap_v2, the fork's for the replica's sushiswap.
    hashes = {
        dex.factory: ethereum_replica.v2_pair_init_code_hashes.get(name, dex.pair_init_code_hash)  # type: ignore[attr-defined]
        for name, dex in reg.v2_dexes().items()
    }
    creation = encode_deployment(
        load_arb_executor_artifact(), reg.v3_dexes()["uniswap_v3"].factory, hashes
    )
    receipt = await _send_as(rpc, AGENT_ACCOUNT, {"data": "0x" + creation.hex()})
    executor = to_checksum_address(receipt["contractAddress"])
    for symbol, amount in (("WETH", 60 * 10**18), ("USDT", 200_000 * 10**6)):
        data = _call("transfer(address,uint256)", ["address", "uint256"], [executor, amount])
        await _send_as(rpc, AGENT_ACCOUNT, {"to": tokens[symbol].address, "data": data})

    tree = replica_tree(
        ethereum,
        workdir,
        tokens=["WETH", "USDT"],
        arb_executor=executor,
        strategies={
            "arbitrage": {
                "enabled": True,
                "dexes": ["uniswap_v2", "sushiswap"],
                "min_profit_usd": 1.0,
                "max_input_usd": 200_000.0,
            }
        },
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    weth_before = await balance_of(rpc, tokens["WETH"].address, executor)
    usdt_before = await balance_of(rpc, tokens["USDT"].address, executor)
    async with running_agent(cfg) as agent:
        quiet = await agent.tick()
        assert quiet.started == 0
        gap = await swap_v2(
            rpc,
            dex="sushiswap",
            router=reg.v2_dexes()["sushiswap"].router02 or "",
            trader=GAPPER,
            path=[tokens["WETH"].address, tokens["USDT"].address],
            amount_in=20 * 10**18,
        )
        report = await agent.tick(gap.block)
        assert report.started == 1, report.rejected
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        fill = fills[0]
        assert fill.profit > 0 and fill.profit == fill.predicted_profit
        record = await agent.parts.journal.get_intent(fill.intent_id)
        assert {hop.dex for hop in record.intent.route} == {"uniswap_v2", "sushiswap"}
    weth_gain = await balance_of(rpc, tokens["WETH"].address, executor) - weth_before
    usdt_gain = await balance_of(rpc, tokens["USDT"].address, executor) - usdt_before
    assert {fill.token_in: fill.profit} == {
        k: v
        for k, v in ((tokens["WETH"].address, weth_gain), (tokens["USDT"].address, usdt_gain))
        if v
    }


async def test_fork_run_on_the_base_replica_fills_a_v3_swap_through_swap_router02(
    base: Devnet, workdir: Path
) -> None:
    assert base.rpc is not None
    reg = addresses_for("base")
    tree = replica_tree(
        base,
        workdir,
        tokens=["WETH", "USDC"],
        # V3 only, so the buy cannot take Base's V2 pool
        strategies={**dca("WETH", "USDC", 4_000), "arbitrage": {"dexes": ["uniswap_v3"]}},
        dexes=["uniswap_v3"],
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    weth_before = await balance_of(base.rpc, reg.weth, AGENT_ACCOUNT)
    async with running_agent(cfg) as agent:
        report = await agent.tick()
        assert report.started == 1, report.rejected
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        fill = fills[0]
        assert fill.tx_hash is not None
    tx = await base.call("eth_getTransactionByHash", [fill.tx_hash])
    assert to_checksum_address(tx["to"]) == reg.v3_dexes()["uniswap_v3"].swap_router02
    assert tx["input"].startswith("0x5ae401dc")  # multicall(uint256 deadline, bytes[])
    assert await balance_of(base.rpc, reg.weth, AGENT_ACCOUNT) - weth_before == fill.amount_out > 0
