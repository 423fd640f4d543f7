"""Shared fixtures: one devnet per test session, isolated per test with evm_snapshot/evm_revert.

Every process the suite starts inherits ``DEFI_AGENT_TEST_RUN``; at the end of the session no
Anvil carrying that marker may still be alive (the suite's own leftover check).
"""

from __future__ import annotations

import contextlib
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


@contextlib.asynccontextmanager
async def reverted(devnet: Devnet) -> AsyncIterator[Devnet]:
    """``devnet`` as it is now, restored (``evm_snapshot``/``evm_revert``) when the block ends:
    what a per-test fixture over a session replica yields inside."""
    snapshot = await devnet.snapshot()
    try:
        yield devnet
    finally:
        await devnet.revert(snapshot)


@contextlib.asynccontextmanager
async def devnet_copy(devnet: Devnet, deployments_dir: Path | None = None) -> AsyncIterator[Devnet]:
    """A devnet of its own, started from the session devnet's saved state (about a second).
    For tests that reorg the chain: ``anvil_reorg`` on a node whose history went through many
    ``evm_snapshot``/``evm_revert`` rounds rebuilt blocks from the wrong state (a balance of 0
    after the reorg), and what it left behind broke the tests after it. A module overrides the
    ``devnet`` fixture with one of these; ``deployments_dir`` is where it writes its
    deployment file, for an agent to read."""
    assert devnet.state_file is not None
    async with Devnet(state_file=devnet.state_file, deployments_dir=deployments_dir) as node:
        yield node


@pytest.fixture(autouse=True)
async def session_devnet_left_as_found(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A test that used the session devnet must leave it mining every transaction, and its
    pool is emptied: a test that left automine off once made every later test wait for
    receipts that never came. The devnet is put right and the test that left it so fails."""
    yield
    if "devnet" not in request.fixturenames:
        return
    try:
        devnet: Devnet = request.getfixturevalue("devnet")
    except (AssertionError, ValueError):
        return  # a devnet of the test's own (see devnet_copy), already stopped
    if devnet.rpc is None:
        return
    # A send still being mined when the test ended is dropped, not blamed on the test.
    await devnet.call("anvil_dropAllTransactions", [])
    if not await devnet.call("anvil_getAutomine", []):
        await devnet.call("evm_setAutomine", [True])
        pytest.fail("the test left the session devnet with automine off")


@pytest.fixture
async def w3(devnet: Devnet) -> AsyncIterator[AsyncWeb3]:
    """An AsyncWeb3 on the devnet; the chain is reverted to its state before the test."""
    snapshot_id = await devnet.snapshot()
    web3 = AsyncWeb3(AsyncHTTPProvider(devnet.rpc_url))
    try:
        yield web3
    finally:
        await web3.provider.disconnect()
        # nothing the test sent may be mined after the revert, into a later test's blocks
        await devnet.call("anvil_dropAllTransactions", [])
        await devnet.revert(snapshot_id)


@pytest.fixture
async def automine_off(w3: AsyncWeb3) -> AsyncIterator[None]:
    """The session devnet holds transactions in its pool until the test mines; whatever the
    test left unmined is dropped afterwards, so it cannot land in a later test's blocks."""
    await w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        yield
    finally:
        await w3.provider.make_request("anvil_dropAllTransactions", [])  # type: ignore[arg-type]
        await w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


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
