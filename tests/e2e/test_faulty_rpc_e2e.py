"""The whole agent behind an RPC endpoint that fails 30% of requests (500, 429, resets,
timeouts, truncated and garbled bodies): it never crashes, keeps ticking, still trades a gap
for exactly the predicted profit, and leaves no journal row unsettled."""

from __future__ import annotations

from pathlib import Path

from agent.store.models import IntentStatus
from tests.e2e.harness import Chain, running_agent, tree_for, write_config
from tests.fakes.rpc_proxy import FaultyRpcProxy


async def test_agent_survives_a_faulty_endpoint_and_still_trades_exactly(
    chain: Chain, workdir: Path
) -> None:
    async with FaultyRpcProxy(chain.devnet.rpc_url, failure_rate=0.3, seed=3) as proxy:
        tree = tree_for(
            rpc_url=proxy.url,
            deployment_file=chain.deployment_file,
            workdir=workdir,
            arb_executor=chain.arb_executor,
            tokens=chain.symbols,
        )
        tree["chain"]["request_timeout_s"] = 2.0
        cfg = write_config(workdir / "agent.toml", tree, {})
        async with running_agent(cfg) as agent:
            for _ in range(4):  # quiet blocks through the faults: ticks, no crash
                await chain.devnet.mine(1)
                await agent.tick(await chain.block_number(), timeout_s=60)
            for _ in range(3):
                gap = await chain.open_gap("sushiswap", usd=60_000.0)
                await agent.tick(gap.block, timeout_s=90)
            engine = agent.parts.engine
            journal = agent.parts.journal

            assert sum(proxy.injected.values()) > 0, "the proxy must really have failed requests"
            assert len(engine.report.ticks) >= 5
            # Every fill is exact; any trade the faults spoiled failed cleanly.
            assert engine.report.fills, engine.report.failures
            for fill in engine.report.fills:
                assert fill.profit == fill.predicted_profit > 0
            # No trade went out twice: one trade transaction per intent at most.
            for record in await journal.list_intents():
                trades = [
                    t for t in await journal.txs_for_intent(record.intent.id) if t.purpose == "arb"
                ]
                assert len({t.nonce for t in trades}) <= 1, trades
            assert await journal.list_non_final() == []
            final = {IntentStatus.FILLED, IntentStatus.FAILED, IntentStatus.REVERTED}
            assert all(r.status in final for r in await journal.list_intents())
