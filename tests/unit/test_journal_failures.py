"""The journal boundary on a real SQLite file: database errors arrive as the agent's own
temporary or fatal errors, without secrets, and a failed trade is journaled wherever it got to."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from agent.errors import JournalRejected, JournalUnavailable
from agent.store import IntentStatus, Journal, TxStatus, init_db, session_factory
from agent.store.journal import journal_error
from tests.unit.test_store import make_intent, sign_one


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture
async def journal(db_path: Path) -> AsyncIterator[Journal]:
    engine = await init_db(f"sqlite:///{db_path}")

    def short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        # The store waits 10 s for a lock; a test of the lock need not.
        dbapi_connection.cursor().execute("PRAGMA busy_timeout=100")

    await engine.dispose()  # new connections get the listener below
    event.listen(engine.sync_engine, "connect", short_busy_timeout)
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


async def test_a_locked_database_is_temporarily_unavailable_then_writable(
    journal: Journal, db_path: Path
) -> None:
    blocker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(JournalUnavailable, match="database is locked") as raised:
            await journal.record_intent(make_intent("locked"), "paper")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert "INSERT" not in str(raised.value)  # the SQL and its parameters stay out
    await journal.record_intent(make_intent("locked"), "paper")
    assert (await journal.get_intent("locked")).status == IntentStatus.PENDING


async def test_a_refused_write_is_fatal(journal: Journal) -> None:
    await journal.record_intent(make_intent("twice"), "paper")
    with pytest.raises(JournalRejected, match="IntegrityError"):
        await journal.record_intent(make_intent("twice"), "paper")


def test_a_database_url_in_a_driver_message_loses_its_password() -> None:
    driver_error = OSError(
        "could not connect to postgresql://agent:hunter2-pg-secret@db.internal:5432/agent"
    )
    translated = journal_error(sa_exc.OperationalError("SELECT 1", {}, driver_error))
    assert isinstance(translated, JournalUnavailable)
    assert "hunter2-pg-secret" not in str(translated)
    assert "db.internal:5432" in str(translated)


async def test_a_failure_is_journaled_wherever_the_intent_got_to(journal: Journal) -> None:
    # Never journaled (record_intent itself failed): written as failed with the reason.
    status = await journal.record_failure(make_intent("unwritten"), "fork", "KeyError: 'pool'")
    record = await journal.get_intent("unwritten")
    assert status == record.status == IntentStatus.FAILED
    assert record.status_detail == "KeyError: 'pool'"
    assert [h["status"] for h in record.status_history] == ["pending", "failed"]

    await journal.record_intent(make_intent("pending"), "fork")
    assert await journal.record_failure(make_intent("pending"), "fork", "boom") == "failed"
    assert (await journal.get_intent("pending")).status_detail == "boom"

    # A transaction of it is on its way to the chain: reconciliation settles it, not us.
    await journal.record_intent(make_intent("sent"), "fork")
    await sign_one(journal, "sent", "0x" + "ab" * 32, nonce=7)
    await journal.mark_sent("0x" + "ab" * 32)
    assert await journal.record_failure(make_intent("sent"), "fork", "boom") == "submitted"
    assert (await journal.get_tx("0x" + "ab" * 32)).status == TxStatus.SENT

    # Already final: left as it was.
    assert await journal.record_failure(make_intent("pending"), "fork", "again") == "failed"
    assert (await journal.get_intent("pending")).status_detail == "boom"


async def test_an_intent_that_failed_before_it_was_journaled_belongs_to_its_run(
    journal: Journal,
) -> None:
    run = await journal.start_run("fork", "devnet", 31337, "cfg")
    await journal.record_failure(make_intent("unwritten"), "fork", "KeyError: 'pool'")
    (failed,) = await journal.list_intents(run_id=run)
    assert failed.intent.id == "unwritten" and failed.status == IntentStatus.FAILED
