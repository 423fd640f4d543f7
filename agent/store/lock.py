"""One agent per journal and per wallet: exclusive locks taken before anything is signed.

Two agents on the same key collide on nonces; on the same journal one's reconciliation cancels
the other's intents, and both fill the same exposure caps. So ``open_agent`` takes:

* the journal's lock: for SQLite an ``flock`` on ``<database file>.lock`` beside it; for
  PostgreSQL a session advisory lock (``pg_try_advisory_lock``) held by a connection kept open
  for the whole run (the server drops it when that connection ends, crash or not);
* the wallet's lock: an ``flock`` on ``.<address>.lock`` beside the keystore.

A process that dies (SIGKILL included) loses its flocks and its connection, so a stale lock
never blocks a restart. The holder writes who it is (pid, host, start time) into the lock file,
or into the lock connection's ``application_name`` for PostgreSQL; a second agent is refused
with ``InstanceLocked`` naming it (``defi-agent run`` exits 2).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from agent.errors import InstanceLocked, LockUnavailable

log = logging.getLogger(__name__)

# The advisory lock key of "the journal" in its database: a fixed positive 63-bit number, the
# same for every agent (advisory lock keys are per database).
JOURNAL_ADVISORY_LOCK_KEY = 0x5D1A_6E7F_3C2B_0A91
_APPLICATION_PREFIX = "defi-agent"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a lock: process id, host and start time (UTC, ISO 8601)."""

    pid: int
    host: str
    started_at: str

    @classmethod
    def this_process(cls) -> LockHolder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started_at}"

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started_at": self.started_at})

    @classmethod
    def from_text(cls, raw: str) -> LockHolder | None:
        try:
            fields = json.loads(raw)
            return cls(int(fields["pid"]), str(fields["host"]), str(fields["started_at"]))
        except (ValueError, KeyError, TypeError):
            return None

    def application_name(self) -> str:
        """The PostgreSQL ``application_name`` that names this holder (at most 63 bytes)."""
        return f"{_APPLICATION_PREFIX} pid={self.pid} since={self.started_at} host={self.host}"[:63]

    @classmethod
    def from_application_name(cls, name: str) -> LockHolder | None:
        if not name.startswith(_APPLICATION_PREFIX + " "):
            return None
        fields = dict(part.split("=", 1) for part in name.split(" ")[1:] if "=" in part)
        try:
            return cls(int(fields["pid"]), fields.get("host", "?"), fields.get("since", "?"))
        except (KeyError, ValueError):
            return None


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[LockHolder]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the ``with`` block.

    Raises ``InstanceLocked`` naming ``what`` and the holder when another process has it. The
    file is left in place on release: unlinking a lock file races with the next opener.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LockUnavailable(f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = LockHolder.from_text(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            named = holder.describe() if holder is not None else "an unknown process"
            raise InstanceLocked(
                f"{what} is in use by another defi-agent ({named}; lock file {path}); "
                "stop it first: two agents on one wallet or journal collide"
            ) from None
        holder = LockHolder.this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_json().encode() + b"\n", 0)
        os.fsync(fd)
        log.info("%s locked (%s)", what, path)
        try:
            yield holder
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def wallet_lock(keystore: Path, address: str) -> Iterator[LockHolder]:
    """Hold the wallet's lock: beside the keystore, or, where that directory is read-only (a
    keystore mounted read-only in a container), in the system's temporary directory."""
    what = f"the wallet {address}"
    with contextlib.ExitStack() as held:
        try:
            holder = held.enter_context(file_lock(wallet_lock_path(keystore, address), what))
        except LockUnavailable as exc:
            log.warning("%s; locking the wallet in the temporary directory instead", exc)
            fallback = Path(tempfile.gettempdir()) / f"defi-agent-{address.lower()}.lock"
            holder = held.enter_context(file_lock(fallback, what))
        yield holder


def sqlite_lock_path(url: str) -> Path | None:
    """``<database>.lock`` beside a SQLite file; None for in-memory databases."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser().resolve()
    return path.with_name(path.name + ".lock")


def wallet_lock_path(keystore: Path, address: str) -> Path:
    """The wallet's lock file: beside the keystore, named by the (lower-case) address."""
    return keystore.expanduser().resolve().parent / f".{address.lower()}.lock"


@contextlib.asynccontextmanager
async def journal_lock(engine: AsyncEngine) -> AsyncIterator[LockHolder | None]:
    """Hold the journal's lock (see the module docstring) while the block runs."""
    if engine.dialect.name == "postgresql":
        async with _advisory_lock(engine) as holder:
            yield holder
        return
    path = sqlite_lock_path(engine.url.render_as_string(hide_password=True))
    if path is None:
        yield None
        return
    with file_lock(path, f"the journal {path.with_suffix('')}") as holder:
        yield holder


@contextlib.asynccontextmanager
async def _advisory_lock(engine: AsyncEngine) -> AsyncIterator[LockHolder]:
    holder = LockHolder.this_process()
    where = f"the journal database {engine.url.database!r} on {engine.url.host}"
    connection = await engine.connect()
    try:
        # Autocommit: the session lock outlives each statement; no transaction is left open.
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(
            text("SELECT set_config('application_name', :name, false)"),
            {"name": holder.application_name()},
        )
        got = await connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": JOURNAL_ADVISORY_LOCK_KEY}
        )
        if not got:
            other = await connection.scalar(
                text(
                    "SELECT a.application_name FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "                   WHERE datname = current_database())"
                    " AND l.objsubid = 1"
                    " AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
                    " LIMIT 1"
                ),
                {"key": JOURNAL_ADVISORY_LOCK_KEY},
            )
            found = LockHolder.from_application_name(other or "")
            named = found.describe() if found is not None else "an unknown process"
            raise InstanceLocked(
                f"{where} is in use by another defi-agent ({named}; PostgreSQL advisory lock "
                f"{JOURNAL_ADVISORY_LOCK_KEY}); stop it first: two agents on one journal collide"
            )
        log.info("%s locked (advisory lock %d)", where, JOURNAL_ADVISORY_LOCK_KEY)
        try:
            yield holder
        finally:
            with contextlib.suppress(Exception):
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": JOURNAL_ADVISORY_LOCK_KEY}
                )
    finally:
        await connection.close()
