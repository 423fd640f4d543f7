"""A block delivered twice (a websocket reconnect replays the head) is not acted on again: no
doomed second trade, no revert cooldown keeping the agent from the next gap."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import Chain, running_agent, tree_for, write_config


async def test_a_replayed_block_neither_trades_twice_nor_blocks_the_next_gap(
    chain: Chain, workdir: Path
) -> None:
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=chain.arb_executor,
        tokens=chain.symbols,
        risk={"revert_cooldown_s": 600.0},  # a failed trade would bench the pair for 10 min
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    async with running_agent(cfg) as agent:
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        first = await agent.tick(gap.block)
        assert first.started == 1

        agent.replay(gap.block)  # the same head again, before the next one
        again = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(again.block)

        engine = agent.parts.engine
        assert engine.report.failures == []  # the replay sent nothing
        assert [t.block for t in engine.report.ticks] == [gap.block, again.block]
        assert report.started == 1, report
        assert len(engine.report.fills) == 2
        assert all(f.profit == f.predicted_profit > 0 for f in engine.report.fills)
