"""Alembic environment for the agent's store.

Two ways in: programmatically from ``agent.store.db.migrate`` (a live connection is passed in
``config.attributes["connection"]``), or from the alembic CLI with
``alembic -c agent/store/alembic.ini -x url=sqlite:///data/agent.db upgrade head`` (the URL may also
come from the ``DEFI_AGENT_DB_URL`` environment variable).
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from agent.store.db import create_engine
from agent.store.models import Base

config = context.config
target_metadata = Base.metadata


def _do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_do_run_migrations)
    finally:
        await engine.dispose()


def _cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "DEFI_AGENT_DB_URL"
    )
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set DEFI_AGENT_DB_URL")
    return url


if context.is_offline_mode():
    context.configure(url=_cli_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _do_run_migrations(connection)
    else:
        if config.config_file_name is not None:
            fileConfig(config.config_file_name, disable_existing_loggers=False)
        asyncio.run(_run_with_url(_cli_url()))
