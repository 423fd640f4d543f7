"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 08:14:19.838075
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent.store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_created_at"), ["created_at"], unique=False)

    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("taken_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("equity_usd", sa.Float(), nullable=False),
        sa.Column("balances", sa.JSON(), nullable=False),
        sa.Column("block_number", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_equity_snapshots_taken_at"), ["taken_at"], unique=False
        )

    op.create_table(
        "opportunities",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("token_in", sa.String(length=42), nullable=True),
        sa.Column(
            "amount_in", agent.store.models.TokenAmount(precision=78, scale=0), nullable=True
        ),
        sa.Column(
            "predicted_profit", agent.store.models.TokenAmount(precision=78, scale=0), nullable=True
        ),
        sa.Column("predicted_profit_usd", sa.Float(), nullable=True),
        sa.Column("block_number", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_opportunities_strategy"), ["strategy"], unique=False)

    op.create_table(
        "strategy_state",
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("strategy"),
    )
    op.create_table(
        "intents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("opportunity_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("token_in", sa.String(length=42), nullable=False),
        sa.Column("token_out", sa.String(length=42), nullable=False),
        sa.Column(
            "amount_in", agent.store.models.TokenAmount(precision=78, scale=0), nullable=False
        ),
        sa.Column(
            "min_amount_out", agent.store.models.TokenAmount(precision=78, scale=0), nullable=False
        ),
        sa.Column(
            "predicted_amount_out",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "predicted_profit",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column("predicted_profit_usd", sa.Float(), nullable=False),
        sa.Column("deadline", sa.Integer(), nullable=False),
        sa.Column("route", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("status_history", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("intents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intents_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_intents_strategy"), ["strategy"], unique=False)

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("token_in", sa.String(length=42), nullable=False),
        sa.Column("token_out", sa.String(length=42), nullable=False),
        sa.Column(
            "amount_in_predicted",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "amount_in_realised",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "amount_out_predicted",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "amount_out_realised",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "profit_predicted",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "profit_realised", agent.store.models.TokenAmount(precision=78, scale=0), nullable=False
        ),
        sa.Column("gas_used", sa.Integer(), nullable=False),
        sa.Column(
            "gas_cost_wei", agent.store.models.TokenAmount(precision=78, scale=0), nullable=False
        ),
        sa.Column("profit_predicted_usd", sa.Float(), nullable=True),
        sa.Column("profit_realised_usd", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["intents.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("intent_id"),
    )
    op.create_table(
        "risk_rejections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("opportunity_id", sa.String(length=64), nullable=True),
        sa.Column("intent_id", sa.String(length=64), nullable=True),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["intents.id"],
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("risk_rejections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_rejections_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_risk_rejections_reason"), ["reason"], unique=False)

    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("intent_id", sa.String(length=64), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.Integer(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=True),
        sa.Column(
            "value_wei", agent.store.models.TokenAmount(precision=78, scale=0), nullable=False
        ),
        sa.Column("gas_limit", sa.Integer(), nullable=False),
        sa.Column(
            "max_fee_per_gas_wei",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column(
            "max_priority_fee_per_gas_wei",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_history", sa.JSON(), nullable=False),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("block_number", sa.Integer(), nullable=True),
        sa.Column("gas_used", sa.Integer(), nullable=True),
        sa.Column(
            "effective_gas_price_wei",
            agent.store.models.TokenAmount(precision=78, scale=0),
            nullable=True,
        ),
        sa.Column("replaced_by", sa.String(length=66), nullable=True),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["intents.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tx_hash"),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transactions_intent_id"), ["intent_id"], unique=False)
        batch_op.create_index(
            "ix_transactions_sender_nonce", ["chain_id", "sender", "nonce"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transactions_status"), ["status"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transactions_status"))
        batch_op.drop_index("ix_transactions_sender_nonce")
        batch_op.drop_index(batch_op.f("ix_transactions_intent_id"))

    op.drop_table("transactions")
    with op.batch_alter_table("risk_rejections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_rejections_reason"))
        batch_op.drop_index(batch_op.f("ix_risk_rejections_created_at"))

    op.drop_table("risk_rejections")
    op.drop_table("fills")
    with op.batch_alter_table("intents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intents_strategy"))
        batch_op.drop_index(batch_op.f("ix_intents_status"))

    op.drop_table("intents")
    op.drop_table("strategy_state")
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_opportunities_strategy"))

    op.drop_table("opportunities")
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equity_snapshots_taken_at"))

    op.drop_table("equity_snapshots")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_created_at"))

    op.drop_table("alerts")
