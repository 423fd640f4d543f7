"""equity snapshots keep the prices they were valued at

Adds a nullable JSON ``unit_prices_usd`` on ``equity_snapshots``: token address -> USD per
smallest unit at that block, the prices the portfolio valued its balances at. ``report`` values
the run's starting balances with them (the "hold" benchmark) and draws the price series. Rows
written before this revision keep NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN: works in place on SQLite and PostgreSQL
    op.add_column("equity_snapshots", sa.Column("unit_prices_usd", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("equity_snapshots", "unit_prices_usd")
