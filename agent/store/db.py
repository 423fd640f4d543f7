"""Async engine construction and schema migration.

``await init_db(url)`` builds the engine and brings the schema to the latest alembic revision,
programmatically, on a connection of that engine. SQLite files run in WAL mode with
``synchronous=FULL``: a committed journal step survives a power cut or a SIGKILL, and a reader in
another process never blocks the writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalise_db_url(url: str) -> str:
    """Pick the async driver for bare URLs: ``sqlite:///x.db`` -> ``sqlite+aiosqlite:///x.db``,
    ``postgresql://`` -> ``postgresql+asyncpg://``. URLs naming a driver are left alone."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Per connection, before any transaction: journal_mode cannot change inside one.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Several processes (the agent, `defi-agent status`, the chaos harness) share the file.
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def create_engine(url: str, echo: bool = False) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` (SQLite file or PostgreSQL); SQLite gets WAL + FULL sync."""
    url = normalise_db_url(url)
    engine = create_async_engine(url, echo=echo)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return engine


def alembic_config() -> Config:
    """An alembic ``Config`` pointing at our migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade_to_head(connection: Connection, cfg: Config) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending alembic revision on a connection of ``engine``."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_to_head, alembic_config())


async def init_db(url: str, echo: bool = False) -> AsyncEngine:
    """Create the engine for ``url`` and migrate the schema to head. The caller disposes it."""
    engine = create_engine(url, echo=echo)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (rows are read after each step)."""
    return async_sessionmaker(engine, expire_on_commit=False)
