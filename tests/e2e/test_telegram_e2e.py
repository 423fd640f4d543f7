"""Telegram commands reach the running engine: /pause from a stranger's chat is ignored and
logged; from the operator's allowlisted chat it stops new trades and is acknowledged."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.risk.controls import ControlFiles
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


GROUP_CHAT_ID = -1009876543210
MEMBER_USER_ID = 777001


async def test_in_the_operators_group_only_the_operator_is_obeyed_and_every_try_is_journaled(
    chain: Chain, workdir: Path, telegram: TelegramFake
) -> None:
    tree = chain.tree(workdir, telegram_url=telegram.base_url)
    tree["alerts"]["telegram"]["allowed_chat_ids"] = [OPERATOR_CHAT_ID, GROUP_CHAT_ID]
    tree["alerts"]["telegram"]["allowed_user_ids"] = [OPERATOR_CHAT_ID]
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})
    ControlFiles.beside(workdir / "KILL").write_pause("paused before the weekend")

    async with running_agent(cfg, telegram_control=True) as agent:
        await agent.tick()
        assert agent.parts.risk.paused
        journal = agent.parts.journal
        # A group member who is not an operator, an anonymous admin, a forwarded /resume.
        telegram.push_command(GROUP_CHAT_ID, "/resume", user_id=MEMBER_USER_ID)
        telegram.push_command(
            GROUP_CHAT_ID,
            "/resume",
            sender={"id": 1087968824, "is_bot": True, "first_name": "Group"},
            extra={"sender_chat": {"id": GROUP_CHAT_ID, "type": "supergroup", "title": "Ops"}},
        )
        telegram.push_command(
            GROUP_CHAT_ID,
            "/resume",
            user_id=OPERATOR_CHAT_ID,
            extra={
                "forward_origin": {"type": "user", "date": 1, "sender_user": {"id": 1}},
                "forward_date": 1,
            },
        )
        telegram.push_command(GROUP_CHAT_ID, "/balance", user_id=MEMBER_USER_ID)

        async def refusals() -> list[tuple[str, str]]:
            return [
                (a.action, a.detail) for a in await journal.list_control_actions() if not a.accepted
            ]

        async with asyncio.timeout(20):
            while len(await refusals()) < 4:
                await asyncio.sleep(0.05)
        assert await refusals() == [
            ("resume", "non-allowlisted user"),
            ("resume", "sent on behalf of a chat (anonymous admin or channel)"),
            ("resume", "forwarded message"),
            ("balance", "non-allowlisted user"),
        ]
        assert telegram.messages_to(GROUP_CHAT_ID) == []  # nobody refused learns anything
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        still = await agent.tick(gap.block)
        assert still.started == 0 and set(still.rejected) == {"paused"}

        # The operator, in the same group: obeyed.
        telegram.push_command(GROUP_CHAT_ID, "/resume", user_id=OPERATOR_CHAT_ID)
        await wait_for(lambda: not agent.parts.risk.paused)
        await chain.rpc.call("evm_mine")
        resumed = await agent.tick()
        assert resumed.started == 1

        telegram.push_command(GROUP_CHAT_ID, "/pause lunch", user_id=OPERATOR_CHAT_ID)
        await wait_for(lambda: agent.parts.risk.paused)
        obeyed = [
            (a.actor, a.action, a.argument)
            for a in await journal.list_control_actions()
            if a.accepted
        ]
        assert obeyed == [
            (f"telegram user {OPERATOR_CHAT_ID} in chat {GROUP_CHAT_ID}", "resume", ""),
            (f"telegram user {OPERATOR_CHAT_ID} in chat {GROUP_CHAT_ID}", "pause", "lunch"),
        ]
    assert (workdir / "KILL").read_text().strip() == "lunch"
