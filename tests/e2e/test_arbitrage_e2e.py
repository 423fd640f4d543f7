"""A price gap between uniswap_v2 and sushiswap is closed by the agent within the next block,
through its ArbExecutor, for exactly the predicted profit; the journal and the operator's
Telegram and Discord hold the trade. It runs with the journal on SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.store.models import IntentStatus
from tests.e2e.harness import (
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    running_agent,
    tree_for,
    wait_for,
    write_config,
)
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.telegram_fake import TelegramFake


@pytest.mark.parametrize("journal_backend", ["sqlite", "postgresql"])
async def test_gap_is_arbitraged_in_the_next_block_for_exactly_the_predicted_profit(
    chain: Chain,
    telegram: TelegramFake,
    discord: DiscordWebhookFake,
    workdir: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    journal_backend: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    tree = tree_for(
        rpc_url=chain.devnet.rpc_url,
        deployment_file=chain.deployment_file,
        workdir=workdir,
        arb_executor=chain.arb_executor,
        tokens=chain.symbols,
        telegram_url=telegram.base_url,
        discord_url=discord.webhook_url,
    )
    if journal_backend == "postgresql":  # the journal on a real PostgreSQL server
        tree["store"] = {"url": request.getfixturevalue("pg_database")}
    environ = {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "DISCORD_WEBHOOK_URL": discord.webhook_url}
    cfg = write_config(workdir / "agent.toml", tree, environ)
    usdc_before = await chain.balance("USDC", chain.arb_executor)
    weth_before = await chain.balance("WETH", chain.arb_executor)

    async with running_agent(cfg) as agent:
        quiet = await agent.tick()
        assert quiet.started == 0  # a calm market: nothing to do

        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)

        assert report.started == 1
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        fill = fills[0]
        assert fill.block_number == gap.block + 1  # traded in the very next block
        assert fill.profit > 0
        assert fill.profit == fill.predicted_profit  # to the wei
        journal = agent.parts.journal
        record = await journal.get_intent(fill.intent_id)
        assert record.status == IntentStatus.FILLED
        assert {hop.dex for hop in record.intent.route} == {"uniswap_v2", "sushiswap"}
        journaled = await journal.get_fill(fill.intent_id)
        assert journaled is not None
        assert (journaled.tx_hash, journaled.profit, journaled.predicted_profit) == (
            fill.tx_hash,
            fill.profit,
            fill.predicted_profit,
        )

        def telegram_alert() -> list[str]:
            return [
                m.visible_text
                for m in telegram.messages_to(OPERATOR_CHAT_ID)
                if "Trade filled" in m.visible_text
            ]

        def discord_alert() -> list[dict[str, object]]:
            return [
                e
                for body in discord.delivered
                for e in body.get("embeds", [])
                if str(e.get("title", "")).startswith("Trade filled")
            ]

        await wait_for(lambda: bool(telegram_alert()) and bool(discord_alert()))
        assert fill.intent_id in telegram_alert()[0]
        assert "uniswap_v2 -> sushiswap" in telegram_alert()[0] or (
            "sushiswap -> uniswap_v2" in telegram_alert()[0]
        )
        fields = {f["name"]: f["value"] for f in discord_alert()[0]["fields"]}  # type: ignore[attr-defined]
        assert fields["trade"] == fill.intent_id
        assert fields["realised"] == fields["predicted"]
        # the broadcast was announced too, once, with the transaction it sent
        sent = [
            m.visible_text
            for m in telegram.messages_to(OPERATOR_CHAT_ID)
            if "Trade sent" in m.visible_text
        ]
        assert len(sent) == 1 and fill.intent_id in sent[0]
        assert (fill.tx_hash or "")[:10] in sent[0]

    # The profit really is in the ArbExecutor: in WETH or USDC, whichever the cycle started in.
    weth_after = await chain.balance("WETH", chain.arb_executor)
    usdc_after = await chain.balance("USDC", chain.arb_executor)
    start = chain.deployment.tokens["WETH"].address
    gained = (weth_after - weth_before) if fill.token_in == start else (usdc_after - usdc_before)
    assert gained == fill.profit

    # The bot token and the webhook URL stayed secret: not in the journal, logs or alerts.
    secrets = [TELEGRAM_TOKEN, discord.webhook_token]
    journal_files = [workdir / "journal.db", workdir / "journal.db-wal"]  # WAL, if in use
    journal_bytes = b"".join(f.read_bytes() for f in journal_files if f.is_file())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    alerts = str(discord.delivered) + str([m.text for m in telegram.sent_messages])
    for secret in secrets:
        assert secret.encode() not in journal_bytes
        assert secret not in logged
        assert secret not in alerts
