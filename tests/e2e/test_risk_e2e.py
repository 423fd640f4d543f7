"""Risk end to end: the gas cap refuses (journaled), a drawdown past the limit halts trading
until `defi-agent resume`, and a strategy that raises never stops the others."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.store.models import IntentStatus
from agent.types import Opportunity
from strategies.base import BaseStrategy, StrategyParams
from tests.e2e.harness import (
    AGENT_ACCOUNT,
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    running_agent,
    wait_for,
    write_config,
)
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.telegram_fake import TelegramFake

GWEI = 10**9
BURN = "0x000000000000000000000000000000000000dEaD"


async def test_gas_price_above_the_cap_refuses_the_trade_and_journals_why(
    chain: Chain, workdir: Path
) -> None:
    tree = chain.tree(workdir, risk={"max_gas_price_gwei": 10})
    cfg = write_config(workdir / "agent.toml", tree, {})
    weth_before = await chain.balance("WETH", chain.arb_executor)

    async with running_agent(cfg) as agent:
        await agent.tick()
        # Congestion: the block carrying the gap has a 60 gwei base fee (cap: 10 gwei).
        await chain.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(60 * GWEI)])
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)

        assert report.opportunities >= 1
        assert report.started == 0
        assert set(report.rejected) == {"gas_price_cap"}
        journal = agent.parts.journal
        assert await journal.count_rejections("gas_price_cap") == report.opportunities
        assert await journal.list_intents() == []
    assert await chain.balance("WETH", chain.arb_executor) == weth_before


class BrokenStrategy(BaseStrategy[StrategyParams]):
    """A user's strategy with a bug: it raises on every block."""

    name: ClassVar[str] = "broken"

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        raise ZeroDivisionError("a bug in someone's strategy")


async def test_a_strategy_that_raises_does_not_stop_the_loop_or_the_other_strategies(
    chain: Chain, workdir: Path, discord: DiscordWebhookFake
) -> None:
    tree = chain.tree(workdir, discord_url=discord.webhook_url)
    cfg = write_config(workdir / "agent.toml", tree, {"DISCORD_WEBHOOK_URL": discord.webhook_url})
    async with running_agent(cfg, extra_strategies=[BrokenStrategy(StrategyParams())]) as agent:
        first = await agent.tick()
        assert first.strategy_errors == 1
        gap = await chain.open_gap("uniswap_v2", usd=60_000.0)
        report = await agent.tick(gap.block)

        assert report.strategy_errors == 1  # raised again, and the block was still processed
        assert report.started == 1
        (fill,) = agent.parts.engine.report.fills
        assert fill.profit == fill.predicted_profit > 0
        exposition = agent.parts.metrics.exposition().decode()
        assert any(
            line.startswith("defi_agent_strategy_errors_total{")
            and 'strategy="broken"' in line
            and 'error_class="ZeroDivisionError"' in line
            and line.endswith(" 2.0")
            for line in exposition.splitlines()
        ), [line for line in exposition.splitlines() if "broken" in line]

        def strategy_alerts() -> list[dict[str, object]]:
            return [
                e
                for body in discord.delivered
                for e in body.get("embeds", [])
                if e.get("title") == "Strategy error: broken"
            ]

        await wait_for(lambda: bool(strategy_alerts()))
        fields = {f["name"]: f["value"] for f in strategy_alerts()[0]["fields"]}  # type: ignore[attr-defined]
        assert fields["error"] == "ZeroDivisionError"
        assert "someone's strategy" not in str(discord.delivered)  # only the class travels


def _transfer(to: str, amount: int) -> str:
    selector = function_signature_to_4byte_selector("transfer(address,uint256)")
    return "0x" + (selector + encode(["address", "uint256"], [to, amount])).hex()


def _resume_cli(config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "resume", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environ},
        check=False,
    )


async def test_drawdown_past_the_limit_halts_and_alerts_until_resume(
    chain: Chain, workdir: Path, telegram: TelegramFake, discord: DiscordWebhookFake
) -> None:
    tree = chain.tree(
        workdir,
        risk={"max_drawdown_pct": 10.0},
        telegram_url=telegram.base_url,
        discord_url=discord.webhook_url,
    )
    config_path = workdir / "agent.toml"
    environ = {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "DISCORD_WEBHOOK_URL": discord.webhook_url}
    cfg = write_config(config_path, tree, environ)

    async with running_agent(cfg) as agent:
        await agent.tick()  # the equity peak
        peak = agent.parts.portfolio.view().equity_usd
        # The engineered loss: most of the wallet's tokens leave it (a hack, a bad bridge...).
        for symbol in chain.symbols:
            held = await chain.balance(symbol, AGENT_ACCOUNT)
            token = chain.deployment.tokens[symbol].address
            await chain.send_as(AGENT_ACCOUNT, token, _transfer(BURN, held * 9 // 10))
        halted = await agent.tick()
        view = agent.parts.portfolio.view()
        assert view.equity_usd < peak * 0.9
        assert agent.parts.risk.halt is not None and agent.parts.risk.halt.reason == "drawdown"
        assert halted.started == 0

        def risk_alerts() -> tuple[list[str], list[str]]:
            in_telegram = [
                m.visible_text
                for m in telegram.messages_to(OPERATOR_CHAT_ID)
                if "halt" in m.visible_text.lower()
            ]
            in_discord = [
                str(e.get("title"))
                for body in discord.delivered
                for e in body.get("embeds", [])
                if "halt" in str(e.get("title", "")).lower()
            ]
            return in_telegram, in_discord

        await wait_for(lambda: all(risk_alerts()))

        # Halted: a gap is there for the taking, and the agent leaves it, block after block.
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert report.opportunities >= 1 and report.started == 0
        assert set(report.rejected) == {"halted_drawdown"}
        for _ in range(2):
            await chain.rpc.call("evm_mine")
            still = await agent.tick()
            assert still.started == 0 and set(still.rejected) == {"halted_drawdown"}
        assert agent.parts.engine.report.fills == []
        assert agent.parts.risk.halt is not None  # it does not wear off by itself

        resumed = await asyncio.to_thread(_resume_cli, config_path, environ)
        assert resumed.returncode == 0, resumed.stderr
        assert "drawdown halt cleared" in resumed.stdout

        await chain.rpc.call("evm_mine")
        after = await agent.tick()
        assert agent.parts.risk.halt is None
        assert after.started == 1, after
        (fill,) = agent.parts.engine.report.fills
        assert fill.profit == fill.predicted_profit > 0
        record = await agent.parts.journal.get_intent(fill.intent_id)
        assert record.status == IntentStatus.FILLED
        assert await agent.parts.journal.count_rejections("halted_drawdown") >= 3
