"""The store on a real PostgreSQL server (tests/pg.py): the same migrations, the same journal,
exact uint256 amounts in NUMERIC(78, 0), and the advisory lock that keeps a second agent out."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, text

from agent.errors import InstanceLocked
from agent.store import Journal, init_db, session_factory
from agent.store.db import create_engine
from agent.store.lock import journal_lock
from tests.unit import test_store as on_sqlite


@pytest.fixture
async def journal(pg_database: str) -> AsyncIterator[Journal]:
    engine = await init_db(pg_database)
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


async def test_migrations_create_every_table_and_match_the_models(pg_database: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from agent.store.models import Base

    def diff(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    engine = await init_db(pg_database)
    engine = await init_db(pg_database)  # again: an up-to-date database is a no-op
    try:
        async with engine.connect() as connection:
            tables = set(
                (
                    await connection.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).scalars()
            )
            revision = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).all()
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()
    assert tables == on_sqlite.EXPECTED_TABLES
    assert [tuple(r) for r in revision] == [("0009",)]


async def test_journal_follows_the_trade_lifecycle(journal: Journal) -> None:
    await on_sqlite.test_journal_follows_the_trade_lifecycle(journal)


async def test_invalid_transitions_raise(journal: Journal) -> None:
    await on_sqlite.test_invalid_transitions_raise(journal)


async def test_replacement_and_nonce_lookup(journal: Journal) -> None:
    await on_sqlite.test_replacement_and_nonce_lookup(journal)


async def test_rejections_state_and_equity(journal: Journal) -> None:
    await on_sqlite.test_rejections_state_and_equity(journal)


async def test_paper_fill_moves_the_virtual_portfolio_atomically(journal: Journal) -> None:
    await on_sqlite.test_paper_fill_moves_the_virtual_portfolio_atomically(journal)


async def test_uint256_amounts_round_trip_exactly(journal: Journal) -> None:
    await journal.record_intent(
        on_sqlite.make_intent("big", amount_in=on_sqlite.UINT256_MAX), "fork"
    )
    await on_sqlite.sign_one(journal, "big", "0x" + "ab" * 32, 7)
    record = await journal.get_intent("big")
    tx = await journal.get_tx("0x" + "ab" * 32)
    assert record.intent.amount_in == on_sqlite.UINT256_MAX
    assert tx.max_fee_per_gas_wei == on_sqlite.UINT256_MAX


async def test_control_actions_are_journaled(journal: Journal) -> None:
    await journal.record_control_action(
        source="telegram",
        actor="telegram user 1 in chat -5",
        action="resume",
        accepted=False,
        detail="forwarded message",
    )
    (action,) = await journal.list_control_actions()
    assert (action.source, action.action, action.accepted, action.detail) == (
        "telegram",
        "resume",
        False,
        "forwarded message",
    )
    assert action.at.tzinfo is not None


async def test_a_second_agent_on_the_same_journal_is_refused_naming_the_first(
    pg_database: str,
) -> None:
    first = create_engine(pg_database)
    second = create_engine(pg_database)
    try:
        async with journal_lock(first) as holder:
            assert holder is not None and holder.pid == os.getpid()
            with pytest.raises(InstanceLocked) as refused:
                async with journal_lock(second):
                    raise AssertionError("two agents hold the journal")
            message = str(refused.value)
            assert f"pid {os.getpid()}" in message
            assert socket.gethostname() in message
            assert holder.started_at in message
            assert "Passw0rd" not in message  # the URL's password is never quoted
        # Released (as when the first agent stops or dies): the next one gets it.
        async with journal_lock(second) as holder:
            assert holder is not None
    finally:
        await first.dispose()
        await second.dispose()
