"""SIGTERM while a trade is in flight: `defi-agent run` exits 0 promptly, the journal holds the
signed transaction, and the next start reconciles the trade to a final fill."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import SecretStr

from agent.app.build import open_agent
from agent.app.rehearsal import fund_and_deploy
from agent.cli import main as cli_main
from agent.config.models import AgentConfig
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.store.models import FINAL_INTENT_STATUSES, IntentStatus, TxStatus
from agent.wallet.keystore import create_keystore
from tests.e2e.harness import (
    KEYSTORE_PASSWORD,
    KEYSTORE_PASSWORD_ENV,
    Chain,
    Process,
    start_agent_run,
    tree_for,
    write_config,
)


async def test_sigterm_during_a_trade_exits_0_and_leaves_the_journal_reconcilable(
    chain: Chain, workdir: Path, agent_processes: list[Process]
) -> None:
    keystore = workdir / "keys" / "keystore.json"
    keystore.parent.mkdir()
    address = create_keystore(keystore, SecretStr(KEYSTORE_PASSWORD), scrypt_n=2**14)
    executor = await fund_and_deploy(chain.rpc, chain.deployment, address)
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=executor,
        tokens=chain.symbols,
        wallet={"keystore": str(keystore), "password_env": KEYSTORE_PASSWORD_ENV},
    )
    environ = {KEYSTORE_PASSWORD_ENV: KEYSTORE_PASSWORD}
    config_path = workdir / "agent.toml"
    cfg = write_config(config_path, tree, environ)
    db = await init_db(cfg.store.url)
    journal = Journal(session_factory(db))
    log_file = (workdir / "agent.log").open("wb")
    try:
        proc = await start_agent_run(
            config_path,
            environ,
            stdout=log_file,
        )
        agent_processes.append(proc)

        async def running() -> bool:
            return bool(await journal.equity_history())

        await _until(running, proc)  # it ticked: connected, reconciled, trading

        # Blocks now come only when the test mines one: the agent's trade will sit in the pool.
        await chain.rpc.call("evm_setAutomine", [False])
        gap = await chain.open_gap("sushiswap", usd=60_000.0)

        async def trade_in_flight() -> bool:
            return any(tx.status == TxStatus.SENT for tx in await journal.list_txs())

        await _until(trade_in_flight, proc)
        (intent,) = await journal.list_intents()
        assert intent.status == IntentStatus.SUBMITTED

        proc.send_signal(signal.SIGTERM)
        # The default shutdown grace (the trade cannot finish: nothing mines it) + closing.
        returncode = await asyncio.wait_for(proc.wait(), 10)  # raises if it takes longer
        assert returncode == 0, (workdir / "agent.log").read_text()[-3000:]

        # Consistent: nothing final was lost, and the unfinished trade's signed tx is journaled.
        intents = await journal.list_intents()
        for record in intents:
            txs = await journal.txs_for_intent(record.intent.id)
            assert record.status in FINAL_INTENT_STATUSES or any(tx.raw_tx for tx in txs)
        (pending,) = await journal.list_non_final()
        assert pending.status == TxStatus.SENT and pending.raw_tx

        # The trade lands while the agent is down; the next start settles it from the receipt.
        await chain.rpc.call("evm_mine")
        restarted = AgentConfig.load(config_path, environ=environ)
        async with open_agent(restarted, mode="fork") as parts:
            record = await parts.journal.get_intent(intent.intent.id)
            assert record.status == IntentStatus.FILLED
            fill = await parts.journal.get_fill(intent.intent.id)
            assert fill is not None and fill.block_number == gap.block + 1
            assert fill.profit == fill.predicted_profit > 0
            assert await parts.journal.list_non_final() == []

        # What the operator then reads: `defi-agent report` from the same journal (the CLI's
        # own entry point, in a thread: it runs its own event loop), for the run that made the
        # trade: the reconciled fill belongs to it, not to the restart that settled it.
        stopped, restart = await journal.list_runs()
        assert stopped.stop_reason == "stopped: signal" and restart.stopped_at is not None
        assert await journal.fill_runs() == {intent.intent.id: stopped.id}
        argv = ["report", "--config", str(config_path), "--out", str(workdir / "report")]
        argv += ["--run", str(stopped.id)]
        assert await asyncio.to_thread(cli_main, argv) == 0
        summary = json.loads((workdir / "report" / "report.json").read_text())
        assert summary["fills"] == 1 and summary["transactions_not_final"] == 0
        assert summary["intents"] == {"filled": 1}
    finally:
        await chain.rpc.call("evm_setAutomine", [True])
        log_file.close()
        await db.dispose()


async def _until(
    condition: Callable[[], Awaitable[bool]], proc: Process, timeout_s: float = 60.0
) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            assert proc.returncode is None, f"the agent exited with {proc.returncode}"
            await asyncio.sleep(0.1)
