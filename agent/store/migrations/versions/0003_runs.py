"""runs: each start of the agent, and the run every journaled row belongs to

Adds the ``runs`` table and a nullable ``run_id`` on opportunities, intents, fills, equity
snapshots and risk rejections (rows written before this revision keep NULL: they belong to no
recorded run). Fills also keep their ``opportunity_id``, and rejections the block of the refused
opportunity, so ``status`` can count the refusals of recent blocks.

``run_id`` is a plain indexed integer, not a foreign key: SQLite can add or drop a constrained
column only by copying the table, and copying ``intents`` or ``opportunities`` (referenced by
other tables) fails on a populated journal with foreign keys on. Plain ``ADD COLUMN`` and
``DROP COLUMN`` work in place on both SQLite (3.35+) and PostgreSQL. Only the journal writes runs
and it never deletes one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent.store.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_TABLES = ("opportunities", "intents", "fills", "equity_snapshots", "risk_rejections")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("chain_name", sa.String(length=64), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("started_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", agent.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", agent.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_block", sa.Integer(), nullable=True),
        sa.Column("last_block_at", agent.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_runs_started_at"), "runs", ["started_at"], unique=False)
    for table in RUN_TABLES:
        op.add_column(table, sa.Column("run_id", sa.Integer(), nullable=True))
        op.create_index(op.f(f"ix_{table}_run_id"), table, ["run_id"], unique=False)
    op.add_column("fills", sa.Column("opportunity_id", sa.String(length=64), nullable=True))
    op.add_column("risk_rejections", sa.Column("block_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    # In place (no batch copy): see the module docstring. An indexed column loses its index first.
    op.drop_column("risk_rejections", "block_number")
    op.drop_column("fills", "opportunity_id")
    for table in reversed(RUN_TABLES):
        op.drop_index(op.f(f"ix_{table}_run_id"), table_name=table)
        op.drop_column(table, "run_id")
    op.drop_index(op.f("ix_runs_started_at"), table_name="runs")
    op.drop_table("runs")
