"""The journal refusing writes for a moment (SQLite locked by another process) fails that one
block, is logged, and never leaves a token pair reserved: the next gap is traded."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.harness import Chain, running_agent, tree_for, wait_for, write_config


async def test_a_locked_journal_costs_one_block_not_the_pair(
    chain: Chain, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="agent.engine.loop")
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=chain.arb_executor,
        tokens=chain.symbols,
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    async with running_agent(cfg) as agent:
        await agent.tick()
        # Another process (say a backup) holds the database's write lock through the next block.
        blocker = sqlite3.connect(workdir / "journal.db", timeout=0, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            gap = await chain.open_gap("sushiswap", usd=60_000.0)
            agent.replay(gap.block)  # hand it over without waiting for a report
            # The store waits out a lock for up to 10 s (busy_timeout) before the write fails.
            await wait_for(
                lambda: any(f"block {gap.block} crashed" in r.getMessage() for r in caplog.records),
                timeout_s=60,
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert agent.parts.engine.report.fills == []
        await asyncio.sleep(0)

        again = await chain.open_gap("uniswap_v2", usd=60_000.0)
        report = await agent.tick(again.block)
        assert report.started == 1, report
        (fill,) = agent.parts.engine.report.fills
        assert fill.profit == fill.predicted_profit > 0
