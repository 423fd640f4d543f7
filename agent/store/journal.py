"""The execution journal: every step of an intent's life, each in its own committed transaction.

Order of writes for one trade (what makes a crash at any instant recoverable):

1. ``record_intent``      -- before any I/O; status ``pending``
2. ``record_signed_tx``   -- hash, nonce and raw bytes, BEFORE broadcast; intent ``submitted``
3. ``mark_sent``          -- after the submit RPC accepted it
4. ``mark_mined`` / ``mark_reverted`` / ``mark_dropped`` / ``mark_replaced``
5. ``record_fill``        -- realised amounts beside predicted ones; intent ``filled``
6. ``set_fill_usd``       -- the realised profit in USD at the fill's block (the engine prices it)
7. ``confirm_fill`` / ``move_fill`` / ``void_fill`` -- a fill pending confirmation becomes final,
   follows its transaction into another block, or is voided when a reorg took it out

A run (one start of the agent) is opened with ``start_run``, kept alive with ``heartbeat`` and
closed with ``finish_run``. ``start_run`` binds the journal to the run: opportunities, intents,
equity snapshots and rejections written afterwards carry its id; a fill or a rejection of an
intent carries the intent's run (reconciliation may settle a trade of an earlier run).

Statuses follow the explicit machines in ``agent.store.models``; an invalid transition raises
``InvalidTransition``; repeating the current status is a no-op (reconciliation may replay a step
that completed just before a crash).

Database errors are translated here, at the journal boundary, for every method: a database that
is locked or unreachable raises ``JournalUnavailable`` (temporary: the same write may succeed a
moment later), one that refuses the write (a constraint, a type) raises ``JournalRejected``
(fatal). Their messages name the driver's error without SQL, parameters or database URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.errors import (
    AgentError,
    InsufficientPaperBalance,
    InvalidTransition,
    JournalNotFound,
    JournalRejected,
    JournalUnavailable,
    OrderRejected,
)
from agent.store.models import (
    FINAL_INTENT_STATUSES,
    FINAL_TX_STATUSES,
    INTENT_TRANSITIONS,
    REORG_CORRECTIONS,
    TX_TRANSITIONS,
    AlertRow,
    ControlActionRow,
    EquitySnapshotRow,
    FillRow,
    IntentRow,
    IntentStatus,
    OpportunityRow,
    OrderRow,
    PaperBalanceRow,
    RiskRejectionRow,
    RunRow,
    StrategyStateRow,
    TransactionRow,
    TxStatus,
    utc_now,
)
from agent.types import (
    FILL_FINAL,
    FILL_PENDING,
    FILL_REORGED,
    ORDER_ACTIVE,
    ORDER_CANCELLED,
    ORDER_FILLED,
    ORDER_PENDING,
    ORDER_TRIGGERED,
    ConditionalOrder,
    Fill,
    Intent,
    OrderUpdate,
    RouteHop,
)


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """An intent as journaled, with its current status."""

    intent: Intent
    mode: str
    status: IntentStatus
    status_detail: str | None
    status_history: tuple[dict[str, Any], ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TxRecord:
    """A journaled signed transaction. Fee fields in wei per gas; ``value_wei`` in wei."""

    tx_hash: str
    intent_id: str | None
    purpose: str
    chain_id: int
    sender: str
    nonce: int
    raw_tx: bytes
    to_address: str | None
    value_wei: int
    gas_limit: int
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int
    status: TxStatus
    status_history: tuple[dict[str, Any], ...]
    block_number: int | None
    gas_used: int | None
    effective_gas_price_wei: int | None
    replaced_by: str | None
    created_at: datetime
    # a relay bundle's hash and last target block (None: sent to an RPC)
    bundle_hash: str | None = None
    bundle_last_block: int | None = None


@dataclass(frozen=True, slots=True)
class EquitySnapshot:
    taken_at: datetime
    mode: str
    equity_usd: float
    balances: dict[str, int]
    block_number: int | None
    run_id: int | None = None
    # token address -> USD per smallest unit at this snapshot (empty: not recorded)
    unit_prices_usd: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """One risk-gate refusal as journaled; ``block_number`` is the refused opportunity's."""

    created_at: datetime
    run_id: int | None
    block_number: int | None
    strategy: str
    reason: str
    detail: str
    opportunity_id: str | None
    intent_id: str | None


