"""A crash loop cannot reset the risk limits: after a loss and a SIGKILL of `defi-agent run`,
the restarted agent still refuses trades for the daily loss limit and keeps the equity peak
(so the drawdown it measures is the real one, not zero)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector
from pydantic import SecretStr

from agent.app.build import unlock_signer
from agent.app.rehearsal import fund_and_deploy
from agent.market.portfolio import PORTFOLIO_STATE_KEY
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

BURN = "0x000000000000000000000000000000000000dEaD"
DAILY_LOSS_LIMIT_USD = 0.1


def _transfer(to: str, amount: int) -> str:
    selector = function_signature_to_4byte_selector("transfer(address,uint256)")
    return "0x" + (selector + encode(["address", "uint256"], [to, amount])).hex()


async def test_daily_loss_and_equity_peak_survive_a_sigkill(
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
        risk={"daily_loss_limit_usd": DAILY_LOSS_LIMIT_USD},
        strategies={
            "arbitrage": {
                "enabled": True,
                "dexes": ["uniswap_v2", "sushiswap"],
                "min_profit_usd": 1.0,
                "max_input_usd": 200_000.0,
            },
            # One buy at once, then not for a day: its fee and gas are today's realised loss.
            "dca": {
                "enabled": True,
                "buy_token": "WETH",
                "spend_token": "USDC",
                "amount": 2000,
                "interval_s": 86_400,
                "route": "pools",
            },
        },
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

        async def books() -> dict[str, float]:
            return dict(await journal.get_strategy_state(PORTFOLIO_STATE_KEY) or {})

        async def lost_today() -> bool:
            return bool(await journal.list_fills()) and (
                (await books()).get("realized_pnl_today_usd", 0.0) < -DAILY_LOSS_LIMIT_USD
            )

        await _until(lost_today, proc, workdir)
        (fill,) = await journal.list_fills()  # the DCA buy, and nothing after it
        peak = (await books())["peak_equity_usd"]
        realised = (await books())["realized_pnl_today_usd"]

        # Then 40% of the wallet leaves it (a bad bridge...): a drawdown, short of a halt.
        for symbol in chain.symbols:
            held = await chain.balance(symbol, address)
            token = chain.deployment.tokens[symbol].address
            await chain.send_as(address, token, _transfer(BURN, held * 4 // 10))

        async def marked_down() -> bool:
            history = await journal.equity_history()
            return bool(history) and history[-1].equity_usd < peak * 0.8

        await _until(marked_down, proc, workdir)
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    finally:
        log_file.close()
        await db.dispose()

    # systemd restarts it: same config, same journal.
    restarted = write_config(config_path, tree, environ)
    async with running_agent(restarted, signer=unlock_signer(restarted)) as agent:
        first = await agent.tick()
        view = agent.parts.portfolio.view()
        assert view.peak_equity_usd == pytest.approx(peak)  # not today's lower equity
        assert view.drawdown_pct > 20.0
        assert view.realized_pnl_today_usd == pytest.approx(realised)
        assert first.started == 0

        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert report.opportunities >= 1
        assert report.started == 0
        assert set(report.rejected) == {"daily_loss"}
        assert [f.intent_id for f in await agent.parts.journal.list_fills()] == [fill.intent_id]


async def _until(
    condition: Callable[[], Awaitable[bool]], proc: Process, workdir: Path, timeout_s: float = 60.0
) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            if proc.returncode is not None:
                log = (workdir / "agent.log").read_text()[-3000:]
                raise AssertionError(f"the agent exited with {proc.returncode}: {log}")
            await asyncio.sleep(0.1)
