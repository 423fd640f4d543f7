"""Telegram commands reach the running engine: /pause from a stranger's chat is ignored and
logged; from the operator's allowlisted chat it stops new trades and is acknowledged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.e2e.harness import (
    OPERATOR_CHAT_ID,
    STRANGER_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    running_agent,
    tree_for,
    wait_for,
    write_config,
)
from tests.fakes.telegram_fake import TelegramFake


async def test_pause_obeys_only_the_allowlisted_chat(
    chain: Chain, workdir: Path, telegram: TelegramFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.alerts.telegram_commands")
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=chain.arb_executor,
        tokens=chain.symbols,
        telegram_url=telegram.base_url,
    )
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})

    async with running_agent(cfg, telegram_control=True) as agent:
        await agent.tick()

        telegram.push_command(STRANGER_CHAT_ID, "/pause")

        def stranger_logged() -> bool:
            return any(
                "non-allowlisted chat" in r.getMessage() and str(STRANGER_CHAT_ID) in r.getMessage()
                for r in caplog.records
            )

        await wait_for(stranger_logged)
        assert telegram.messages_to(STRANGER_CHAT_ID) == []  # no answer to strangers
        assert not agent.parts.risk.paused
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert report.started == 1  # the stranger's /pause changed nothing
        assert len(agent.parts.engine.report.fills) == 1

        telegram.push_command(OPERATOR_CHAT_ID, "/pause maintenance")

        def acknowledged() -> list[str]:
            return [
                m.visible_text
                for m in telegram.messages_to(OPERATOR_CHAT_ID)
                if m.visible_text.startswith("Trading paused")
            ]

        await wait_for(lambda: bool(acknowledged()))
        assert acknowledged() == ["Trading paused: maintenance"]
        assert agent.parts.risk.paused
        gap = await chain.open_gap("uniswap_v2", usd=60_000.0)
        paused = await agent.tick(gap.block)
        assert paused.opportunities >= 1
        assert paused.started == 0
        assert set(paused.rejected) == {"paused"}
        assert len(agent.parts.engine.report.fills) == 1  # nothing new after the pause
        assert await agent.parts.journal.count_rejections("paused") == paused.opportunities


async def test_kill_from_the_operator_stops_the_agent_and_stays_paused_after_a_restart(
    chain: Chain, workdir: Path, telegram: TelegramFake
) -> None:
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=chain.arb_executor,
        tokens=chain.symbols,
        telegram_url=telegram.base_url,
    )
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})

    async with running_agent(cfg, telegram_control=True) as agent:
        await agent.tick()
        telegram.push_command(OPERATOR_CHAT_ID, "/kill")
        task = agent.task
        assert task is not None
        await wait_for(task.done)  # the engine stopped by itself
        task.result()  # and cleanly
    replies = [m.visible_text for m in telegram.messages_to(OPERATOR_CHAT_ID)]
    assert any(r.startswith("Kill switch engaged") for r in replies), replies
    assert (workdir / "KILL").is_file()

    # A restart (say systemd brings it back) does not trade until the operator resumes.
    async with running_agent(cfg) as agent:
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert report.started == 0 and set(report.rejected) == {"paused"}
