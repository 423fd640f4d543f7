"""orders: operators' conditional orders (limit, stop-loss, take-profit, trailing stop, OCO)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent.store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("pair", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.String(length=80), nullable=False),
        sa.Column("trigger_price", sa.String(length=80), nullable=True),
        sa.Column("trail_distance", sa.String(length=80), nullable=True),
        sa.Column("trail_pct", sa.String(length=80), nullable=True),
        sa.Column("peak", sa.Float(), nullable=True),
        sa.Column("oco_group", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("placed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_orders_oco_group"), "orders", ["oco_group"], unique=False)
    op.create_index(op.f("ix_orders_status"), "orders", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_orders_status"), table_name="orders")
    op.drop_index(op.f("ix_orders_oco_group"), table_name="orders")
    op.drop_table("orders")
