"""control actions: every operator pause, resume, kill or query, obeyed or refused, and by whom

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent.store.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "control_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("argument", sa.Text(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_control_actions_created_at", "control_actions", ["created_at"])
    op.create_index("ix_control_actions_action", "control_actions", ["action"])


def downgrade() -> None:
    op.drop_index("ix_control_actions_action", table_name="control_actions")
    op.drop_index("ix_control_actions_created_at", table_name="control_actions")
    op.drop_table("control_actions")
