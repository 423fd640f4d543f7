"""The whole agent on a legacy-gas chain: Anvil on Berlin (before London: no base fee, no
EIP-1559). The gas oracle prices gas from what recent blocks paid, and the agent's DCA buy goes
out as a type-0 transaction that fills."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.devnet import Devnet
from agent.devnet.traders import balance_of
from agent.store.models import IntentStatus
from tests.e2e.harness import AGENT_ACCOUNT, running_agent, tree_for, write_config


@pytest.fixture
async def berlin(tmp_path: Path) -> AsyncIterator[Devnet]:
    async with Devnet(hardfork="berlin", deployments_dir=tmp_path / "deployments") as node:
        yield node


async def test_the_agent_trades_with_type_0_transactions_on_a_legacy_gas_chain(
    berlin: Devnet, workdir: Path
) -> None:
    assert berlin.rpc is not None
    latest = await berlin.call("eth_getBlockByNumber", ["latest", False])
    assert latest.get("baseFeePerGas") is None  # a legacy-gas chain
    tree = tree_for(
        rpc_url=berlin.rpc_url,
        deployment_file=workdir / "deployments" / "devnet.json",
        workdir=workdir,
        arb_executor="",
        tokens=["WETH", "USDC"],
        strategies={
            "dca": {
                "enabled": True,
                "buy_token": "WETH",
                "spend_token": "USDC",
                "amount": 3_000,
                "interval_s": 3_600,
                "route": "pools",
            }
        },
    )
    del tree["execution"]["arb_executor"]
    cfg = write_config(workdir / "agent.toml", tree, {})
    weth = berlin.tokens["WETH"].address
    before = await balance_of(berlin.rpc, weth, AGENT_ACCOUNT)
    async with running_agent(cfg) as agent:
        report = await agent.tick()
        assert report.started == 1, report.rejected
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        (fill,) = fills
        record = await agent.parts.journal.get_intent(fill.intent_id)
        assert record.status == IntentStatus.FILLED
        txs = await agent.parts.journal.txs_for_intent(fill.intent_id)
    assert fill.tx_hash is not None
    # Every transaction of the trade (the approval and the swap) is type 0 on chain.
    for tx in txs:
        mined = await berlin.call("eth_getTransactionByHash", [tx.tx_hash])
        assert int(mined["type"], 16) == 0, mined
        receipt = await berlin.call("eth_getTransactionReceipt", [tx.tx_hash])
        assert int(receipt["status"], 16) == 1
    assert await balance_of(berlin.rpc, weth, AGENT_ACCOUNT) - before == fill.amount_out > 0
