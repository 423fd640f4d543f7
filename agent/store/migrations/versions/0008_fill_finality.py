"""fills know their block hash and whether they are final

Adds ``block_hash`` (the receipt's block) and ``finality`` (``pending`` until
``execution.confirmations``, ``final``, or ``reorged`` when a reorg took the trade out of the
chain) on ``fills``. Rows written before this revision are final.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN with a server default: works in place on SQLite and PostgreSQL
    op.add_column("fills", sa.Column("block_hash", sa.String(length=66), nullable=True))
    op.add_column(
        "fills",
        sa.Column("finality", sa.String(length=16), nullable=False, server_default="final"),
    )
    op.create_index("ix_fills_finality", "fills", ["finality"])


def downgrade() -> None:
    op.drop_index("ix_fills_finality", table_name="fills")
    with op.batch_alter_table("fills") as batch:
        batch.drop_column("finality")
        batch.drop_column("block_hash")
