"""Paper mode end to end on the devnet, with no keystore anywhere: DCA's buy is filled from exact
local math, and that amount is exactly what the chain itself says the same swap returns at the
fill's block (the DEX's quoter, and an ``eth_call`` of the router swap from a funded wallet).
The virtual portfolio lives in the journal and survives a restart; the fill is alerted like a
live one. ``defi-agent run --mode paper`` as a process: SIGTERM stops it with exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from agent.config.models import AgentConfig
from agent.devnet.node import DEV_ACCOUNTS
from agent.execution import encode_router_swap
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.store.models import IntentStatus
from agent.types import Intent
from tests.e2e.harness import (
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    running_agent,
    wait_for,
    write_config,
)
from tests.fakes.telegram_fake import TelegramFake

PAPER_USDC = 10_000
PAPER_WETH = 1
DCA_USDC = 1_500
NO_PASSWORD_ENV = "E2E_PAPER_NO_SUCH_PASSWORD"
FAR_DEADLINE = 2**40
CHECKER = DEV_ACCOUNTS[7][0]  # a funded dev account that replays the swap with eth_call


def paper_tree(chain: Chain, workdir: Path, telegram_url: str | None = None) -> dict[str, Any]:
    """A paper-mode agent.toml: DCA buys WETH with 1,500 USDC now and then hourly; the wallet
    section names a keystore that does not exist and a password variable nobody sets."""
    tree = chain.tree(
        workdir,
        telegram_url=telegram_url,
        strategies={
            "dca": {
                "enabled": True,
                "buy_token": "WETH",
                "spend_token": "USDC",
                "amount": DCA_USDC,
                "interval_s": 3_600,
                "route": "pools",
            }
        },
        wallet={
            "keystore": str(workdir / "keys" / "no-such-keystore.json"),
            "password_env": NO_PASSWORD_ENV,
        },
    )
    execution = tree["execution"]
    execution["mode"] = "paper"
    del execution["arb_executor"]
    execution["paper_balances"] = {"USDC": str(PAPER_USDC), "WETH": str(PAPER_WETH)}
    return tree


def _call(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def chain_quote(chain: Chain, intent: Intent, block: int) -> int:
    """The DEX's own answer for the intent's single hop at ``block``: Router02.getAmountsOut
    (V2) or QuoterV2.quoteExactInputSingle (V3)."""
    (hop,) = intent.route
    a = chain.deployment.addresses
    if hop.kind == "v2":
        data = _call(
            "getAmountsOut(uint256,address[])",
            ["uint256", "address[]"],
            [intent.amount_in, [hop.token_in, hop.token_out]],
        )
        raw = await chain.rpc.call(
            "eth_call", [{"to": a[f"{hop.dex}.router"], "data": data}, hex(block)]
        )
        (amounts,) = decode(["uint256[]"], bytes.fromhex(raw[2:]))
        return int(amounts[-1])
    data = _call(
        "quoteExactInputSingle((address,address,uint256,uint24,uint160))",
        ["(address,address,uint256,uint24,uint160)"],
        [(hop.token_in, hop.token_out, intent.amount_in, hop.fee_pips, 0)],
    )
    raw = await chain.rpc.call(
        "eth_call", [{"to": a["uniswap_v3.quoter_v2"], "data": data}, hex(block)]
    )
    return int(raw[2:66], 16)


async def router_swap_eth_call(chain: Chain, intent: Intent) -> int:
    """``eth_call`` of the very router swap from a funded wallet (after its exact approval)."""
    (hop,) = intent.route
    a = chain.deployment.addresses
    router = a[f"{hop.dex}.router"] if hop.kind == "v2" else a["uniswap_v3.swap_router"]
    approve = _call("approve(address,uint256)", ["address", "uint256"], [router, intent.amount_in])
    await chain.send_as(CHECKER, intent.token_in, approve)
    data = "0x" + encode_router_swap(intent, CHECKER, 0, FAR_DEADLINE).hex()
    raw = await chain.rpc.call(
        "eth_call", [{"from": CHECKER, "to": router, "data": data}, "latest"]
    )
    if hop.kind == "v2":
        (amounts,) = decode(["uint256[]"], bytes.fromhex(raw[2:]))
        return int(amounts[-1])
    return int(raw[2:66], 16)


async def test_paper_fill_equals_the_chains_answer_and_the_portfolio_survives_a_restart(
    chain: Chain, telegram: TelegramFake, workdir: Path
) -> None:
    tree = paper_tree(chain, workdir, telegram_url=telegram.base_url)
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})
    assert not cfg.wallet.keystore.exists() and cfg.keystore_password() is None
    usdc = chain.deployment.tokens["USDC"].address
    weth = chain.deployment.tokens["WETH"].address

    async with running_agent(cfg, mode="paper") as agent:
        assert agent.parts.account is None  # no wallet at all
        block = await chain.block_number()
        report = await agent.tick(block)
        assert report.started == 1, report.rejected
        (fill,) = agent.parts.engine.report.fills
        assert fill.mode == "paper" and fill.tx_hash is None
        assert await chain.block_number() == block  # nothing was sent to the chain
        journal = agent.parts.journal
        record = await journal.get_intent(fill.intent_id)
        assert record.status == IntentStatus.FILLED and record.mode == "paper"
        intent = record.intent
        assert (intent.token_in, intent.token_out, intent.amount_in) == (
            usdc,
            weth,
            DCA_USDC * 10**6,
        )

        # Exact local math == the DEX's own quote at the fill's block == an eth_call of the swap.
        assert fill.block_number == block
        assert fill.amount_out == fill.predicted_amount_out
        assert fill.amount_out == await chain_quote(chain, intent, block)
        assert fill.amount_out == await router_swap_eth_call(chain, intent)

        # The virtual portfolio moved in the journal, exactly.
        paper = {usdc: (PAPER_USDC - DCA_USDC) * 10**6, weth: PAPER_WETH * 10**18 + fill.amount_out}
        assert await journal.paper_balances() == paper
        journaled = await journal.get_fill(fill.intent_id)
        assert journaled is not None and journaled.amount_out == fill.amount_out

        # Alerted like a live trade.
        await wait_for(lambda: bool(telegram.texts_to(OPERATOR_CHAT_ID, "Trade filled")))
        assert fill.intent_id in telegram.texts_to(OPERATOR_CHAT_ID, "Trade filled")[0]

    # A restart on the same journal: the portfolio is read back, not seeded again, and the DCA
    # schedule knows it already bought this hour.
    async with running_agent(cfg, mode="paper") as agent:
        report = await agent.tick()
        assert report.started == 0
        assert await agent.parts.journal.paper_balances() == paper
        assert dict(agent.parts.portfolio.view().balances) == paper
        assert len(await agent.parts.journal.list_fills(mode="paper")) == 1
        equity = await agent.parts.journal.equity_history(mode="paper")
        assert len(equity) >= 2 and equity[-1].equity_usd > 0


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Every `defi-agent` process a test starts is gone when it ends."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def journal_of(workdir: Path) -> AsyncIterator[Callable[[AgentConfig], Awaitable[Journal]]]:
    engines: list[Any] = []

    async def open_journal(cfg: AgentConfig) -> Journal:
        engine = await init_db(cfg.store.url)  # migrated before the agent process starts
        engines.append(engine)
        return Journal(session_factory(engine))

    yield open_journal
    for engine in engines:
        await engine.dispose()


async def test_cli_paper_run_needs_no_keystore_and_stops_on_sigterm_with_exit_0(
    chain: Chain,
    workdir: Path,
    processes: list[asyncio.subprocess.Process],
    journal_of: Callable[[AgentConfig], Awaitable[Journal]],
) -> None:
    config_path = workdir / "agent.toml"
    cfg = write_config(config_path, paper_tree(chain, workdir), {})
    journal = await journal_of(cfg)
    environ = {k: v for k, v in os.environ.items() if k != NO_PASSWORD_ENV}
    log_path = workdir / "agent.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "agent", "run", "--mode", "paper", "--config", str(config_path)),
            env=environ,
            cwd=workdir,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
        processes.append(proc)

        async def until(condition: Callable[[], Awaitable[bool]]) -> None:
            async with asyncio.timeout(60):
                while not await condition():
                    assert proc.returncode is None, log_path.read_text()[-3000:]
                    await asyncio.sleep(0.1)

        async def filled() -> bool:
            return bool(await journal.list_fills(mode="paper"))

        await until(filled)  # the first block: DCA bought on paper
        first = len(await journal.equity_history(mode="paper"))
        await chain.devnet.mine(2)  # a few more blocks to tick through

        async def ticked_on() -> bool:
            return len(await journal.equity_history(mode="paper")) >= first + 1

        await until(ticked_on)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            returncode = await proc.wait()
    output = log_path.read_text()
    assert returncode == 0, output[-3000:]
    assert "stopped after" in output and "1 trades" in output
    (fill,) = await journal.list_fills(mode="paper")
    assert fill.tx_hash is None and fill.amount_out == fill.predicted_amount_out > 0
    usdc = chain.deployment.tokens["USDC"].address
    assert (await journal.paper_balances())[usdc] == (PAPER_USDC - DCA_USDC) * 10**6
    assert not (workdir / "keys").exists()  # nothing was created in place of a keystore