# A running agent writes a heartbeat at every block and at least this often between blocks.
HEARTBEAT_INTERVAL_S = 10.0
# A run whose heartbeat is older than this is not running (killed, crashed, or hung).
HEARTBEAT_STALE_S = 3 * HEARTBEAT_INTERVAL_S


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One start of the agent as journaled. ``mode`` is what ran (``--mode`` over the config);
    ``last_block_at`` is when the agent processed ``last_block`` (its wall clock)."""

    id: int
    mode: str
    chain_name: str
    chain_id: int
    config_hash: str
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None
    heartbeat_at: datetime
    last_block: int | None
    last_block_at: datetime | None

    def is_running(self, now: datetime, stale_after_s: float = HEARTBEAT_STALE_S) -> bool:
        """Not stopped and its heartbeat is fresh."""
        return self.stopped_at is None and now - self.heartbeat_at <= timedelta(
            seconds=stale_after_s
        )


def _run_record(row: RunRow) -> RunRecord:
    return RunRecord(
        id=row.id,
        mode=row.mode,
        chain_name=row.chain_name,
        chain_id=row.chain_id,
        config_hash=row.config_hash,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
        stop_reason=row.stop_reason,
        heartbeat_at=row.heartbeat_at,
        last_block=row.last_block,
        last_block_at=row.last_block_at,
    )


@dataclass(frozen=True, slots=True)
class ControlActionRecord:
    """A journaled control action: who (``source``, ``actor``), when (``at``) and what."""

    at: datetime
    source: str
    actor: str
    action: str
    argument: str
    accepted: bool
    detail: str


def _history_entry(status: str, detail: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": status, "at": utc_now().isoformat()}
    if detail:
        entry["detail"] = detail
    return entry


def _route_to_json(route: Sequence[RouteHop]) -> list[dict[str, Any]]:
    return [
        {
            "pool": hop.pool,
            "dex": hop.dex,
            "kind": hop.kind,
            "token_in": hop.token_in,
            "token_out": hop.token_out,
            "fee_pips": hop.fee_pips,
        }
        for hop in route
    ]


def _route_from_json(route: Sequence[Mapping[str, Any]]) -> tuple[RouteHop, ...]:
    return tuple(
        RouteHop(
            pool=str(h["pool"]),
            dex=str(h["dex"]),
            kind=str(h["kind"]),
            token_in=str(h["token_in"]),
            token_out=str(h["token_out"]),
            fee_pips=int(h["fee_pips"]),
        )
        for h in route
    )


def _intent_record(row: IntentRow) -> IntentRecord:
    intent = Intent(
        id=row.id,
        strategy=row.strategy,
        kind=row.kind,
        route=_route_from_json(row.route),
        token_in=row.token_in,
        token_out=row.token_out,
        amount_in=row.amount_in,
        min_amount_out=row.min_amount_out,
        predicted_amount_out=row.predicted_amount_out,
        predicted_profit=row.predicted_profit,
        predicted_profit_usd=row.predicted_profit_usd,
        deadline=row.deadline,
        opportunity_id=row.opportunity_id,
    )
    return IntentRecord(
        intent=intent,
        mode=row.mode,
        status=IntentStatus(row.status),
        status_detail=row.status_detail,
        status_history=tuple(row.status_history),
        created_at=row.created_at,
    )


def _tx_record(row: TransactionRow) -> TxRecord:
    return TxRecord(
        tx_hash=row.tx_hash,
        intent_id=row.intent_id,
        purpose=row.purpose,
        chain_id=row.chain_id,
        sender=row.sender,
        nonce=row.nonce,
        raw_tx=row.raw_tx,
        to_address=row.to_address,
        value_wei=row.value_wei,
        gas_limit=row.gas_limit,
        max_fee_per_gas_wei=row.max_fee_per_gas_wei,
        max_priority_fee_per_gas_wei=row.max_priority_fee_per_gas_wei,
        status=TxStatus(row.status),
        status_history=tuple(row.status_history),
        block_number=row.block_number,
        gas_used=row.gas_used,
        effective_gas_price_wei=row.effective_gas_price_wei,
        replaced_by=row.replaced_by,
        created_at=row.created_at,
        bundle_hash=row.bundle_hash,
        bundle_last_block=row.bundle_last_block,
    )


def _fill_from_row(row: FillRow) -> Fill:
    return Fill(
        intent_id=row.intent_id,
        mode=row.mode,
        tx_hash=row.tx_hash,
        token_in=row.token_in,
        token_out=row.token_out,
        amount_in=row.amount_in_realised,
        amount_out=row.amount_out_realised,
        profit=row.profit_realised,
        predicted_amount_in=row.amount_in_predicted,
        predicted_amount_out=row.amount_out_predicted,
        predicted_profit=row.profit_predicted,
        gas_used=row.gas_used,
        gas_cost_wei=row.gas_cost_wei,
        l1_fee_wei=row.l1_fee_wei or 0,
        predicted_gas_cost_wei=row.gas_cost_predicted_wei or 0,
        predicted_l1_fee_wei=row.l1_fee_predicted_wei or 0,
        block_number=row.block_number,
        predicted_profit_usd=row.profit_predicted_usd,
        profit_usd=row.profit_realised_usd,
        opportunity_id=row.opportunity_id,
        block_hash=row.block_hash,
        finality=row.finality or FILL_FINAL,
    )


# ``scheme://user:password@host``: the credentials part of a URL inside a driver's message
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _order_from_row(row: OrderRow) -> ConditionalOrder:
    return ConditionalOrder(
        id=row.id,
        kind=row.kind,
        side=row.side,
        pair=row.pair,
        amount=Decimal(row.amount),
        trigger_price=_decimal(row.trigger_price),
        trail_distance=_decimal(row.trail_distance),
        trail_pct=_decimal(row.trail_pct),
        peak=row.peak,
        oco_group=row.oco_group,
        status=row.status,
        reason=row.reason,
        attempts=row.attempts,
    )


def journal_error(exc: BaseException) -> AgentError:
    """``exc`` (a SQLAlchemy or driver error) as ``JournalUnavailable`` or ``JournalRejected``.

    Only the driver's own first line travels, with any URL in it stripped of credentials: a
    SQLAlchemy message also carries the SQL and its parameters, and a PostgreSQL URL a password.
    """
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    text = _URL_CREDENTIALS.sub("***@", lines[0] if lines else "")[:200]
    detail = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    unavailable = isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError | OSError
    ) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
    if unavailable:
        return JournalUnavailable(f"journal unavailable: {detail}")
    return JournalRejected(f"journal refused the write: {detail}")


@contextlib.asynccontextmanager
async def _translated(
    opening: AbstractAsyncContextManager[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    try:
        async with opening as session:
            yield session
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise journal_error(exc) from None


class _TranslatingSessions:
    """The session factory, with every database error raised inside a session (or by its
    commit) translated by :func:`journal_error`: each journal method gets the contract."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def __call__(self) -> AbstractAsyncContextManager[AsyncSession]:
        return _translated(self._sessions())

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:
        return _translated(self._sessions.begin())


