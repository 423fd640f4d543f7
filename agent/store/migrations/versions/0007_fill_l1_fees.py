"""fills keep the L1 data fee and the predicted costs

Adds ``l1_fee_wei`` (the L1 data fee inside ``gas_cost_wei`` on OP-stack chains),
``gas_cost_predicted_wei`` (predicted L2 execution cost) and ``l1_fee_predicted_wei`` on
``fills``. ``report`` shows the L2 and L1 parts. Rows written before this revision get 0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent.store.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("l1_fee_wei", "gas_cost_predicted_wei", "l1_fee_predicted_wei")


def upgrade() -> None:
    # plain ADD COLUMN with a server default: works in place on SQLite and PostgreSQL
    for name in _COLUMNS:
        op.add_column(
            "fills",
            sa.Column(
                name,
                agent.store.models.TokenAmount(precision=78, scale=0),
                nullable=False,
                server_default="0",
            ),
        )


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
