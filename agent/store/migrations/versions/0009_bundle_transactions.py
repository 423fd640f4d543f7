"""transactions sent in relay bundles

Adds ``bundle_hash`` and ``bundle_last_block`` on ``transactions``: a transaction sent in a
Flashbots-style bundle is never rebroadcast, and reconciliation calls it not included (dropped,
its nonce free again) once the chain has passed the bundle's last target block. NULL for every
transaction sent to an RPC, including all rows written before this revision.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("bundle_hash", sa.String(66), nullable=True))
    op.add_column("transactions", sa.Column("bundle_last_block", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("bundle_last_block")
        batch.drop_column("bundle_hash")
