"""The store on a real SQLite file: migrations, exact big integers, the journal's state machine."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from agent.errors import InvalidTransition
from agent.store import IntentStatus, Journal, TxStatus, init_db, session_factory
from agent.types import Fill, Intent, RouteHop

REPO_ROOT = Path(__file__).resolve().parents[2]
UINT256_MAX = 2**256 - 1
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
SENDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

EXPECTED_TABLES = {
    "alembic_version",
    "alerts",
    "control_actions",
    "equity_snapshots",
    "fills",
    "intents",
    "opportunities",
    "orders",
    "paper_balances",
    "risk_rejections",
    "runs",
    "strategy_state",
    "transactions",
}


def make_intent(intent_id: str = "intent-1", amount_in: int = 10**18) -> Intent:
    return Intent(
        id=intent_id,
        strategy="arbitrage",
        kind="arb",
        route=(
            RouteHop("0x" + "11" * 20, "uniswap_v2", "v2", WETH, USDC, 3000),
            RouteHop("0x" + "22" * 20, "uniswap_v3", "v3", USDC, WETH, 500),
        ),
        token_in=WETH,
        token_out=WETH,
        amount_in=amount_in,
        min_amount_out=amount_in + 1,
        predicted_amount_out=amount_in + 12345,
        predicted_profit=12345,
        predicted_profit_usd=0.04,
        deadline=1_900_000_000,
    )


async def sign_one(journal: Journal, intent_id: str, tx_hash: str, nonce: int) -> None:
    await journal.record_signed_tx(
        tx_hash=tx_hash,
        raw_tx=b"\x02" + bytes(range(50)),
        chain_id=31337,
        sender=SENDER,
        nonce=nonce,
        purpose="arb",
        gas_limit=300_000,
        max_fee_per_gas_wei=UINT256_MAX,  # absurd on purpose: must round-trip exactly
        max_priority_fee_per_gas_wei=2 * 10**9,
        to_address="0x" + "33" * 20,
        intent_id=intent_id,
    )


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "agent.db"


@pytest.fixture
async def journal(db_path: Path) -> AsyncIterator[Journal]:
    engine = await init_db(f"sqlite:///{db_path}")
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


async def test_migrations_create_every_table_in_wal_mode(db_path: Path) -> None:
    engine = await init_db(f"sqlite:///{db_path}")
    await engine.dispose()
    # Running again on an up-to-date file is a no-op, not an error.
    engine = await init_db(f"sqlite+aiosqlite:///{db_path}")
    try:
        async with engine.connect() as connection:
            # synchronous is per connection: every connection of the engine commits with FULL.
            synchronous = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await engine.dispose()
    assert (synchronous, foreign_keys) == (2, 1)  # 2 = FULL

    with sqlite3.connect(db_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        tx_columns = {r[1] for r in conn.execute("PRAGMA table_info(transactions)")}
    assert tables == EXPECTED_TABLES
    assert revision == [("0009",)]
    assert journal_mode == "wal"
    assert {"nonce", "tx_hash", "raw_tx", "status", "status_history"} <= tx_columns


def test_alembic_cli_migrates_a_fresh_file(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "alembic"),
            "-c",
            str(REPO_ROOT / "agent/store/alembic.ini"),
            "-x",
            f"url=sqlite:///{db}",
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == EXPECTED_TABLES


async def test_big_integers_round_trip_exactly(journal: Journal, db_path: Path) -> None:
    huge = UINT256_MAX - 7  # above 2**63 and above float precision
    await journal.record_intent(make_intent("big", amount_in=huge), mode="fork")
    await sign_one(journal, "big", "0x" + "ab" * 32, nonce=0)
    await journal.mark_sent("0x" + "ab" * 32)
    await journal.mark_mined("0x" + "ab" * 32, 10, 123_456, 2**70 + 3)
    fill = Fill(
        intent_id="big",
        mode="fork",
        tx_hash="0x" + "ab" * 32,
        token_in=WETH,
        token_out=WETH,
        amount_in=huge,
        amount_out=huge - 1,
        profit=-(2**255),  # a signed loss, larger than any float mantissa
        predicted_amount_in=huge,
        predicted_amount_out=huge + 12345,
        predicted_profit=12345,
        gas_used=123_456,
        gas_cost_wei=123_456 * (2**70 + 3),
    )
    assert await journal.record_fill(fill)

    stored_intent = (await journal.get_intent("big")).intent
    assert stored_intent.amount_in == huge
    assert stored_intent.predicted_amount_out == huge + 12345
    tx = await journal.get_tx("0x" + "ab" * 32)
    assert tx.max_fee_per_gas_wei == UINT256_MAX
    assert tx.effective_gas_price_wei == 2**70 + 3
    assert await journal.get_fill("big") == fill

    # On disk: decimal strings, never REAL.
    with sqlite3.connect(db_path) as conn:
        amount, kind = conn.execute(
            "SELECT amount_in, typeof(amount_in) FROM intents WHERE id='big'"
        ).fetchone()
        profit = conn.execute("SELECT profit_realised FROM fills").fetchone()[0]
    assert (amount, kind) == (str(huge), "text")
    assert profit == str(-(2**255))


async def test_journal_follows_the_trade_lifecycle(journal: Journal) -> None:
    intent = make_intent()
    await journal.record_intent(intent, mode="fork")
    assert (await journal.get_intent(intent.id)).status == IntentStatus.PENDING
    assert (await journal.get_intent(intent.id)).intent == intent

    tx_hash = "0x" + "01" * 32
    await sign_one(journal, intent.id, tx_hash, nonce=7)
    # Signing moves the intent to submitted in the same step: never a signed tx for a pending one.
    assert (await journal.get_intent(intent.id)).status == IntentStatus.SUBMITTED
    assert [t.tx_hash for t in await journal.list_non_final()] == [tx_hash]

    await journal.mark_sent(tx_hash)
    await journal.mark_mined(
        tx_hash, block_number=100, gas_used=150_000, effective_gas_price_wei=10**9
    )
    assert await journal.list_non_final() == []
    # A replayed step after a crash is a no-op, not an error.
    assert not await journal.mark_mined(tx_hash, 100, 150_000, 10**9)

    tx = await journal.get_tx(tx_hash)
    assert tx.status == TxStatus.MINED
    assert [h["status"] for h in tx.status_history] == ["signed", "sent", "mined"]
    assert (tx.block_number, tx.gas_used, tx.nonce) == (100, 150_000, 7)

    fill = Fill(
        intent_id=intent.id,
        mode="fork",
        tx_hash=tx_hash,
        token_in=WETH,
        token_out=WETH,
        amount_in=intent.amount_in,
        amount_out=intent.predicted_amount_out,
        profit=intent.predicted_profit,
        predicted_amount_in=intent.amount_in,
        predicted_amount_out=intent.predicted_amount_out,
        predicted_profit=intent.predicted_profit,
    )
    assert await journal.record_fill(fill)
    assert not await journal.record_fill(fill)  # settling twice does not double-count
    assert len(await journal.list_fills()) == 1
    record = await journal.get_intent(intent.id)
    assert record.status == IntentStatus.FILLED
    assert [h["status"] for h in record.status_history] == ["pending", "submitted", "filled"]
    assert await journal.list_non_final_intents() == []


async def test_invalid_transitions_raise(journal: Journal) -> None:
    await journal.record_intent(make_intent("a"), mode="live")
    tx_hash = "0x" + "02" * 32
    await sign_one(journal, "a", tx_hash, nonce=1)
    await journal.mark_reverted(tx_hash, 5, 21_000, 1)

    with pytest.raises(InvalidTransition):
        await journal.mark_sent(tx_hash)  # reverted is final
    with pytest.raises(InvalidTransition):
        await journal.mark_mined(tx_hash, 5, 21_000, 1)
    await journal.set_intent_status("a", IntentStatus.REVERTED, "receipt status 0")
    with pytest.raises(InvalidTransition):
        await journal.set_intent_status("a", IntentStatus.PENDING)
    with pytest.raises(InvalidTransition):
        await sign_one(journal, "a", "0x" + "03" * 32, nonce=2)  # no signing for a final intent
    assert (await journal.get_intent("a")).status == IntentStatus.REVERTED


async def test_replacement_and_nonce_lookup(journal: Journal) -> None:
    await journal.record_intent(make_intent("r"), mode="live")
    slow, fast = "0x" + "04" * 32, "0x" + "05" * 32
    await sign_one(journal, "r", slow, nonce=3)
    await journal.mark_sent(slow)
    await sign_one(journal, "r", fast, nonce=3)
    await journal.mark_sent(fast)
    assert {t.tx_hash for t in await journal.txs_with_nonce(31337, SENDER, 3)} == {slow, fast}

    await journal.mark_mined(fast, 9, 100_000, 3)
    await journal.mark_replaced(slow, replaced_by=fast)
    assert (await journal.get_tx(slow)).replaced_by == fast
    assert (await journal.get_tx(slow)).status == TxStatus.REPLACED
    assert await journal.list_non_final() == []


async def test_rejections_state_and_equity(journal: Journal) -> None:
    assert await journal.record_opportunity("opp-1", "arbitrage", "arb", WETH, 10**18, 5, 0.01)
    assert not await journal.record_opportunity("opp-1", "arbitrage", "arb", WETH, 10**18, 5, 0.01)
    await journal.record_intent(make_intent("rej"), mode="paper")
    await journal.record_rejection("arbitrage", "gas_price_cap", "45 gwei > 40", "opp-1", "rej")
    assert (await journal.get_intent("rej")).status == IntentStatus.REJECTED
    assert await journal.count_rejections("gas_price_cap") == 1

    assert await journal.get_strategy_state("grid") is None
    await journal.set_strategy_state("grid", {"levels": ["1", "2"], "filled": [0]})
    await journal.set_strategy_state("grid", {"levels": ["1", "2", "3"], "filled": []})
    assert await journal.get_strategy_state("grid") == {"levels": ["1", "2", "3"], "filled": []}

    await journal.snapshot_equity("paper", 1234.5, {WETH: UINT256_MAX, USDC: 10**6}, 42)
    (snapshot,) = await journal.equity_history("paper")
    assert snapshot.balances == {WETH: UINT256_MAX, USDC: 10**6}
    assert snapshot.equity_usd == 1234.5
    assert snapshot.unit_prices_usd == {}  # none given: none recorded
    # the prices the balances were valued at (USD per smallest unit) come back as written
    await journal.snapshot_equity("fork", 3.0, {WETH: 10**18}, 43, {WETH: 3e-15, USDC: 1e-6})
    (priced,) = await journal.equity_history("fork")
    assert priced.unit_prices_usd == {WETH: 3e-15, USDC: 1e-6}
    await journal.record_alert("warning", "drawdown", "drawdown 5%", {"telegram": "ok"})


async def test_a_committed_step_survives_sigkill(db_path: Path) -> None:
    engine = await init_db(f"sqlite:///{db_path}")
    await engine.dispose()
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from agent.store import Journal, init_db, session_factory
        from tests.unit.test_store import make_intent

        async def main():
            engine = await init_db("sqlite:///{db_path}")
            journal = Journal(session_factory(engine))
            await journal.record_intent(make_intent("survivor"), mode="live")
            os.kill(os.getpid(), signal.SIGKILL)  # no dispose, no clean shutdown

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == -9, stderr
    engine = await init_db(f"sqlite:///{db_path}")
    try:
        record = await Journal(session_factory(engine)).get_intent("survivor")
    finally:
        await engine.dispose()
    assert record.status == IntentStatus.PENDING


async def test_migrations_match_the_models(db_path: Path) -> None:
    """Autogenerate finds nothing to add: the migrations create exactly what the ORM declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import Connection

    from agent.store.models import Base

    def diff(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    engine = await init_db(f"sqlite:///{db_path}")
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_paper_fill_moves_the_virtual_portfolio_atomically(journal: Journal) -> None:
    from agent.errors import InsufficientPaperBalance

    assert await journal.seed_paper_balances({USDC: 10_000 * 10**6, WETH: 2 * 10**18})
    assert not await journal.seed_paper_balances({USDC: 1})  # seeding happens once

    def swap_fill(intent_id: str, usdc_in: int, weth_out: int) -> Fill:
        return Fill(
            intent_id=intent_id,
            mode="paper",
            tx_hash=None,
            token_in=USDC,
            token_out=WETH,
            amount_in=usdc_in,
            amount_out=weth_out,
            profit=0,
            predicted_amount_in=usdc_in,
            predicted_amount_out=weth_out,
            predicted_profit=0,
        )

    await journal.record_intent(make_intent("p1"), mode="paper")
    assert await journal.record_fill(
        swap_fill("p1", 3_000 * 10**6, 10**18), move_paper_balances=True
    )
    assert await journal.paper_balances() == {USDC: 7_000 * 10**6, WETH: 3 * 10**18}
    assert (await journal.get_intent("p1")).status == IntentStatus.FILLED

    await journal.record_intent(make_intent("p2"), mode="paper")
    with pytest.raises(InsufficientPaperBalance):
        await journal.record_fill(
            swap_fill("p2", 8_000 * 10**6, 2 * 10**18), move_paper_balances=True
        )
    # Nothing moved and no fill row: the whole step rolled back.
    assert await journal.paper_balances() == {USDC: 7_000 * 10**6, WETH: 3 * 10**18}
    assert await journal.get_fill("p2") is None
    assert (await journal.get_intent("p2")).status == IntentStatus.PENDING


def arb_fill(intent: Intent, mode: str, tx_hash: str | None = None) -> Fill:
    return Fill(
        intent_id=intent.id,
        mode=mode,
        tx_hash=tx_hash,
        token_in=intent.token_in,
        token_out=intent.token_out,
        amount_in=intent.amount_in,
        amount_out=intent.predicted_amount_out,
        profit=intent.predicted_profit,
        predicted_amount_in=intent.amount_in,
        predicted_amount_out=intent.predicted_amount_out,
        predicted_profit=intent.predicted_profit,
        block_number=12,
    )


async def test_runs_keep_paper_and_fork_rows_apart(db_path: Path) -> None:
    """A paper run, then a fork run (another process) on one journal: each run's opportunities,
    intents, fills, equity and refusals are its own; the fill keeps its opportunity and the USD
    it was priced at; a run records its liveness and why it stopped."""
    from agent.store.journal import JournalNotFound

    engine = await init_db(f"sqlite:///{db_path}")
    try:
        paper = Journal(session_factory(engine))
        paper_run = await paper.start_run("paper", "devnet", 31337, "a" * 64)
        assert paper.run_id == paper_run
        await paper.record_opportunity("opp-p", "arbitrage", "arb", WETH, 10**18, 5, 1.0, 11)
        await paper.record_opportunity("opp-refused", "arbitrage", "arb", WETH, 10**18, 5, 1.0, 11)
        await paper.record_rejection("arbitrage", "exposure_trade", "", "opp-refused")
        intent = replace(make_intent("paper-1"), opportunity_id="opp-p")
        await paper.record_intent(intent, mode="paper")
        assert await paper.record_fill(arb_fill(intent, "paper"))
        assert await paper.set_fill_usd("paper-1", 41.25, 40.0)
        await paper.snapshot_equity("paper", 10_000.0, {WETH: 10**18}, 11)
        await paper.heartbeat(paper_run, 11)
        await paper.finish_run(paper_run, "stopped: signal")
        await paper.finish_run(paper_run, "failed: later")  # the first reason stays
        # an intent of the paper run still open when it stopped (settled later)
        late = make_intent("paper-late")
        await paper.record_intent(late, mode="paper")

        fork = Journal(session_factory(engine))  # the next start, a new process
        fork_run = await fork.start_run("fork", "devnet", 31337, "b" * 64)
        for reason, block in (
            ("exposure_trade", 30),
            ("gas_price_cap", 31),
            ("exposure_trade", 200),
        ):
            opp = f"opp-{reason}-{block}"
            await fork.record_opportunity(opp, "arbitrage", "arb", WETH, 10**18, 5, 1.0, block)
            await fork.record_rejection("arbitrage", reason, "", opp)
        fork_intent = replace(make_intent("fork-1"), opportunity_id="opp-exposure_trade-30")
        await fork.record_intent(fork_intent, mode="fork")
        await sign_one(fork, "fork-1", "0x" + "0f" * 32, nonce=0)
        assert await fork.record_fill(arb_fill(fork_intent, "fork", "0x" + "0f" * 32))
        # refused just before signing: the intent's opportunity dates the refusal
        await fork.record_opportunity("opp-signing", "arbitrage", "arb", WETH, 10**18, 5, 1.0, 199)
        await fork.record_intent(
            replace(make_intent("fork-2"), opportunity_id="opp-signing"), "fork"
        )
        await fork.record_rejection("arbitrage", "paused", "", intent_id="fork-2")
        await fork.snapshot_equity("fork", 50_000.0, {WETH: 2 * 10**18}, 200)
        await fork.heartbeat(fork_run, 200)
        # reconciliation in the fork run settles the paper run's leftover: it stays the paper run's
        assert await fork.record_fill(arb_fill(late, "paper"))

        assert [f.intent_id for f in await fork.list_fills(run_id=paper_run)] == [
            "paper-1",
            "paper-late",
        ]
        (fork_fill,) = await fork.list_fills(run_id=fork_run)
        assert fork_fill.intent_id == "fork-1"
        assert fork_fill.opportunity_id == "opp-exposure_trade-30"  # from the fill's intent
        assert len(await fork.list_fills()) == 3
        assert await fork.fill_runs() == {
            "paper-1": paper_run,
            "paper-late": paper_run,
            "fork-1": fork_run,
        }
        paper_fill = await fork.get_fill("paper-1")
        assert paper_fill is not None
        assert (paper_fill.profit_usd, paper_fill.predicted_profit_usd) == (41.25, 40.0)
        assert paper_fill.opportunity_id == "opp-p"
        assert not await fork.set_fill_usd("no-such-intent", 1.0)

        assert [i.intent.id for i in await fork.list_intents(run_id=fork_run)] == [
            "fork-1",
            "fork-2",
        ]
        assert [e.equity_usd for e in await fork.equity_history(run_id=paper_run)] == [10_000.0]
        assert [e.equity_usd for e in await fork.equity_history(run_id=fork_run)] == [50_000.0]
        assert await fork.rejection_counts(run_id=paper_run) == {"exposure_trade": 1}
        assert await fork.rejection_counts(run_id=fork_run) == {
            "exposure_trade": 2,
            "gas_price_cap": 1,
            "paused": 1,
        }
        # the refusals of recent blocks: by the refused opportunity's block
        assert await fork.rejection_counts(run_id=fork_run, since_block=101) == {
            "exposure_trade": 1,
            "paused": 1,
        }
        assert await fork.rejection_counts() == {
            "exposure_trade": 3,
            "gas_price_cap": 1,
            "paused": 1,
        }

        runs = await fork.list_runs()
        assert [(r.id, r.mode) for r in runs] == [(paper_run, "paper"), (fork_run, "fork")]
        latest = await fork.latest_run()
        assert latest is not None and latest.id == fork_run
        assert (latest.last_block, latest.config_hash) == (200, "b" * 64)
        assert latest.last_block_at is not None
        assert latest.is_running(latest.heartbeat_at)
        assert not latest.is_running(latest.heartbeat_at + timedelta(minutes=5))
        stopped = await fork.get_run(paper_run)
        assert stopped.stop_reason == "stopped: signal" and stopped.stopped_at is not None
        assert not stopped.is_running(stopped.heartbeat_at)
        with pytest.raises(JournalNotFound):
            await fork.get_run(fork_run + 1)
    finally:
        await engine.dispose()


def alembic(db: Path, *args: str) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "alembic"),
            "-c",
            str(REPO_ROOT / "agent/store/alembic.ini"),
            "-x",
            f"url=sqlite:///{db}",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=db.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def test_runs_migration_reverses_and_upgrades_a_populated_journal(tmp_path: Path) -> None:
    """0003 down and up again on a journal with a trade in it (rows that reference intents and
    opportunities): nothing is lost, and rows journaled before runs belong to no run."""
    db = tmp_path / "old.db"
    engine = await init_db(f"sqlite:///{db}")
    try:
        journal = Journal(session_factory(engine))
        await journal.record_opportunity("opp-old", "arbitrage", "arb", WETH, 10**18, 5, 1.0, 7)
        intent = replace(make_intent("before-runs"), opportunity_id="opp-old")
        await journal.record_intent(intent, mode="fork")
        await sign_one(journal, intent.id, "0x" + "aa" * 32, nonce=1)
        assert await journal.record_fill(arb_fill(intent, "fork", "0x" + "aa" * 32))
    finally:
        await engine.dispose()

    alembic(db, "downgrade", "0002")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM fills").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM transactions").fetchone() == (1,)
        assert "run_id" not in {r[1] for r in conn.execute("PRAGMA table_info(intents)")}

    engine = await init_db(f"sqlite:///{db}")  # 0002 -> 0003 with the rows in place
    try:
        journal = Journal(session_factory(engine))
        (fill,) = await journal.list_fills()
        assert (fill.intent_id, fill.profit) == ("before-runs", intent.predicted_profit)
        assert await journal.fill_runs() == {"before-runs": None}
        assert await journal.latest_run() is None
    finally:
        await engine.dispose()
