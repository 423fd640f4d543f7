"""paper balances (the paper executor's virtual portfolio) and the block of each fill

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 08:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent.store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paper_balances",
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("amount", agent.store.models.TokenAmount(precision=78, scale=0), nullable=False),
        sa.Column("updated_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("block_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_column("block_number")
    op.drop_table("paper_balances")
