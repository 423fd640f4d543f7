"""Bundle mode end to end: the real `defi-agent run` process sends an arbitrage as a bundle to
the relay fake (relay requests signed by the reputation key from its own keystore, never the
trading key), is killed while the relay still holds the bundle, and the next start reconciles
it: settled as a fill when the relay included it meanwhile, closed as not included (nothing
moved) when its target blocks passed without it. Neither key's password reaches the log or the
journal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agent.app.build import open_agent
from agent.app.preflight import preflight
from agent.app.rehearsal import fund_and_deploy
from agent.config.models import AgentConfig
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.store.models import IntentStatus, TxStatus
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
from tests.fakes.relay_fake import RelayFake

REPUTATION_PASSWORD_ENV = "E2E_REPUTATION_PASSWORD"
REPUTATION_PASSWORD = "reputation-only e2e password 7c1f"
BUNDLE_BLOCKS = 3


@pytest.mark.parametrize("while_down", ["included", "expired"])
async def test_a_bundle_pending_when_the_agent_is_killed_is_reconciled_at_the_next_start(
    chain: Chain, workdir: Path, agent_processes: list[Process], while_down: str
) -> None:
    async with RelayFake(chain.devnet.rpc_url) as relay:
        relay.paused = True  # the relay holds every bundle: the agent dies with one pending
        cfg, executor, (trader, reputation) = await _bundle_config(chain, workdir, relay.url)
        config_path = workdir / "agent.toml"
        db = await init_db(cfg.store.url)
        journal = Journal(session_factory(db))
        log_path = workdir / "agent.log"
        try:
            with log_path.open("wb") as log_file:
                proc = await start_agent_run(config_path, ENVIRON, stdout=log_file)
                agent_processes.append(proc)

                async def running() -> bool:
                    return bool(await journal.equity_history())

                await _until(running, proc)
                weth_before = await chain.balance("WETH", executor)
                usdc_before = await chain.balance("USDC", executor)
                await chain.open_gap("sushiswap", usd=60_000.0)

                async def bundle_pending() -> bool:
                    return any(
                        tx.status == TxStatus.SENT and tx.bundle_hash is not None
                        for tx in await journal.list_txs()
                    )

                await _until(bundle_pending, proc)
                proc.kill()  # SIGKILL: no shutdown, the bundle still at the relay
                await proc.wait()

            (row,) = await journal.list_non_final()
            methods = [c.method for c in relay.calls]
            assert methods[0] == "eth_callBundle"  # simulated at the relay before it was sent
            assert methods.count("eth_sendBundle") == BUNDLE_BLOCKS
            assert relay.signers == {reputation} and reputation != trader

            if while_down == "included":
                relay.paused = False
                await _until(lambda: _true(bool(relay.included)), None)
            else:
                for _ in range(BUNDLE_BLOCKS + 1):
                    await relay.mine_block()
                relay.paused = False

            restarted = AgentConfig.load(config_path, environ=ENVIRON)
            async with open_agent(restarted, mode="fork") as parts:
                (intent,) = await parts.journal.list_intents()
                tx = await parts.journal.get_tx(row.tx_hash)
                if while_down == "included":
                    assert intent.status == IntentStatus.FILLED
                    fill = await parts.journal.get_fill(intent.intent.id)
                    assert fill is not None and fill.profit == fill.predicted_profit > 0
                    assert relay.included == [(row.bundle_hash, fill.block_number)]
                    assert tx.status == TxStatus.MINED
                else:
                    assert intent.status == IntentStatus.CANCELLED
                    assert "bundle" in (intent.status_detail or "")
                    assert tx.status == TxStatus.DROPPED
                    assert relay.included == []
                    assert await chain.balance("WETH", executor) == weth_before
                    assert await chain.balance("USDC", executor) == usdc_before
                assert await parts.journal.list_non_final() == []
        finally:
            await db.dispose()

    journal_files = [workdir / "journal.db", workdir / "journal.db-wal"]
    journal_bytes = b"".join(f.read_bytes() for f in journal_files if f.is_file())
    logged = log_path.read_text()
    for secret in (REPUTATION_PASSWORD, KEYSTORE_PASSWORD):
        assert secret not in logged
        assert secret.encode() not in journal_bytes


ENVIRON = {KEYSTORE_PASSWORD_ENV: KEYSTORE_PASSWORD, REPUTATION_PASSWORD_ENV: REPUTATION_PASSWORD}


def _keystores(workdir: Path) -> tuple[str, str]:
    """The trading keystore and the reputation keystore, each with its own password."""
    keys = workdir / "keys"
    keys.mkdir()
    trader = create_keystore(keys / "keystore.json", SecretStr(KEYSTORE_PASSWORD), scrypt_n=2**14)
    reputation = create_keystore(
        keys / "reputation.json", SecretStr(REPUTATION_PASSWORD), scrypt_n=2**14
    )
    return trader, reputation


async def _bundle_config(
    chain: Chain, workdir: Path, relay_url: str
) -> tuple[AgentConfig, str, tuple[str, str]]:
    """agent.toml in bundle mode with both keystores; the trading wallet funded, its
    ArbExecutor deployed. (config, executor, (trading address, reputation address))."""
    trader, reputation = _keystores(workdir)
    executor = await fund_and_deploy(chain.rpc, chain.deployment, trader)
    tree = _bundle_tree(chain, workdir, executor, relay_url)
    return write_config(workdir / "agent.toml", tree, ENVIRON), executor, (trader, reputation)


def _bundle_tree(chain: Chain, workdir: Path, executor: str, relay_url: str) -> dict[str, Any]:
    keys = workdir / "keys"
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=executor,
        tokens=chain.symbols,
        wallet={"keystore": str(keys / "keystore.json"), "password_env": KEYSTORE_PASSWORD_ENV},
    )
    tree["chain"].update(
        submission="bundle",
        relay_urls=[relay_url],
        bundle_blocks=BUNDLE_BLOCKS,
        reputation_keystore=str(keys / "reputation.json"),
        reputation_password_env=REPUTATION_PASSWORD_ENV,
    )
    return tree


@pytest.mark.parametrize("mistake", ["no reputation password", "the trading key copied"])
async def test_a_bundle_mode_mistake_exits_2_naming_the_field(
    chain: Chain, workdir: Path, agent_processes: list[Process], mistake: str
) -> None:
    await _bundle_config(chain, workdir, "http://127.0.0.1:9")
    config_path = workdir / "agent.toml"
    environ = dict(ENVIRON)
    if mistake == "no reputation password":
        del environ[REPUTATION_PASSWORD_ENV]
        expected = f"chain.reputation_password_env: {REPUTATION_PASSWORD_ENV} is not set"
    else:  # the trading keystore under the reputation keystore's name
        reputation = workdir / "keys" / "reputation.json"
        reputation.write_bytes((workdir / "keys" / "keystore.json").read_bytes())
        reputation.chmod(0o600)
        environ[REPUTATION_PASSWORD_ENV] = KEYSTORE_PASSWORD
        expected = "chain.reputation_keystore: holds the trading key"
    proc = await start_agent_run(config_path, environ, stdout=asyncio.subprocess.PIPE)
    agent_processes.append(proc)
    output = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 2, output[-2000:]
    assert expected in output
    assert "Traceback" not in output


async def _true(value: bool) -> bool:
    return value


async def _until(
    condition: Callable[[], Awaitable[bool]], proc: Process | None, timeout_s: float = 60.0
) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            assert proc is None or proc.returncode is None, f"the agent exited: {proc.returncode}"
            await asyncio.sleep(0.1)


async def test_preflight_shows_the_reputation_key_and_refuses_the_trading_key(
    chain: Chain, workdir: Path
) -> None:
    cfg, _, (trader, reputation) = await _bundle_config(chain, workdir, "http://127.0.0.1:9")

    checks = {c.name: c for c in (await preflight(cfg)).checks}

    assert checks["relay reputation key"].ok
    assert reputation in checks["relay reputation key"].detail
    copied = workdir / "keys" / "reputation.json"
    copied.unlink()
    copied.write_bytes((workdir / "keys" / "keystore.json").read_bytes())
    report = await preflight(cfg)
    (failed,) = [c for c in report.failed if c.name == "relay reputation key"]
    assert f"{trader} is the trading key" in failed.detail
