"""Tokens that behave like real ones, traded by the whole agent on the Ethereum replica (fork
mode, no deployment file):

* USDT (approve from non-zero to non-zero reverts, no return values) with a leftover allowance
  to every router: the next swap resets it to 0, approves exactly, and fills;
* PAXG (a fee on every transfer): no revert loop; the swap goes through Router02's
  fee-supporting function and fills at or above the minimum computed from the measured amount;
* WBTC with the agent's wallet on its blocklist: the trade fails without a transaction, the
  token cools down, one alert arrives and no later block tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from agent import events as ev
from agent.chain.abi import erc20_allowance
from agent.chain.registry import addresses_for
from agent.devnet import Devnet
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.replica import TOKEN_ISSUER
from agent.devnet.traders import balance_of
from agent.execution.common import SEL_V2_SWAP_FEE_ON_TRANSFER, min_amount_out
from agent.store.models import IntentStatus
from tests.conftest import reverted
from tests.e2e.harness import AGENT_ACCOUNT, running_agent, wait_for, write_config
from tests.e2e.test_replica_e2e import dca, replica_tree
from tests.fakes.discord_fake import DiscordWebhookFake

PAXG = "0x45804880De22913dAFE09f4980848ECE6EcbAf78"
SLIPPAGE_BPS = 30


def _call(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def _send_as(rpc: JsonRpc, sender: str, to: str, data: str) -> None:
    await rpc.call("anvil_impersonateAccount", [sender])
    tx_hash = await rpc.call(
        "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(500_000)}]
    )
    receipt: dict[str, Any] | None = None
    while receipt is None:
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    assert int(receipt["status"], 16) == 1, receipt


@pytest.fixture
async def ethereum(ethereum_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(ethereum_replica):
        yield ethereum_replica


def _routers() -> list[str]:
    reg = addresses_for("ethereum")
    routers = [d.router02 for d in reg.v2_dexes().values() if d.router02]
    return routers + [r for d in reg.v3_dexes().values() if (r := d.router)]


async def test_usdt_with_a_leftover_allowance_is_reset_and_the_next_swap_fills(
    ethereum: Devnet, workdir: Path
) -> None:
    assert ethereum.rpc is not None
    usdt = addresses_for("ethereum").tokens["USDT"].address
    for router in _routers():  # what a refused swap leaves behind
        await _send_as(
            ethereum.rpc,
            AGENT_ACCOUNT,
            usdt,
            _call("approve(address,uint256)", ["address", "uint256"], [router, 7]),
        )
    tree = replica_tree(
        ethereum, workdir, tokens=["WETH", "USDC", "USDT"], strategies=dca("WETH", "USDT", 4_000)
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    async with running_agent(cfg) as agent:
        report = await agent.tick()
        assert report.started == 1, report.rejected
        (fill,) = agent.parts.engine.report.fills
        assert fill.amount_in == 4_000 * 10**6
        purposes = [t.purpose for t in await agent.parts.journal.txs_for_intent(fill.intent_id)]
        assert purposes == ["approve", "approve", "swap"]  # to 0, then exactly amount_in
        swap = (await agent.parts.journal.txs_for_intent(fill.intent_id))[-1]
        router = (await agent.parts.w3.eth.get_transaction(swap.tx_hash))["to"]  # type: ignore[arg-type]
        # The exact approval was spent by the swap: nothing is left outstanding there.
        assert await erc20_allowance(agent.parts.w3, usdt, AGENT_ACCOUNT, router) == 0


async def test_a_fee_on_transfer_token_fills_at_or_above_the_measured_minimum(
    ethereum: Devnet, workdir: Path
) -> None:
    assert ethereum.rpc is not None
    weth = addresses_for("ethereum").tokens["WETH"].address
    tree = replica_tree(
        ethereum,
        workdir,
        tokens=["WETH", "USDC", PAXG],
        strategies=dca("WETH", "PAXG", 3),
    )
    tree["execution"]["slippage_bps"] = SLIPPAGE_BPS
    cfg = write_config(workdir / "agent.toml", tree, {})
    paxg_before = await balance_of(ethereum.rpc, PAXG, AGENT_ACCOUNT)
    weth_before = await balance_of(ethereum.rpc, weth, AGENT_ACCOUNT)
    async with running_agent(cfg) as agent:
        report = await agent.tick()
        assert report.started == 1, report.rejected
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        fill = fills[0]
        swap = (await agent.parts.journal.txs_for_intent(fill.intent_id))[-1]
        swap_tx = await agent.parts.w3.eth.get_transaction(swap.tx_hash)  # type: ignore[arg-type]
        calldata = bytes(swap_tx["input"])
        assert calldata[:4] == SEL_V2_SWAP_FEE_ON_TRANSFER
        # The pair receives 99.98 % of the input (2 bps fee): the minimum is scaled by that.
        measured_minimum = min_amount_out(
            fill.predicted_amount_out * 999_800 // 1_000_000, SLIPPAGE_BPS
        )
        assert int.from_bytes(calldata[36:68], "big") == measured_minimum
        assert fill.amount_out >= measured_minimum
        # Less than the fee-less prediction: the fee really was taken on the way in.
        assert fill.amount_out < fill.predicted_amount_out
    assert paxg_before - await balance_of(ethereum.rpc, PAXG, AGENT_ACCOUNT) == 3 * 10**18
    assert await balance_of(ethereum.rpc, weth, AGENT_ACCOUNT) - weth_before == fill.amount_out


async def test_a_token_that_blocks_the_wallet_is_cooled_down_and_alerted_once(
    ethereum: Devnet, workdir: Path, discord: DiscordWebhookFake
) -> None:
    assert ethereum.rpc is not None
    wbtc = addresses_for("ethereum").tokens["WBTC"].address
    await _send_as(
        ethereum.rpc,
        TOKEN_ISSUER,
        wbtc,
        _call("setBlocked(address,bool)", ["address", "bool"], [AGENT_ACCOUNT, True]),
    )
    tree = replica_tree(
        ethereum, workdir, tokens=["WETH", "USDT", "WBTC"], strategies=dca("WBTC", "USDT", 2_000)
    )
    tree["strategies"]["dca"]["interval_s"] = 1  # due again at every block
    tree["alerts"]["discord"] = {"enabled": True, "webhook_url": "${DISCORD_WEBHOOK_URL}"}
    cfg = write_config(workdir / "agent.toml", tree, {"DISCORD_WEBHOOK_URL": discord.webhook_url})
    refused: list[ev.TokenRefused] = []
    async with running_agent(cfg) as agent:
        agent.parts.events.subscribe(refused.append, ev.TokenRefused)
        first = await agent.tick()
        assert first.started == 1, first.rejected
        (failure,) = agent.parts.engine.report.failures
        assert "account is blocked" in failure[1]
        record = await agent.parts.journal.get_intent(failure[0])
        assert record.status == IntentStatus.FAILED
        assert await agent.parts.journal.txs_for_intent(failure[0]) == []  # nothing was sent
        for _ in range(3):
            await asyncio.sleep(1.1)  # the next DCA slot (every second) is due
            await ethereum.rpc.call("evm_mine", [])
            later = await agent.tick()
            assert later.started == 0
            assert later.rejected.get("cooldown", 0) >= 1, later.rejected
        assert len(agent.parts.engine.report.failures) == 1  # never retried
        assert [r.token for r in refused] == [wbtc]

        def token_alerts() -> list[dict[str, Any]]:
            return [
                e
                for body in discord.delivered
                for e in body.get("embeds", [])
                if e.get("title") == "Token refused: WBTC"
            ]

        await wait_for(lambda: bool(token_alerts()))
    assert len(token_alerts()) == 1
    assert not [
        e
        for body in discord.delivered
        for e in body.get("embeds", [])
        if str(e.get("title", "")).startswith("Trade reverted")
    ]
