"""`defi-agent pause` while a swap waits for its approval: the swap is never signed.

The running agent (fork mode, the grid on the devnet) starts a buy; its exact approval is
broadcast and sits in the mempool (the devnet stops automining for that moment). The operator
runs `defi-agent pause` in another process; the approval is then mined. The risk gate's last
look, immediately before the swap would be signed, re-reads the kill switch: the swap is
refused, nothing more leaves the wallet, and the journal says why.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.store.models import IntentStatus, TxStatus
from tests.e2e.harness import AGENT_ACCOUNT, Chain, running_agent, wait_for, write_config
from tests.e2e.test_grid_e2e import grid_tree, move_price

ROOT = Path(__file__).resolve().parents[2]


async def test_pause_while_a_swap_waits_for_its_approval_stops_the_swap(
    chain: Chain, workdir: Path
) -> None:
    config_path = workdir / "agent.toml"
    cfg = write_config(config_path, grid_tree(chain, workdir), {})
    weth_before = await chain.balance("WETH", AGENT_ACCOUNT)
    usdc_before = await chain.balance("USDC", AGENT_ACCOUNT)

    async with running_agent(cfg) as agent:
        journal = agent.parts.journal
        assert (await agent.tick()).started == 0  # first price: the levels below are armed
        swap = await move_price(chain, 2_950)  # falls through 2,975: the grid buys lot 2
        nonce_before = int(
            await chain.rpc.call("eth_getTransactionCount", [AGENT_ACCOUNT, "latest"]), 16
        )
        await chain.rpc.call("evm_setAutomine", [False])
        try:
            agent.replay(swap.block)  # the engine sees the block; the buy starts
            approvals: list[str] = []

            async def approval_waiting() -> bool:
                sent = await journal.list_txs([TxStatus.SENT])
                approvals[:] = [tx.tx_hash for tx in sent if tx.purpose == "approve"]
                return bool(approvals)

            async with asyncio.timeout(30):
                while not await approval_waiting():
                    await asyncio.sleep(0.05)

            # the operator pauses from the shell while the approval is unmined
            pause = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                "pause",
                "--config",
                str(config_path),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(pause.communicate(), 60)
            assert pause.returncode == 0, stderr.decode()
            await chain.rpc.call("evm_mine")  # the approval is mined; the swap would be next
        finally:
            await chain.rpc.call("evm_setAutomine", [True])
        await wait_for(lambda: agent.parts.engine.trades_in_flight == 0)

        (intent,) = await journal.list_intents()
        assert intent.status == IntentStatus.FAILED
        assert intent.status_detail is not None
        assert "paused" in intent.status_detail and "defi-agent pause" in intent.status_detail
        txs = await journal.txs_for_intent(intent.intent.id)
        assert {tx.purpose for tx in txs} == {"approve"}  # no swap was ever signed
        assert [tx.status for tx in txs].count(TxStatus.MINED) == 1
        assert await journal.count_rejections("paused") >= 1

    # on chain: only the approval went out; not a unit of either token moved
    nonce_after = int(
        await chain.rpc.call("eth_getTransactionCount", [AGENT_ACCOUNT, "latest"]), 16
    )
    assert nonce_after == nonce_before + 1
    assert await chain.balance("WETH", AGENT_ACCOUNT) == weth_before
    assert await chain.balance("USDC", AGENT_ACCOUNT) == usdc_before
