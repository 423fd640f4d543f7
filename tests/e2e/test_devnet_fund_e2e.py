"""`defi-agent devnet fund ADDRESS` on the Ethereum replica: a fresh wallet gets gas and about
the asked USD of each major token (USDC's packed balance slot included)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.chain.registry import addresses_for
from agent.devnet import Devnet
from agent.devnet.traders import balance_of
from tests.conftest import reverted

CLI = str(Path(sys.executable).parent / "defi-agent")
NEWCOMER = "0x00000000000000000000000000000000C0FFEE02"


@pytest.fixture
async def ethereum(ethereum_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(ethereum_replica):
        yield ethereum_replica


async def test_devnet_fund_gives_a_new_wallet_gas_and_tokens(
    ethereum: Devnet, tmp_path: Path
) -> None:
    assert ethereum.rpc is not None
    process = await asyncio.create_subprocess_exec(
        CLI,
        "devnet",
        "fund",
        NEWCOMER,
        "--rpc-url",
        ethereum.rpc_url,
        "--usd",
        "5000",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "USDC by" in out.decode()
    assert int(await ethereum.rpc.call("eth_getBalance", [NEWCOMER, "latest"]), 16) > 0
    tokens = addresses_for("ethereum").tokens
    for symbol, price in (("USDC", 1), ("USDT", 1), ("WETH", 3_000), ("WBTC", 60_000)):
        token = tokens[symbol]
        held = await balance_of(ethereum.rpc, token.address, NEWCOMER) / 10**token.decimals
        assert 4_500 < held * price < 5_500, (symbol, held)
