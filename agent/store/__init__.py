"""Persistence: async SQLAlchemy engine, alembic migrations and the execution journal."""

from agent.store.db import create_engine, init_db, session_factory
from agent.store.journal import IntentRecord, Journal, RunRecord, TxRecord
from agent.store.models import IntentStatus, TxStatus

__all__ = [
    "IntentRecord",
    "IntentStatus",
    "Journal",
    "RunRecord",
    "TxRecord",
    "TxStatus",
    "create_engine",
    "init_db",
    "session_factory",
]
