"""A fork URL (its path or query holds the provider's key) is on no command line and in no
error; Anvil's environment holds neither the keystore password nor anything else of ours."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from agent.devnet import Devnet
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import AnvilNode
from agent.errors import FatalError

PROVIDER_KEY = "providerKey0123456789SECRET"
PASSWORD = "MyKeystorePassw0rd!"


def _proc_text(pid: int, name: str) -> str:
    return (Path("/proc") / str(pid) / name).read_bytes().replace(b"\0", b" ").decode()


async def test_the_fork_url_is_on_no_argv_and_anvil_inherits_no_secret(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFI_AGENT_KEYSTORE_PASSWORD", PASSWORD)
    monkeypatch.setenv("ONEINCH_API_KEY", PROVIDER_KEY + "-1inch")
    fork_url = f"{devnet.rpc_url}/?apikey={PROVIDER_KEY}"  # Anvil ignores the query
    async with AnvilNode(fork_url=fork_url) as fork:
        assert fork.pid is not None
        argv = _proc_text(fork.pid, "cmdline")
        environment = _proc_text(fork.pid, "environ")
        # It really forks the upstream chain: the deployed contracts are there.
        code = await JsonRpc(fork.rpc_url).call("eth_getCode", [devnet.addresses["USDC"], "latest"])
        assert code not in ("0x", "")
    assert "--fork-url upstream" in argv
    assert PROVIDER_KEY not in argv and devnet.rpc_url not in argv
    assert PASSWORD not in environment
    assert "DEFI_AGENT_KEYSTORE_PASSWORD" not in environment
    assert "ONEINCH_API_KEY" not in environment


async def test_a_fork_that_fails_never_quotes_the_url_in_the_error() -> None:
    dead = f"http://127.0.0.1:9/v2/{PROVIDER_KEY}"  # port 9: nothing listens there
    with pytest.raises(FatalError) as failed:
        async with AnvilNode(fork_url=dead, start_timeout_s=60):
            raise AssertionError("a fork of nothing started")
    assert "Anvil exited before listening" in str(failed.value)
    assert PROVIDER_KEY not in str(failed.value)


async def test_dry_run_takes_the_fork_url_from_the_environment_and_never_shows_it(
    tmp_path: Path,
) -> None:
    dead = f"http://127.0.0.1:9/v2/{PROVIDER_KEY}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "dry-run",
        "--blocks",
        "1",
        "--out",
        str(tmp_path / "report"),
        env={**os.environ, "DEFI_AGENT_FORK_URL": dead},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    output = stdout.decode() + stderr.decode()
    # Without a fork URL it would start a devnet and succeed; this one cannot be forked.
    assert proc.returncode == 1, output
    assert PROVIDER_KEY not in output
    assert "Traceback" not in output
