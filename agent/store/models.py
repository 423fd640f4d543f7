"""ORM tables of the journal and the portfolio history.

Amounts are exact integers in smallest units stored with ``TokenAmount``: NUMERIC(78, 0) on
PostgreSQL (78 digits hold any uint256) and a decimal string on SQLite, whose NUMERIC affinity
would silently turn integers above 2**63 into floating point. USD figures, used only for
reporting, are floats. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine


def utc_now() -> datetime:
    return datetime.now(UTC)


class TokenAmount(TypeDecorator[int]):
    """An exact non-float integer of up to 78 digits (any uint256 / int256 magnitude)."""

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"amounts are int in smallest units, got {type(value).__name__}")
        if dialect.name == "sqlite":
            return str(value)
        from decimal import Decimal

        return Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass a UTC-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class IntentStatus(enum.StrEnum):
    """Lifecycle of an intent. ``pending`` is journaled before any I/O."""

    PENDING = "pending"  # recorded; nothing signed yet
    SUBMITTED = "submitted"  # at least one transaction signed and journaled
    FILLED = "filled"  # the trade transaction mined successfully; a fill row exists
    REVERTED = "reverted"  # the trade transaction mined but reverted
    FAILED = "failed"  # stopped before anything reached the chain (simulation revert, error)
    REJECTED = "rejected"  # the risk gate refused it
    CANCELLED = "cancelled"  # abandoned (interrupted before signing, dropped, cancelled on chain)
    REORGED = "reorged"  # filled, then a reorg took the trade out of the chain: its fill is void


class TxStatus(enum.StrEnum):
    """Lifecycle of one signed transaction. ``signed`` is journaled before broadcast."""

    SIGNED = "signed"  # signed and journaled, maybe not yet broadcast
    SENT = "sent"  # accepted by the submit RPC
    MINED = "mined"  # receipt status 1
    REVERTED = "reverted"  # receipt status 0
    DROPPED = "dropped"  # never mined and its nonce was used by something we did not journal
    REPLACED = "replaced"  # another journaled transaction with the same nonce mined


INTENT_TRANSITIONS: dict[IntentStatus, frozenset[IntentStatus]] = {
    IntentStatus.PENDING: frozenset(
        {
            IntentStatus.SUBMITTED,
            IntentStatus.FAILED,
            IntentStatus.REJECTED,
            IntentStatus.CANCELLED,
        }
    ),
    IntentStatus.SUBMITTED: frozenset(
        {
            IntentStatus.FILLED,
            IntentStatus.REVERTED,
            IntentStatus.FAILED,
            IntentStatus.CANCELLED,
        }
    ),
    IntentStatus.FILLED: frozenset(),
    IntentStatus.REVERTED: frozenset(),
    IntentStatus.FAILED: frozenset(),
    IntentStatus.REJECTED: frozenset(),
    IntentStatus.CANCELLED: frozenset(),
    IntentStatus.REORGED: frozenset(),
}

# What a reorg may still do to a settled trade (``Journal.void_fill``): its fill voided, or its
# transaction re-included in a block where it reverted. Kept outside the machine above, so a
# filled intent and a mined transaction stay final for reconciliation and every other writer.
REORG_CORRECTIONS: dict[IntentStatus, frozenset[IntentStatus]] = {
    IntentStatus.FILLED: frozenset({IntentStatus.REORGED, IntentStatus.REVERTED}),
}

TX_TRANSITIONS: dict[TxStatus, frozenset[TxStatus]] = {
    # signed -> mined/reverted directly: a crash between broadcast and mark_sent is found by
    # reconciliation as a receipt.
    TxStatus.SIGNED: frozenset(
        {TxStatus.SENT, TxStatus.MINED, TxStatus.REVERTED, TxStatus.DROPPED, TxStatus.REPLACED}
    ),
    TxStatus.SENT: frozenset(
        {TxStatus.MINED, TxStatus.REVERTED, TxStatus.DROPPED, TxStatus.REPLACED}
    ),
    TxStatus.MINED: frozenset(),
    TxStatus.REVERTED: frozenset(),
    TxStatus.DROPPED: frozenset(),
    TxStatus.REPLACED: frozenset(),
}

FINAL_INTENT_STATUSES = frozenset(s for s, nxt in INTENT_TRANSITIONS.items() if not nxt)
FINAL_TX_STATUSES = frozenset(s for s, nxt in TX_TRANSITIONS.items() if not nxt)


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    """One start of the agent: what ran (the mode actually used, not the config's), where, with
    which configuration, and whether it is still alive (``heartbeat_at``, the last block).

    Rows of a run carry its id in ``run_id`` (an indexed integer rather than a foreign key: see
    migration 0003); NULL for rows journaled before runs were recorded or outside any run.
    """

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(String(16))  # "live" | "fork" | "paper"
    chain_name: Mapped[str] = mapped_column(String(64))
    chain_id: Mapped[int] = mapped_column(Integer)
    config_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the redacted config
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stop_reason: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    last_block: Mapped[int | None] = mapped_column(Integer)
    last_block_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OpportunityRow(Base):
    """A scored opportunity a strategy produced (kept whether or not it was traded)."""

    __tablename__ = "opportunities"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    strategy: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    token_in: Mapped[str | None] = mapped_column(String(42))
    amount_in: Mapped[int | None] = mapped_column(TokenAmount)
    predicted_profit: Mapped[int | None] = mapped_column(TokenAmount)  # token_in units
    predicted_profit_usd: Mapped[float | None] = mapped_column(Float)
    block_number: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IntentRow(Base):
    """An intent the engine decided to carry out; journaled before any I/O."""

    __tablename__ = "intents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    opportunity_id: Mapped[str | None] = mapped_column(ForeignKey("opportunities.id"))
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    strategy: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "swap" | "arb"
    mode: Mapped[str] = mapped_column(String(16))  # "live" | "fork" | "paper"
    token_in: Mapped[str] = mapped_column(String(42))
    token_out: Mapped[str] = mapped_column(String(42))
    amount_in: Mapped[int] = mapped_column(TokenAmount)
    min_amount_out: Mapped[int] = mapped_column(TokenAmount)
    predicted_amount_out: Mapped[int] = mapped_column(TokenAmount)
    predicted_profit: Mapped[int] = mapped_column(TokenAmount)  # token_in units
    predicted_profit_usd: Mapped[float] = mapped_column(Float)
    deadline: Mapped[int] = mapped_column(Integer)  # unix seconds
    route: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), index=True, default=IntentStatus.PENDING)
    status_detail: Mapped[str | None] = mapped_column(Text)
    # [{"status": ..., "at": iso8601, "detail": ...}, ...] oldest first
    status_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class TransactionRow(Base):
    """One signed transaction. ``raw_tx`` is kept so reconciliation can rebroadcast it."""

    __tablename__ = "transactions"
    __table_args__ = (Index("ix_transactions_sender_nonce", "chain_id", "sender", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intent_id: Mapped[str | None] = mapped_column(ForeignKey("intents.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # approve | swap | arb | cancel | deploy
    chain_id: Mapped[int] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    to_address: Mapped[str | None] = mapped_column(String(42))
    value_wei: Mapped[int] = mapped_column(TokenAmount, default=0)
    gas_limit: Mapped[int] = mapped_column(Integer)
    max_fee_per_gas_wei: Mapped[int] = mapped_column(TokenAmount)
    max_priority_fee_per_gas_wei: Mapped[int] = mapped_column(TokenAmount)
    status: Mapped[str] = mapped_column(String(16), index=True, default=TxStatus.SIGNED)
    status_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    block_number: Mapped[int | None] = mapped_column(Integer)
    gas_used: Mapped[int | None] = mapped_column(Integer)
    effective_gas_price_wei: Mapped[int | None] = mapped_column(TokenAmount)
    replaced_by: Mapped[str | None] = mapped_column(String(66))
    # Sent in a relay bundle (revision 0010): its hash and the last block it targets; NULL for
    # a transaction sent to an RPC. Never rebroadcast; not included by that block = dropped.
    bundle_hash: Mapped[str | None] = mapped_column(String(66))
    bundle_last_block: Mapped[int | None] = mapped_column(Integer)


class FillRow(Base):
    """Predicted and realised amounts of one settled intent, side by side."""

    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("intents.id"), unique=True)
    # the intent's run and opportunity, copied so reports read fills without joins
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    opportunity_id: Mapped[str | None] = mapped_column(String(64))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    mode: Mapped[str] = mapped_column(String(16))
    token_in: Mapped[str] = mapped_column(String(42))
    token_out: Mapped[str] = mapped_column(String(42))
    amount_in_predicted: Mapped[int] = mapped_column(TokenAmount)
    amount_in_realised: Mapped[int] = mapped_column(TokenAmount)
    amount_out_predicted: Mapped[int] = mapped_column(TokenAmount)
    amount_out_realised: Mapped[int] = mapped_column(TokenAmount)
    profit_predicted: Mapped[int] = mapped_column(TokenAmount)  # token_in units, signed
    profit_realised: Mapped[int] = mapped_column(TokenAmount)
    gas_used: Mapped[int] = mapped_column(Integer, default=0)
    gas_cost_wei: Mapped[int] = mapped_column(TokenAmount, default=0)
    # The L1 data fee inside gas_cost_wei, and the predicted L2 / L1 costs (revision 0007).
    l1_fee_wei: Mapped[int] = mapped_column(TokenAmount, default=0)
    gas_cost_predicted_wei: Mapped[int] = mapped_column(TokenAmount, default=0)
    l1_fee_predicted_wei: Mapped[int] = mapped_column(TokenAmount, default=0)
    profit_predicted_usd: Mapped[float | None] = mapped_column(Float)
    profit_realised_usd: Mapped[float | None] = mapped_column(Float)
    block_number: Mapped[int | None] = mapped_column(Integer)
    # The receipt's block hash and whether the fill is pending confirmation, final or reorged
    # out (``agent.types.FILL_*``; revision 0009). Rows written before it are final.
    block_hash: Mapped[str | None] = mapped_column(String(66))
    finality: Mapped[str] = mapped_column(String(16), default="final", index=True)


class EquitySnapshotRow(Base):
    """Portfolio value at one moment: per-token balances (smallest units) and USD equity."""

    __tablename__ = "equity_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    mode: Mapped[str] = mapped_column(String(16))
    equity_usd: Mapped[float] = mapped_column(Float)
    # token address -> balance as a decimal string (JSON numbers would lose precision)
    balances: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    block_number: Mapped[int | None] = mapped_column(Integer)
    # token address -> USD per smallest unit the balances were valued at (migration 0005)
    unit_prices_usd: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)


class StrategyStateRow(Base):
    """Whatever a strategy needs to survive a restart (grid levels, DCA schedule), as JSON."""

    __tablename__ = "strategy_state"

    strategy: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class AlertRow(Base):
    """An alert as sent to the operator channels."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    channels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # channel -> outcome


class RiskRejectionRow(Base):
    """One refusal by the risk gate, with its machine-readable reason."""

    __tablename__ = "risk_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    opportunity_id: Mapped[str | None] = mapped_column(ForeignKey("opportunities.id"))
    intent_id: Mapped[str | None] = mapped_column(ForeignKey("intents.id"))
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    block_number: Mapped[int | None] = mapped_column(Integer)  # the refused opportunity's block
    strategy: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class PaperBalanceRow(Base):
    """The paper executor's virtual holdings: one row per token, smallest units."""

    __tablename__ = "paper_balances"

    token: Mapped[str] = mapped_column(String(42), primary_key=True)
    amount: Mapped[int] = mapped_column(TokenAmount)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class ControlActionRow(Base):
    """One operator control action (pause, resume, kill, status, ...), obeyed or refused.

    ``source`` is where it came from (``cli``, ``telegram``, ``api``); ``actor`` who sent it
    (``telegram user 42 in chat -100...``, ``cli root@host pid 7``); ``accepted`` False with
    ``detail`` the refusal reason (not allowlisted, anonymous admin, forwarded, ...).
    """

    __tablename__ = "control_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    source: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32), index=True)
    argument: Mapped[str] = mapped_column(Text, default="")
    accepted: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")


class OrderRow(Base):
    """An operator's conditional order (``defi-agent order add``, Telegram ``/order``).

    Amounts and prices are exact decimal strings: ``amount`` in whole tokens of what the order
    spends (the decimals are the chain's, known when the order is priced), prices in whole
    quote per whole base. ``peak`` is the trailing stop's extreme price so far (a decision
    input, float like every price); ``reason`` says why the status is what it is.
    """

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    kind: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(4))
    pair: Mapped[str] = mapped_column(String(100))
    amount: Mapped[str] = mapped_column(String(80))
    trigger_price: Mapped[str | None] = mapped_column(String(80))
    trail_distance: Mapped[str | None] = mapped_column(String(80))
    trail_pct: Mapped[str | None] = mapped_column(String(80))
    peak: Mapped[float | None] = mapped_column(Float)
    oco_group: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    placed_by: Mapped[str] = mapped_column(String(200), default="")
