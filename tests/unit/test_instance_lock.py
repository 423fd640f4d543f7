"""The SQLite journal's and the wallet's lock files: a second holder is refused, naming the
first; a holder that is SIGKILLed leaves nothing that blocks the restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent.errors import InstanceLocked
from agent.store.lock import file_lock, sqlite_lock_path, wallet_lock, wallet_lock_path

HOLD = """
import sys
from pathlib import Path
from agent.store.lock import file_lock
with file_lock(Path(sys.argv[1]), "the journal"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_lock_files_sit_beside_the_journal_and_the_keystore(tmp_path: Path) -> None:
    db = tmp_path / "data" / "agent.db"
    assert sqlite_lock_path(f"sqlite+aiosqlite:///{db}") == db.with_name("agent.db.lock")
    assert sqlite_lock_path("sqlite+aiosqlite:///:memory:") is None
    keystore = tmp_path / "keys" / "keystore.json"
    address = "0xa34212803997ef5AFACA7749866A3861B757F220"
    assert wallet_lock_path(keystore, address) == keystore.parent / f".{address.lower()}.lock"


def test_a_second_holder_is_refused_naming_the_first_until_it_is_killed(tmp_path: Path) -> None:
    lock = tmp_path / "agent.db.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(InstanceLocked) as refused, file_lock(lock, "the journal x.db"):
            raise AssertionError("two holders")
        message = str(refused.value)
        assert message.startswith("the journal x.db is in use by another defi-agent")
        assert f"pid {holder.pid} on host {socket.gethostname()}, started 20" in message
        assert str(lock) in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # SIGKILLed: the kernel dropped its lock; the file it left blocks nobody.
    assert lock.exists()
    with file_lock(lock, "the journal") as me:
        assert me.pid == os.getpid()
        assert f'"pid": {os.getpid()}' in lock.read_text()
    assert lock.stat().st_mode & 0o077 == 0  # not readable by others


def test_a_read_only_keystore_directory_locks_the_wallet_in_the_temporary_directory() -> None:
    # /proc/self stands in for a keystore mounted read-only (root may write anywhere else).
    keystore = Path("/proc/self/keys/keystore.json")
    address = "0x00000000000000000000000000000000DeaDBeef"
    with wallet_lock(keystore, address):
        fallback = Path(tempfile.gettempdir()) / f"defi-agent-{address.lower()}.lock"
        assert fallback.is_file()
        refused = pytest.raises(InstanceLocked, match=f"the wallet {address} is in use")
        with refused, wallet_lock(keystore, address):
            raise AssertionError("two holders")
