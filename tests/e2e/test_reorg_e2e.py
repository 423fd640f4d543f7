"""A fill reorged out of the chain while it awaits ``execution.confirmations``, seen by the real
agent: the journal voids it, today's PnL and the run's fills no longer count it, the strategy
that traded it is told, the operator is alerted, and the arbitrage the reorg reopened is traded
again under the freed nonce. The journal runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.app.build import sized_within_risk
from agent.devnet import Devnet
from agent.store.models import IntentStatus, TxStatus
from agent.types import FILL_PENDING, FILL_REORGED, Fill
from strategies.arbitrage import ArbitrageStrategy
from tests.conftest import devnet_copy
from tests.e2e.harness import (
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    running_agent,
    wait_for,
    write_config,
)
from tests.fakes.telegram_fake import TelegramFake


class ToldArbitrage(ArbitrageStrategy):
    """The real arbitrage strategy, keeping what the engine tells it of reorged fills."""

    def on_start(self, state: object) -> None:
        self.fills: list[Fill] = []
        self.changes: list[tuple[Fill, Fill | None]] = []

    def on_fill(self, fill: object) -> None:
        if isinstance(fill, Fill):
            self.fills.append(fill)

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None:
        self.changes.append((before, after))


@pytest.fixture(scope="module")
async def devnet(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devnet]:
    """The reorgs happen on a devnet of this module's own (see ``devnet_copy``)."""
    async with devnet_copy(devnet, tmp_path_factory.mktemp("reorg-deployments")) as own:
        yield own


@pytest.mark.parametrize("journal_backend", ["sqlite", "postgresql"])
async def test_a_reorged_out_fill_leaves_the_books_and_its_nonce_is_traded_again(
    chain: Chain,
    telegram: TelegramFake,
    workdir: Path,
    request: pytest.FixtureRequest,
    journal_backend: str,
) -> None:
    tree = chain.tree(workdir, telegram_url=telegram.base_url)
    tree["execution"]["confirmations"] = 3
    if journal_backend == "postgresql":  # the journal on a real PostgreSQL server
        tree["store"] = {"url": request.getfixturevalue("pg_database")}
    tree["strategies"]["arbitrage"]["enabled"] = False  # run as ToldArbitrage instead
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})
    arbitrage = cfg.strategies.arbitrage.model_copy(update={"enabled": True})
    told = ToldArbitrage(sized_within_risk(arbitrage, cfg.risk)[0])

    async with running_agent(cfg, extra_strategies=[told]) as agent:
        engine, journal, books = agent.parts.engine, agent.parts.journal, agent.parts.portfolio
        await agent.tick()
        pnl_before = books.realized_pnl_today_usd
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        await agent.tick(gap.block)
        (first,) = engine.report.fills
        assert first.finality == FILL_PENDING and first.block_number == gap.block + 1
        booked = books.realized_pnl_today_usd - pnl_before
        assert booked != 0.0
        assert first.tx_hash is not None
        first_tx = await journal.get_tx(first.tx_hash)

        # The arbitrage's block is replaced by an empty one: the trade never happened, and
        # the gap it closed is open again at the new head.
        await chain.devnet.call("anvil_reorg", [1, []])
        report = await agent.tick(await chain.block_number())

        record = await journal.get_intent(first.intent_id)
        assert record.status == IntentStatus.REORGED
        voided = await journal.get_fill(first.intent_id)
        assert voided is not None and voided.finality == FILL_REORGED
        assert (await journal.get_tx(first.tx_hash)).status == TxStatus.DROPPED
        assert first.intent_id not in {f.intent_id for f in await journal.list_fills()}
        # the strategy that got the fill is told it is void (once, the fill as it had it)
        assert told.fills[0].intent_id == first.intent_id
        assert [(b.intent_id, a) for b, a in told.changes] == [(first.intent_id, None)]
        # the reopened gap was traded again, under the nonce the lost transaction had held
        assert report.started == 1
        (second,) = engine.report.fills
        assert second.intent_id != first.intent_id and second.tx_hash is not None
        assert (await journal.get_tx(second.tx_hash)).nonce == first_tx.nonce
        # today's PnL holds the second trade alone (the same arbitrage: about the same
        # booking), not both
        assert books.realized_pnl_today_usd - pnl_before == pytest.approx(booked, rel=0.05)

        await wait_for(lambda: bool(telegram.texts_to(OPERATOR_CHAT_ID, "reorged out")))
        assert first.intent_id in telegram.texts_to(OPERATOR_CHAT_ID, "reorged out")[0]