class Journal:
    """Repository over the store's tables; one committed DB transaction per method call.

    Takes an ``async_sessionmaker`` (see ``agent.store.db.session_factory``); holds no session
    between calls. Writes from one process are serialised with an ``asyncio.Lock`` so SQLite never
    sees two writers from the same process.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = _TranslatingSessions(sessions)
        self._write_lock = asyncio.Lock()
        self.run_id: int | None = None  # the run this journal writes for (``start_run``)

    # -- runs -----------------------------------------------------------------------------

    async def start_run(self, mode: str, chain_name: str, chain_id: int, config_hash: str) -> int:
        """Record a new run (``mode`` as it actually runs) and bind this journal to it: rows
        written from now on carry its id. Returns the run id."""
        async with self._write_lock, self._sessions.begin() as session:
            now = utc_now()
            row = RunRow(
                mode=mode,
                chain_name=chain_name,
                chain_id=chain_id,
                config_hash=config_hash,
                started_at=now,
                heartbeat_at=now,
            )
            session.add(row)
            await session.flush()
            run_id = row.id
        self.run_id = run_id
        return run_id

    async def heartbeat(self, run_id: int, block: int | None = None) -> None:
        """The run is alive; with ``block``, that block has just been processed."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._run_row(session, run_id)
            now = utc_now()
            row.heartbeat_at = now
            if block is not None:
                row.last_block = block
                row.last_block_at = now

    async def finish_run(self, run_id: int, reason: str) -> None:
        """The run stopped (``reason``: why, for ``status``). Finishing twice keeps the first."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._run_row(session, run_id)
            if row.stopped_at is None:
                row.stopped_at = utc_now()
                row.stop_reason = reason

    async def get_run(self, run_id: int) -> RunRecord:
        async with self._sessions() as session:
            return _run_record(await self._run_row(session, run_id))

    async def latest_run(self) -> RunRecord | None:
        """The most recently started run, or ``None`` when no run was ever recorded."""
        async with self._sessions() as session:
            row = await session.scalar(select(RunRow).order_by(RunRow.id.desc()).limit(1))
            return None if row is None else _run_record(row)

    async def list_runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(RunRow).order_by(RunRow.id))).all()
            return [_run_record(r) for r in rows]

    # -- opportunities, intents -----------------------------------------------------------

    async def record_opportunity(
        self,
        opportunity_id: str,
        strategy: str,
        kind: str,
        token_in: str | None = None,
        amount_in: int | None = None,
        predicted_profit: int | None = None,
        predicted_profit_usd: float | None = None,
        block_number: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a scored opportunity. Amounts in ``token_in`` smallest units.

        Idempotent: an id already journaled (the same opportunity seen again in the same block)
        is left as it is and False is returned.
        """
        async with self._write_lock, self._sessions.begin() as session:
            if await session.get(OpportunityRow, opportunity_id) is not None:
                return False
            session.add(
                OpportunityRow(
                    id=opportunity_id,
                    run_id=self.run_id,
                    strategy=strategy,
                    kind=kind,
                    token_in=token_in,
                    amount_in=amount_in,
                    predicted_profit=predicted_profit,
                    predicted_profit_usd=predicted_profit_usd,
                    block_number=block_number,
                    details=dict(details or {}),
                )
            )
            return True

    async def record_intent(self, intent: Intent, mode: str) -> None:
        """Journal ``intent`` as ``pending``. Call before any I/O for it."""
        async with self._write_lock, self._sessions.begin() as session:
            session.add(self._new_intent_row(intent, mode))

    async def set_intent_status(
        self, intent_id: str, status: IntentStatus, detail: str | None = None
    ) -> bool:
        """Move an intent to ``status``. Returns False if it already was there (no-op)."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._intent_row(session, intent_id)
            return self._transition_intent(row, status, detail)

    def _new_intent_row(self, intent: Intent, mode: str, failure: str | None = None) -> IntentRow:
        """The row of a newly journaled ``intent`` in this run: ``pending``, or ``failed`` with
        ``failure`` when it failed before it could be journaled."""
        history = [_history_entry(IntentStatus.PENDING, None)]
        if failure is not None:
            history.append(_history_entry(IntentStatus.FAILED, failure))
        return IntentRow(
            id=intent.id,
            opportunity_id=intent.opportunity_id,
            run_id=self.run_id,
            strategy=intent.strategy,
            kind=intent.kind,
            mode=mode,
            token_in=intent.token_in,
            token_out=intent.token_out,
            amount_in=intent.amount_in,
            min_amount_out=intent.min_amount_out,
            predicted_amount_out=intent.predicted_amount_out,
            predicted_profit=intent.predicted_profit,
            predicted_profit_usd=intent.predicted_profit_usd,
            deadline=intent.deadline,
            route=_route_to_json(intent.route),
            status=IntentStatus.PENDING if failure is None else IntentStatus.FAILED,
            status_detail=failure,
            status_history=history,
        )

    async def record_failure(self, intent: Intent, mode: str, reason: str) -> IntentStatus:
        """Journal that ``intent`` failed with ``reason``, wherever it got to; returns the
        status it is left in.

        Not journaled yet (``record_intent`` itself failed): it is written as ``failed``.
        Pending, or submitted with nothing on its way to the chain: it moves to ``failed``.
        Submitted with a transaction signed or sent: it stays ``submitted`` (that transaction
        may still be mined; reconciliation settles it). Already final: left as it is.
        """
        async with self._write_lock, self._sessions.begin() as session:
            row = await session.scalar(
                select(IntentRow).where(IntentRow.id == intent.id).with_for_update()
            )
            if row is None:
                session.add(self._new_intent_row(intent, mode, failure=reason))
                return IntentStatus.FAILED
            status = IntentStatus(row.status)
            if status in FINAL_INTENT_STATUSES:
                return status
            in_flight = await session.scalar(
                select(TransactionRow.id)
                .where(
                    TransactionRow.intent_id == intent.id,
                    TransactionRow.status.in_([str(TxStatus.SIGNED), str(TxStatus.SENT)]),
                )
                .limit(1)
            )
            if in_flight is not None:
                return status
            self._transition_intent(row, IntentStatus.FAILED, reason)
            return IntentStatus.FAILED

    async def get_intent(self, intent_id: str) -> IntentRecord:
        async with self._sessions() as session:
            return _intent_record(await self._intent_row(session, intent_id))

    async def list_intents(
        self, statuses: Sequence[IntentStatus] | None = None, run_id: int | None = None
    ) -> list[IntentRecord]:
        """Intents (optionally only those in ``statuses``, of run ``run_id``), oldest first."""
        async with self._sessions() as session:
            query = select(IntentRow).order_by(IntentRow.created_at, IntentRow.id)
            if statuses is not None:
                query = query.where(IntentRow.status.in_([str(s) for s in statuses]))
            if run_id is not None:
                query = query.where(IntentRow.run_id == run_id)
            rows = (await session.scalars(query)).all()
            return [_intent_record(r) for r in rows]

    async def list_non_final_intents(self) -> list[IntentRecord]:
        non_final = [s for s in IntentStatus if s not in FINAL_INTENT_STATUSES]
        return await self.list_intents(non_final)

    # -- transactions ---------------------------------------------------------------------

    async def record_signed_tx(
        self,
        tx_hash: str,
        raw_tx: bytes,
        chain_id: int,
        sender: str,
        nonce: int,
        purpose: str,
        gas_limit: int,
        max_fee_per_gas_wei: int,
        max_priority_fee_per_gas_wei: int,
        to_address: str | None,
        value_wei: int = 0,
        intent_id: str | None = None,
    ) -> None:
        """Journal a signed transaction BEFORE it is broadcast (status ``signed``).

        When it belongs to a ``pending`` intent, the intent moves to ``submitted`` in the same DB
        transaction, so the journal never shows a signed transaction for a pending intent.
        """
        async with self._write_lock, self._sessions.begin() as session:
            if intent_id is not None:
                intent_row = await self._intent_row(session, intent_id)
                if intent_row.status == IntentStatus.PENDING:
                    self._transition_intent(intent_row, IntentStatus.SUBMITTED, tx_hash)
                elif intent_row.status != IntentStatus.SUBMITTED:
                    raise InvalidTransition(
                        f"intent {intent_id} is {intent_row.status}; cannot sign for it"
                    )
            if await self._revive_refused_tx(session, tx_hash, intent_id):
                return
            session.add(
                TransactionRow(
                    intent_id=intent_id,
                    purpose=purpose,
                    chain_id=chain_id,
                    sender=sender,
                    nonce=nonce,
                    tx_hash=tx_hash,
                    raw_tx=raw_tx,
                    to_address=to_address,
                    value_wei=value_wei,
                    gas_limit=gas_limit,
                    max_fee_per_gas_wei=max_fee_per_gas_wei,
                    max_priority_fee_per_gas_wei=max_priority_fee_per_gas_wei,
                    status=TxStatus.SIGNED,
                    status_history=[_history_entry(TxStatus.SIGNED, None)],
                )
            )

    @staticmethod
    async def _revive_refused_tx(
        session: AsyncSession, tx_hash: str, intent_id: str | None
    ) -> bool:
        """The same transaction signed again after its broadcast was refused (same nonce,
        fees and data give the same hash): its ``dropped`` row is ``signed`` again rather than
        a second row. False when there is no such row."""
        row = await session.scalar(select(TransactionRow).where(TransactionRow.tx_hash == tx_hash))
        if row is None:
            return False
        if row.status != TxStatus.DROPPED:
            raise InvalidTransition(f"transaction {tx_hash} is already journaled as {row.status}")
        row.status = TxStatus.SIGNED
        row.intent_id = intent_id
        row.status_history = [*row.status_history, _history_entry(TxStatus.SIGNED, "signed again")]
        row.updated_at = utc_now()
        return True

    async def mark_sent(self, tx_hash: str) -> bool:
        """The submit RPC accepted ``tx_hash``."""
        return await self._set_tx_status(tx_hash, TxStatus.SENT)

    async def mark_bundled(self, tx_hash: str, bundle_hash: str, last_block: int) -> bool:
        """Relays accepted ``tx_hash`` in bundle ``bundle_hash`` for blocks up to
        ``last_block`` (status ``sent``; never rebroadcast)."""
        return await self._set_tx_status(
            tx_hash,
            TxStatus.SENT,
            detail=f"bundle {bundle_hash} up to block {last_block}",
            bundle=(bundle_hash, last_block),
        )

    async def mark_mined(
        self, tx_hash: str, block_number: int, gas_used: int, effective_gas_price_wei: int
    ) -> bool:
        """Receipt with status 1. Gas price in wei per gas."""
        return await self._set_tx_status(
            tx_hash,
            TxStatus.MINED,
            block_number=block_number,
            gas_used=gas_used,
            effective_gas_price_wei=effective_gas_price_wei,
        )

    async def mark_reverted(
        self, tx_hash: str, block_number: int, gas_used: int, effective_gas_price_wei: int
    ) -> bool:
        """Receipt with status 0 (gas was still paid)."""
        return await self._set_tx_status(
            tx_hash,
            TxStatus.REVERTED,
            block_number=block_number,
            gas_used=gas_used,
            effective_gas_price_wei=effective_gas_price_wei,
        )

    async def mark_dropped(self, tx_hash: str, detail: str) -> bool:
        """Never mined: the send failed before broadcast, or its nonce went to a stranger."""
        return await self._set_tx_status(tx_hash, TxStatus.DROPPED, detail=detail)

    async def mark_replaced(self, tx_hash: str, replaced_by: str) -> bool:
        """Another journaled transaction with the same nonce (``replaced_by``) took its place."""
        return await self._set_tx_status(
            tx_hash, TxStatus.REPLACED, detail=replaced_by, replaced_by=replaced_by
        )

    async def get_tx(self, tx_hash: str) -> TxRecord:
        async with self._sessions() as session:
            return _tx_record(await self._tx_row(session, tx_hash))

    async def txs_for_intent(self, intent_id: str) -> list[TxRecord]:
        """The intent's transactions in signing order."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(TransactionRow)
                .where(TransactionRow.intent_id == intent_id)
                .order_by(TransactionRow.id)
            )
            return [_tx_record(r) for r in rows.all()]

    async def txs_with_nonce(self, chain_id: int, sender: str, nonce: int) -> list[TxRecord]:
        """Every journaled transaction of ``sender`` using ``nonce`` (originals, replacements)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(TransactionRow)
                .where(
                    TransactionRow.chain_id == chain_id,
                    TransactionRow.sender == sender,
                    TransactionRow.nonce == nonce,
                )
                .order_by(TransactionRow.id)
            )
            return [_tx_record(r) for r in rows.all()]

    async def list_txs(self, statuses: Sequence[TxStatus] | None = None) -> list[TxRecord]:
        """Transactions (optionally only those in ``statuses``) ordered by sender, then nonce."""
        async with self._sessions() as session:
            query = select(TransactionRow).order_by(
                TransactionRow.sender, TransactionRow.nonce, TransactionRow.id
            )
            if statuses is not None:
                query = query.where(TransactionRow.status.in_([str(s) for s in statuses]))
            return [_tx_record(r) for r in (await session.scalars(query)).all()]

    async def list_non_final(self) -> list[TxRecord]:
        """Transactions not yet known to be mined, reverted, dropped or replaced, by nonce."""
        return await self.list_txs([s for s in TxStatus if s not in FINAL_TX_STATUSES])

    # -- fills, rejections, equity, strategy state, alerts ----------------------------------

    async def record_fill(self, fill: Fill, move_paper_balances: bool = False) -> bool:
        """Store ``fill`` and move its intent to ``filled`` in one DB transaction.

        With ``move_paper_balances`` the paper portfolio pays ``fill.amount_in`` of ``token_in``
        and receives ``fill.amount_out`` of ``token_out`` in the same transaction
        (``InsufficientPaperBalance`` if it cannot pay). Returns False (and changes nothing)
        when the intent already has a fill: settling twice after a crash must not double-count.
        """
        async with self._write_lock, self._sessions.begin() as session:
            existing = await session.scalar(
                select(FillRow).where(FillRow.intent_id == fill.intent_id)
            )
            if existing is not None:
                return False
            row = await self._intent_row(session, fill.intent_id)
            if move_paper_balances:
                await self._move_paper_balances(session, fill)
            if row.status == IntentStatus.PENDING and fill.tx_hash is None:
                # paper fills never sign anything: pending -> submitted -> filled
                self._transition_intent(row, IntentStatus.SUBMITTED, "paper")
            self._transition_intent(row, IntentStatus.FILLED, fill.tx_hash)
            session.add(
                FillRow(
                    intent_id=fill.intent_id,
                    run_id=row.run_id,
                    opportunity_id=fill.opportunity_id or row.opportunity_id,
                    tx_hash=fill.tx_hash,
                    mode=fill.mode,
                    token_in=fill.token_in,
                    token_out=fill.token_out,
                    amount_in_predicted=fill.predicted_amount_in,
                    amount_in_realised=fill.amount_in,
                    amount_out_predicted=fill.predicted_amount_out,
                    amount_out_realised=fill.amount_out,
                    profit_predicted=fill.predicted_profit,
                    profit_realised=fill.profit,
                    gas_used=fill.gas_used,
                    gas_cost_wei=fill.gas_cost_wei,
                    l1_fee_wei=fill.l1_fee_wei,
                    gas_cost_predicted_wei=fill.predicted_gas_cost_wei,
                    l1_fee_predicted_wei=fill.predicted_l1_fee_wei,
                    profit_predicted_usd=fill.predicted_profit_usd,
                    profit_realised_usd=fill.profit_usd,
                    block_number=fill.block_number,
                    block_hash=fill.block_hash,
                    finality=fill.finality,
                )
            )
            return True

    # -- finality: fills awaiting confirmations, and what a reorg did to them -------------------

    async def unconfirmed_fills(self) -> list[Fill]:
        """Fills still pending confirmation (``FILL_PENDING``), oldest first."""
        async with self._sessions() as session:
            query = select(FillRow).where(FillRow.finality == FILL_PENDING).order_by(FillRow.id)
            return [_fill_from_row(r) for r in (await session.scalars(query)).all()]

    async def confirm_fill(self, intent_id: str) -> bool:
        """The fill of ``intent_id`` is final (its block is deep enough and still canonical).
        False when it was not pending."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._pending_fill_row(session, intent_id)
            if row is None:
                return False
            row.finality = FILL_FINAL
            return True

    async def move_fill(self, fill: Fill, detail: str) -> bool:
        """A reorg moved the fill's transaction into another block: the fill takes the new
        block, hash and realised amounts (re-read from the new receipt; its USD profit is
        priced again by whoever calls ``set_fill_usd``), the trade transaction the new block.
        ``detail`` (what moved where) goes into the intent's and the transaction's history.
        False when the fill was not pending."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._pending_fill_row(session, fill.intent_id)
            if row is None:
                return False
            row.amount_in_realised = fill.amount_in
            row.amount_out_realised = fill.amount_out
            row.profit_realised = fill.profit
            row.gas_used = fill.gas_used
            row.gas_cost_wei = fill.gas_cost_wei
            row.l1_fee_wei = fill.l1_fee_wei
            row.block_number = fill.block_number
            row.block_hash = fill.block_hash
            row.profit_realised_usd = fill.profit_usd
            row.finality = fill.finality
            intent = await self._intent_row(session, fill.intent_id)
            intent.status_history = [*intent.status_history, _history_entry(intent.status, detail)]
            if fill.tx_hash is not None:
                tx = await self._tx_row(session, fill.tx_hash)
                tx.block_number = fill.block_number
                tx.status_history = [*tx.status_history, _history_entry(tx.status, detail)]
                tx.updated_at = utc_now()
            return True

    async def void_fill(
        self,
        intent_id: str,
        detail: str,
        *,
        reverted_in_block: int | None = None,
        also_gone: Sequence[str] = (),
    ) -> bool:
        """A reorg took the fill's trade out of the chain: the fill is void (``FILL_REORGED``:
        listed as reorged out, counted nowhere), the intent ``reorged`` and its trade
        transaction ``dropped``, all with ``detail``; so are the intent's other transactions
        in ``also_gone`` (its approvals the reorg took out too). With ``reverted_in_block``
        the transaction came back in that block and reverted: intent and transaction are
        ``reverted``. False when the fill was not pending."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._pending_fill_row(session, intent_id)
            if row is None:
                return False
            row.finality = FILL_REORGED
            intent = await self._intent_row(session, intent_id)
            status = IntentStatus.REORGED if reverted_in_block is None else IntentStatus.REVERTED
            if status not in REORG_CORRECTIONS.get(IntentStatus(intent.status), frozenset()):
                raise InvalidTransition(f"intent {intent_id}: {intent.status} -> {status}")
            intent.status = status
            intent.status_detail = detail
            intent.status_history = [*intent.status_history, _history_entry(status, detail)]
            intent.updated_at = utc_now()
            gone = {tx_hash: TxStatus.DROPPED for tx_hash in also_gone}
            if row.tx_hash is not None:
                gone[row.tx_hash] = (
                    TxStatus.DROPPED if reverted_in_block is None else TxStatus.REVERTED
                )
            for tx_hash, tx_status in gone.items():
                tx = await self._tx_row(session, tx_hash)
                tx.status = tx_status
                tx.block_number = reverted_in_block if tx_hash == row.tx_hash else None
                tx.status_history = [*tx.status_history, _history_entry(tx_status, detail)]
                tx.updated_at = utc_now()
            return True

    @staticmethod
    async def _pending_fill_row(session: AsyncSession, intent_id: str) -> FillRow | None:
        return await session.scalar(
            select(FillRow)
            .where(FillRow.intent_id == intent_id, FillRow.finality == FILL_PENDING)
            .with_for_update()
        )

    async def set_fill_usd(
        self, intent_id: str, profit_usd: float, predicted_profit_usd: float | None = None
    ) -> bool:
        """Store the fill's realised profit in USD (priced at its block) and, when given, the
        predicted one. Returns False when the intent has no fill."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await session.scalar(select(FillRow).where(FillRow.intent_id == intent_id))
            if row is None:
                return False
            row.profit_realised_usd = profit_usd
            if predicted_profit_usd is not None:
                row.profit_predicted_usd = predicted_profit_usd
            return True

    async def seed_paper_balances(self, balances: Mapping[str, int]) -> bool:
        """Give the paper portfolio its starting ``balances`` (token -> smallest units), once:
        returns False and changes nothing when it already holds anything."""
        async with self._write_lock, self._sessions.begin() as session:
            if (await session.scalars(select(PaperBalanceRow.token).limit(1))).first() is not None:
                return False
            for token, amount in balances.items():
                session.add(PaperBalanceRow(token=token, amount=int(amount)))
            return True

    async def paper_balances(self) -> dict[str, int]:
        """The paper portfolio: token address -> smallest units (zero balances omitted)."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(PaperBalanceRow))).all()
            return {r.token: r.amount for r in rows if r.amount != 0}

    @staticmethod
    async def _move_paper_balances(session: AsyncSession, fill: Fill) -> None:
        paying = await session.get(PaperBalanceRow, fill.token_in, with_for_update=True)
        held = paying.amount if paying is not None else 0
        if held < fill.amount_in:
            raise InsufficientPaperBalance(
                f"paper portfolio holds {held} of {fill.token_in}, the fill needs {fill.amount_in}"
            )
        if paying is not None:
            paying.amount = held - fill.amount_in
            paying.updated_at = utc_now()
        await session.flush()
        receiving = await session.get(PaperBalanceRow, fill.token_out, with_for_update=True)
        if receiving is None:
            session.add(PaperBalanceRow(token=fill.token_out, amount=fill.amount_out))
        else:
            receiving.amount += fill.amount_out
            receiving.updated_at = utc_now()

    async def get_fill(self, intent_id: str) -> Fill | None:
        async with self._sessions() as session:
            row = await session.scalar(select(FillRow).where(FillRow.intent_id == intent_id))
            return None if row is None else _fill_from_row(row)

    async def list_fills(
        self, mode: str | None = None, run_id: int | None = None, include_void: bool = False
    ) -> list[Fill]:
        """Fills (optionally of ``mode``, of run ``run_id``), oldest first: those that count
        (pending confirmation or final), and with ``include_void`` the reorged-out ones too."""
        async with self._sessions() as session:
            query = select(FillRow).order_by(FillRow.id)
            if not include_void:
                query = query.where(FillRow.finality != FILL_REORGED)
            if mode is not None:
                query = query.where(FillRow.mode == mode)
            if run_id is not None:
                query = query.where(FillRow.run_id == run_id)
            return [_fill_from_row(r) for r in (await session.scalars(query)).all()]

    async def fill_runs(self) -> dict[str, int | None]:
        """The run of every fill: intent id -> run id (None: journaled outside any run)."""
        async with self._sessions() as session:
            rows = (await session.execute(select(FillRow.intent_id, FillRow.run_id))).all()
            return {intent_id: run_id for intent_id, run_id in rows}

    async def record_rejection(
        self,
        strategy: str,
        reason: str,
        detail: str = "",
        opportunity_id: str | None = None,
        intent_id: str | None = None,
    ) -> None:
        """Store a risk-gate refusal; a journaled pending intent moves to ``rejected``.

        The row carries the intent's run (else this journal's) and the refused opportunity's
        block, so ``rejection_counts`` can tell the refusals of recent blocks."""
        async with self._write_lock, self._sessions.begin() as session:
            run_id = self.run_id
            refused = opportunity_id
            if intent_id is not None:
                row = await session.get(IntentRow, intent_id)
                if row is not None:
                    self._transition_intent(row, IntentStatus.REJECTED, reason)
                    run_id = row.run_id if row.run_id is not None else run_id
                    refused = refused or row.opportunity_id
            opportunity = None if refused is None else await session.get(OpportunityRow, refused)
            session.add(
                RiskRejectionRow(
                    opportunity_id=opportunity_id,
                    intent_id=intent_id,
                    run_id=run_id,
                    block_number=None if opportunity is None else opportunity.block_number,
                    strategy=strategy,
                    reason=reason,
                    detail=detail,
                )
            )

    async def count_rejections(self, reason: str | None = None) -> int:
        async with self._sessions() as session:
            query = select(RiskRejectionRow.id)
            if reason is not None:
                query = query.where(RiskRejectionRow.reason == reason)
            return len((await session.scalars(query)).all())

    async def rejection_counts(
        self, run_id: int | None = None, since_block: int | None = None
    ) -> dict[str, int]:
        """Refusals by reason, most frequent first: of run ``run_id`` (all runs when None),
        of opportunities at ``since_block`` or later (every block when None)."""
        async with self._sessions() as session:
            count = func.count(RiskRejectionRow.id)
            query = select(RiskRejectionRow.reason, count).group_by(RiskRejectionRow.reason)
            if run_id is not None:
                query = query.where(RiskRejectionRow.run_id == run_id)
            if since_block is not None:
                query = query.where(RiskRejectionRow.block_number >= since_block)
            rows = (
                await session.execute(query.order_by(count.desc(), RiskRejectionRow.reason))
            ).all()
            return {str(reason): int(n) for reason, n in rows}

    async def list_rejections(
        self,
        run_id: int | None = None,
        since_block: int | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> list[RejectionRecord]:
        """Refusals, newest first: of run ``run_id`` (all when None), of opportunities at
        ``since_block`` or later, of ``reason``; at most ``limit`` of them."""
        async with self._sessions() as session:
            query = select(RiskRejectionRow).order_by(RiskRejectionRow.id.desc())
            if run_id is not None:
                query = query.where(RiskRejectionRow.run_id == run_id)
            if since_block is not None:
                query = query.where(RiskRejectionRow.block_number >= since_block)
            if reason is not None:
                query = query.where(RiskRejectionRow.reason == reason)
            if limit is not None:
                query = query.limit(limit)
            return [
                RejectionRecord(
                    created_at=r.created_at,
                    run_id=r.run_id,
                    block_number=r.block_number,
                    strategy=r.strategy,
                    reason=r.reason,
                    detail=r.detail,
                    opportunity_id=r.opportunity_id,
                    intent_id=r.intent_id,
                )
                for r in (await session.scalars(query)).all()
            ]

    async def snapshot_equity(
        self,
        mode: str,
        equity_usd: float,
        balances: Mapping[str, int],
        block_number: int | None = None,
        unit_prices_usd: Mapping[str, float] | None = None,
    ) -> None:
        """Store the portfolio at this moment: balances per token address, smallest units, and
        the prices they were valued at (USD per smallest unit)."""
        async with self._write_lock, self._sessions.begin() as session:
            session.add(
                EquitySnapshotRow(
                    run_id=self.run_id,
                    mode=mode,
                    equity_usd=equity_usd,
                    balances={token: str(int(amount)) for token, amount in balances.items()},
                    block_number=block_number,
                    unit_prices_usd=None if unit_prices_usd is None else dict(unit_prices_usd),
                )
            )

    async def equity_history(
        self, mode: str | None = None, run_id: int | None = None
    ) -> list[EquitySnapshot]:
        """Equity snapshots (optionally of ``mode``, of run ``run_id``), oldest first."""
        async with self._sessions() as session:
            query = select(EquitySnapshotRow).order_by(EquitySnapshotRow.id)
            if mode is not None:
                query = query.where(EquitySnapshotRow.mode == mode)
            if run_id is not None:
                query = query.where(EquitySnapshotRow.run_id == run_id)
            return [
                EquitySnapshot(
                    taken_at=r.taken_at,
                    mode=r.mode,
                    equity_usd=r.equity_usd,
                    balances={t: int(v) for t, v in r.balances.items()},
                    block_number=r.block_number,
                    run_id=r.run_id,
                    unit_prices_usd=dict(r.unit_prices_usd or {}),
                )
                for r in (await session.scalars(query)).all()
            ]

    async def get_strategy_state(self, strategy: str) -> dict[str, Any] | None:
        """The JSON state last saved by ``strategy``, or ``None``."""
        async with self._sessions() as session:
            row = await session.get(StrategyStateRow, strategy)
            return None if row is None else dict(row.state)

    async def set_strategy_state(self, strategy: str, state: Mapping[str, Any]) -> None:
        """Replace ``strategy``'s saved state (JSON-serialisable; big ints as strings)."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await session.get(StrategyStateRow, strategy)
            if row is None:
                session.add(StrategyStateRow(strategy=strategy, state=dict(state)))
            else:
                row.state = dict(state)
                row.updated_at = utc_now()

    # -- conditional orders ----------------------------------------------------------------

    async def add_order(
        self,
        *,
        kind: str,
        side: str,
        pair: str,
        amount: Decimal,
        trigger_price: Decimal | None = None,
        trail_distance: Decimal | None = None,
        trail_pct: Decimal | None = None,
        oco_with: int | None = None,
        placed_by: str = "",
    ) -> ConditionalOrder:
        """Store a new pending order (already validated by ``agent.orders``); with
        ``oco_with`` it joins that active order's one-cancels-the-other group. Raises
        ``OrderRejected`` when ``oco_with`` names no active order."""
        async with self._write_lock, self._sessions.begin() as session:
            group: int | None = None
            if oco_with is not None:
                sibling = await session.get(OrderRow, oco_with)
                if sibling is None or sibling.status not in ORDER_ACTIVE:
                    raise OrderRejected(f"no active order #{oco_with} to link with (OCO)")
                if sibling.oco_group is None:
                    sibling.oco_group = sibling.id
                group = sibling.oco_group
            now = utc_now()
            row = OrderRow(
                created_at=now,
                updated_at=now,
                kind=kind,
                side=side,
                pair=pair,
                amount=str(amount),
                trigger_price=None if trigger_price is None else str(trigger_price),
                trail_distance=None if trail_distance is None else str(trail_distance),
                trail_pct=None if trail_pct is None else str(trail_pct),
                oco_group=group,
                status=ORDER_PENDING,
                reason="",
                attempts=0,
                placed_by=placed_by,
            )
            session.add(row)
            await session.flush()
            return _order_from_row(row)

    async def list_orders(self, active_only: bool = False) -> list[ConditionalOrder]:
        """Orders by id; only pending and triggered ones with ``active_only``."""
        query = select(OrderRow).order_by(OrderRow.id)
        if active_only:
            query = query.where(OrderRow.status.in_(ORDER_ACTIVE))
        async with self._sessions() as session:
            return [_order_from_row(r) for r in (await session.scalars(query)).all()]

    async def get_order(self, order_id: int) -> ConditionalOrder:
        async with self._sessions() as session:
            row = await session.get(OrderRow, order_id)
            if row is None:
                raise OrderRejected(f"no order #{order_id}")
            return _order_from_row(row)

    async def cancel_order(self, order_id: int, reason: str) -> ConditionalOrder:
        """Cancel a pending order. A triggered one has a trade on its way and cannot be
        called back (``InvalidTransition``); a finished one stays as it ended."""
        async with self._write_lock, self._sessions.begin() as session:
            row = await session.get(OrderRow, order_id)
            if row is None:
                raise OrderRejected(f"no order #{order_id}")
            if row.status != ORDER_PENDING:
                why = "its trade is in flight" if row.status == ORDER_TRIGGERED else "it ended"
                raise OrderRejected(f"order #{order_id} is {row.status}: {why}")
            row.status = ORDER_CANCELLED
            row.reason = reason
            row.updated_at = utc_now()
            return _order_from_row(row)

    async def apply_order_updates(self, updates: Sequence[OrderUpdate]) -> None:
        """Record what the orders strategy decided, in one transaction. A fill always lands
        (the trade happened) and cancels the rest of its OCO group; any other status change
        applies only to an order still active (an operator's cancel stands), or to a filled
        one whose fill a reorg voided (it fails; its OCO group stays cancelled)."""
        if not updates:
            return
        async with self._write_lock, self._sessions.begin() as session:
            now = utc_now()
            for update in updates:
                row = await session.get(OrderRow, update.order_id)
                if row is None:
                    continue
                if update.peak is not None and row.status in ORDER_ACTIVE:
                    row.peak = update.peak
                if update.attempts is not None:
                    row.attempts = update.attempts
                if update.status is not None and (
                    update.status == ORDER_FILLED
                    or row.status in ORDER_ACTIVE
                    or (update.reorged and row.status == ORDER_FILLED)
                ):
                    row.status = update.status
                    row.reason = update.reason
                if update.status == ORDER_FILLED and row.oco_group is not None:
                    siblings = await session.scalars(
                        select(OrderRow).where(
                            OrderRow.oco_group == row.oco_group,
                            OrderRow.id != row.id,
                            OrderRow.status.in_(ORDER_ACTIVE),
                        )
                    )
                    for sibling in siblings.all():
                        sibling.status = ORDER_CANCELLED
                        sibling.reason = f"OCO: order #{row.id} filled"
                        sibling.updated_at = now
                row.updated_at = now

    async def record_alert(
        self, level: str, kind: str, message: str, channels: Mapping[str, Any] | None = None
    ) -> None:
        """Store an alert as sent; ``channels`` maps channel name -> delivery outcome."""
        async with self._write_lock, self._sessions.begin() as session:
            session.add(
                AlertRow(level=level, kind=kind, message=message, channels=dict(channels or {}))
            )

    async def record_control_action(
        self,
        *,
        source: str,
        actor: str,
        action: str,
        accepted: bool,
        argument: str = "",
        detail: str = "",
    ) -> None:
        """Journal an operator control action (``pause``, ``resume``, ``kill``, ``status``...)
        from ``source`` (``cli``, ``telegram``, ``api``) by ``actor``, obeyed or refused
        (``detail`` says why). Texts are cut to their columns; they must hold no secrets."""
        async with self._write_lock, self._sessions.begin() as session:
            session.add(
                ControlActionRow(
                    source=source[:16],
                    actor=actor[:200],
                    action=action[:32],
                    argument=argument[:500],
                    accepted=accepted,
                    detail=detail[:500],
                )
            )

    async def list_control_actions(
        self, *, source: str | None = None, since: datetime | None = None
    ) -> list[ControlActionRecord]:
        """Journaled control actions, oldest first: every one, or only ``source``'s and/or
        those journaled at or after ``since``."""
        query = select(ControlActionRow).order_by(ControlActionRow.id)
        if source is not None:
            query = query.where(ControlActionRow.source == source)
        if since is not None:
            query = query.where(ControlActionRow.created_at >= since)
        async with self._sessions() as session:
            rows = await session.scalars(query)
            return [
                ControlActionRecord(
                    at=r.created_at,
                    source=r.source,
                    actor=r.actor,
                    action=r.action,
                    argument=r.argument,
                    accepted=r.accepted,
                    detail=r.detail,
                )
                for r in rows.all()
            ]

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    async def _intent_row(session: AsyncSession, intent_id: str) -> IntentRow:
        row = await session.scalar(
            select(IntentRow).where(IntentRow.id == intent_id).with_for_update()
        )
        if row is None:
            raise JournalNotFound(f"intent {intent_id} is not in the journal")
        return row

    @staticmethod
    async def _run_row(session: AsyncSession, run_id: int) -> RunRow:
        row = await session.get(RunRow, run_id)
        if row is None:
            raise JournalNotFound(f"run {run_id} is not in the journal")
        return row

    @staticmethod
    async def _tx_row(session: AsyncSession, tx_hash: str) -> TransactionRow:
        row = await session.scalar(
            select(TransactionRow).where(TransactionRow.tx_hash == tx_hash).with_for_update()
        )
        if row is None:
            raise JournalNotFound(f"transaction {tx_hash} is not in the journal")
        return row

    @staticmethod
    def _transition_intent(row: IntentRow, status: IntentStatus, detail: str | None) -> bool:
        current = IntentStatus(row.status)
        if current == status:
            return False
        if status not in INTENT_TRANSITIONS[current]:
            raise InvalidTransition(f"intent {row.id}: {current} -> {status} is not allowed")
        row.status = status
        row.status_detail = detail
        row.status_history = [*row.status_history, _history_entry(status, detail)]
        row.updated_at = utc_now()
        return True

    async def _set_tx_status(
        self,
        tx_hash: str,
        status: TxStatus,
        detail: str | None = None,
        block_number: int | None = None,
        gas_used: int | None = None,
        effective_gas_price_wei: int | None = None,
        replaced_by: str | None = None,
        bundle: tuple[str, int] | None = None,
    ) -> bool:
        async with self._write_lock, self._sessions.begin() as session:
            row = await self._tx_row(session, tx_hash)
            if bundle is not None:
                row.bundle_hash, row.bundle_last_block = bundle
            current = TxStatus(row.status)
            if current == status:
                return False
            if status not in TX_TRANSITIONS[current]:
                raise InvalidTransition(
                    f"transaction {tx_hash}: {current} -> {status} is not allowed"
                )
            row.status = status
            row.status_history = [*row.status_history, _history_entry(status, detail)]
            row.updated_at = utc_now()
            if block_number is not None:
                row.block_number = block_number
                row.gas_used = gas_used
                row.effective_gas_price_wei = effective_gas_price_wei
            if replaced_by is not None:
                row.replaced_by = replaced_by
            return True
