"""Shared fixtures: one devnet per test session, isolated per test with evm_snapshot/evm_revert.

Every process the suite starts inherits ``DEFI_AGENT_TEST_RUN``; at the end of the session no
Anvil carrying that marker may still be alive (the suite's own leftover check).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.devnet import Devnet
from tests.pg import PostgresServer, find_pg_bin

ROOT = Path(__file__).resolve().parents[1]
RUN_MARKER = "DEFI_AGENT_TEST_RUN"


def load_abi(name: str) -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = json.loads((ROOT / "abis" / f"{name}.json").read_text())["abi"]
    return abi


def _marked_anvil_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"anvil" not in cmdline.split(b"\0")[0]:
                continue
            if f"{RUN_MARKER}={marker}".encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="session", autouse=True)
def no_leftover_anvil() -> Iterator[None]:
    """Fails the session when any Anvil the suite started outlives it."""
    marker = uuid.uuid4().hex
    os.environ[RUN_MARKER] = marker
    yield
    deadline = time.monotonic() + 10
    while (left := _marked_anvil_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"Anvil processes left behind by the test suite: {left}"


@pytest.fixture(scope="session")
async def devnet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devnet]:
    """The devnet, deployed once per session (its state is dumped for tests that reload it)."""
    base = tmp_path_factory.getbasetemp()
    async with Devnet(
        state_file=base / "devnet-state" / "devnet.json", deployments_dir=base / "deployments"
    ) as node:
        yield node


@pytest.fixture
async def w3(devnet: Devnet) -> AsyncIterator[AsyncWeb3]:
    """An AsyncWeb3 on the devnet; the chain is reverted to its state before the test."""
    snapshot_id = await devnet.snapshot()
    web3 = AsyncWeb3(AsyncHTTPProvider(devnet.rpc_url))
    try:
        yield web3
    finally:
        await web3.provider.disconnect()
        await devnet.revert(snapshot_id)


@pytest.fixture(scope="session")
async def ethereum_replica(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devnet]:
    """A replica of Ethereum (chain id 1, canonical addresses), deployed once per session."""
    from agent.devnet.replica import Replica

    base = tmp_path_factory.getbasetemp()
    async with Replica("ethereum", state_file=base / "replica-state" / "ethereum.json") as node:
        yield node


@pytest.fixture(scope="session")
async def base_replica(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devnet]:
    """A replica of Base (chain id 8453, Base's addresses, SwapRouter02 only)."""
    from agent.devnet.replica import Replica

    base = tmp_path_factory.getbasetemp()
    async with Replica("base", state_file=base / "replica-state" / "base.json") as node:
        yield node


@pytest.fixture(scope="session")
async def arbitrum_replica(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devnet]:
    """A replica of Arbitrum One (chain id 42161; the NodeInterface replica at 0xC8)."""
    from agent.devnet.replica import Replica

    base = tmp_path_factory.getbasetemp()
    async with Replica("arbitrum", state_file=base / "replica-state" / "arbitrum.json") as node:
        yield node


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (see tests/pg.py); never skipped."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
            "run `make setup` as root, or `apt-get install postgresql`, or set DEFI_AGENT_PG_BIN"
        )
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(postgres: PostgresServer) -> str:
    """A fresh PostgreSQL database for one test; returns its ``store.url``."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:16]}")
