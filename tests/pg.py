"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster, 127.0.0.1.

``PostgresServer.start()`` runs ``initdb`` in a temporary directory (password authentication,
scram-sha-256) and ``pg_ctl start`` on a free port on 127.0.0.1; ``create_database`` gives each
test its own database; ``stop()`` shuts the server down and removes the cluster. PostgreSQL
refuses to run as root: as root the cluster belongs to ``nobody`` and every server command runs
through ``runuser -u nobody``.

Binaries: ``$DEFI_AGENT_PG_BIN`` or the newest ``/usr/lib/postgresql/*/bin`` (``make setup``
installs the ``postgresql`` package where it is missing and it can). Without them the fixture
fails with what to do; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "agent"
PG_PASSWORD = "pg-test-Passw0rd-never-logged"


def find_pg_bin() -> Path | None:
    configured = os.environ.get("DEFI_AGENT_PG_BIN")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").is_file() else None
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="defi-agent-pg-")))
    port: int = field(default_factory=_free_port)
    _run_as: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (the agent's ``store.url``), password included."""
        return f"postgresql+asyncpg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str, timeout_s: float = 60.0) -> str:
        result = subprocess.run(
            [*self._run_as, str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> None:
        if os.geteuid() == 0:
            # The server refuses root; the cluster belongs to an unprivileged user.
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._run_as = ["runuser", "-u", "nobody", "--"]
        password_file = self.root / "pwfile"
        password_file.write_text(PG_PASSWORD + "\n")
        if self._run_as:
            nobody = pwd.getpwnam("nobody")
            os.chown(password_file, nobody.pw_uid, nobody.pw_gid)
        self._pg(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            PG_USER,
            "--pwfile",
            str(password_file),
            "--auth=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        password_file.unlink()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c fsync=off"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def create_database(self, name: str) -> str:
        """A fresh database ``name``; returns its URL."""
        self._psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _psql(self, sql: str) -> None:
        psql = self.bin_dir / "psql"
        executable = str(psql) if psql.is_file() else (shutil.which("psql") or "psql")
        subprocess.run(
            [
                executable,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                PG_USER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": PG_PASSWORD},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
