"""One agent per journal and per wallet: a second `defi-agent run` on the same journal (SQLite
or PostgreSQL) or the same keystore exits 2 naming the first, before it signs anything."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

from pydantic import SecretStr

from agent.app.rehearsal import fund_and_deploy
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.wallet.keystore import create_keystore
from tests.e2e.harness import (
    KEYSTORE_PASSWORD,
    KEYSTORE_PASSWORD_ENV,
    Chain,
    Process,
    running_agent,
    start_agent_run,
    tree_for,
    write_config,
)


async def _run(config: Path, *extra: str) -> tuple[int, str]:
    """`defi-agent run` to its end: (exit code, stderr)."""
    proc = await start_agent_run(
        config,
        {KEYSTORE_PASSWORD_ENV: KEYSTORE_PASSWORD},
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


async def test_a_second_run_on_the_same_journal_or_keystore_exits_2_naming_the_first(
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
    config = workdir / "agent.toml"
    cfg = write_config(config, tree, {KEYSTORE_PASSWORD_ENV: KEYSTORE_PASSWORD})
    db = await init_db(cfg.store.url)
    journal = Journal(session_factory(db))
    log_file = (workdir / "first.log").open("wb")
    try:
        first = await start_agent_run(
            config,
            {KEYSTORE_PASSWORD_ENV: KEYSTORE_PASSWORD},
            stdout=log_file,
        )
        agent_processes.append(first)
        async with asyncio.timeout(60):
            while not await journal.equity_history():  # it ticks: both locks are held
                assert first.returncode is None, (workdir / "first.log").read_text()[-3000:]
                await asyncio.sleep(0.1)
        nonce_before = await chain.rpc.call("eth_getTransactionCount", [address, "latest"])

        # The same config: the journal is taken.
        code, stderr = await _run(config)
        assert code == 2, stderr
        assert "journal" in stderr and "in use by another defi-agent" in stderr
        assert f"pid {first.pid} on host {socket.gethostname()}" in stderr
        assert "Traceback" not in stderr

        # Another journal, the same keystore: the wallet is taken.
        other_tree = {**tree, "store": {"url": f"sqlite+aiosqlite:///{workdir / 'other.db'}"}}
        other = workdir / "other.toml"
        write_config(other, other_tree, {KEYSTORE_PASSWORD_ENV: KEYSTORE_PASSWORD})
        code, stderr = await _run(other)
        assert code == 2, stderr
        assert f"the wallet {address} is in use by another defi-agent" in stderr
        assert f"pid {first.pid}" in stderr

        # Neither signed anything; the first is still running.
        assert await chain.rpc.call("eth_getTransactionCount", [address, "latest"]) == nonce_before
        assert first.returncode is None
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
    finally:
        log_file.close()
        await db.dispose()


async def test_a_second_run_on_the_same_postgresql_journal_exits_2_naming_the_first(
    chain: Chain, workdir: Path, pg_database: str
) -> None:
    tree = chain.tree(workdir)
    tree["store"] = {"url": pg_database}
    config = workdir / "agent.toml"
    cfg = write_config(config, tree, {})
    async with running_agent(cfg) as agent:  # this process holds the journal
        await agent.tick()
        code, stderr = await _run(config, "--mode", "paper")
        assert code == 2, stderr
        assert "in use by another defi-agent" in stderr
        assert f"pid {os.getpid()}" in stderr
        assert "advisory lock" in stderr
        assert "Passw0rd" not in stderr  # the journal URL's password is never quoted
