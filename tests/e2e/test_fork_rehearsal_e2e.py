"""`dry-run --fork-url` on a public chain, exercised on the Ethereum replica the way it would
run against a mainnet RPC: the fork keeps chain id 1, the agent uses the registry's addresses
(no deployment file), the wallet is funded with real-behaving tokens by `anvil_dealERC20`,
storage-slot discovery or a holder (each method on its own here), an ArbExecutor is deployed
and funded, the strategies run, a report is printed and nothing is left in the temp folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from agent.app.funding import FundingMethod, fund_token, token_balance
from agent.app.rehearsal import fund_public_fork, local_chain
from agent.chain.registry import addresses_for
from agent.config.loading import toml_dumps
from agent.devnet import Devnet
from agent.devnet.node import DEV_ACCOUNTS

CLI = str(Path(sys.executable).parent / "defi-agent")
# A fresh address on the replica: it holds nothing until funded.
NEWCOMER = "0x00000000000000000000000000000000C0FFEE01"
TOKENS = addresses_for("ethereum").tokens
GET_POOL = function_signature_to_4byte_selector("getPool(address,address,uint24)")


@pytest.fixture
async def fork(ethereum_replica: Devnet, tmp_path: Path) -> AsyncIterator[Devnet]:
    async with local_chain(
        ethereum_replica.rpc_url, block_time_s=0, workdir=tmp_path, chain=("ethereum", 1)
    ) as chain:
        assert await chain.call("eth_chainId") == "0x1"
        yield chain


@pytest.mark.parametrize("method", ["deal", "storage", "holder"])
@pytest.mark.parametrize("symbol", ["USDC", "USDT", "WETH"])
async def test_each_funding_method_gives_the_wallet_the_tokens(
    fork: Devnet, method: FundingMethod, symbol: str
) -> None:
    assert fork.rpc is not None
    token = TOKENS[symbol]
    amount = (2 if symbol == "WETH" else 5_000) * 10**token.decimals + 12_345
    # the holders a rehearsal offers: the fork's pools of the token
    pools = await _pools_of(fork, token.address)
    used = await fund_token(
        fork.rpc, token.address, NEWCOMER, amount, holders=pools, methods=(method,)
    )
    assert used == method
    assert await token_balance(fork.rpc, token.address, NEWCOMER) == amount


async def _pools_of(fork: Devnet, token: str) -> list[str]:
    """The Uniswap V3 pools of ``token`` with WETH, USDC or USDT (the registry's factory)."""
    assert fork.rpc is not None
    factory = addresses_for("ethereum").v3_dexes()["uniswap_v3"].factory
    found = []
    for other in ("WETH", "USDC", "USDT"):
        for fee in (100, 500, 3000):
            if TOKENS[other].address == token:
                continue
            args = encode(["address", "address", "uint24"], [token, TOKENS[other].address, fee])
            data = "0x" + (GET_POOL + args).hex()
            answer = await fork.rpc.call("eth_call", [{"to": factory, "data": data}, "latest"])
            if int(answer, 16):
                found.append(to_checksum_address("0x" + answer[-40:]))
    return found


async def test_a_public_fork_funds_usdc_usdt_weth_and_an_executor(fork: Devnet) -> None:
    assert fork.rpc is not None
    funded = await fund_public_fork(
        fork.rpc, fork.rpc_url, "ethereum", ["WETH", "USDC", "USDT"], {}, NEWCOMER
    )
    for symbol in ("WETH", "USDC", "USDT"):
        token = TOKENS[symbol]
        held = await token_balance(fork.rpc, token.address, NEWCOMER)
        assert held > 0, symbol
        # about 100,000 USD of each at the fork's own prices
        price = 3_000 if symbol == "WETH" else 1
        assert 90_000 < held / 10**token.decimals * price < 110_000, (symbol, held)
    code = await fork.rpc.call("eth_getCode", [funded.executor, "latest"])
    assert len(code) > 2
    assert await token_balance(fork.rpc, TOKENS["WETH"].address, funded.executor) > 0
    assert any("USDC by" in line for line in funded.lines), funded.lines


async def test_dry_run_fork_url_rehearses_the_ethereum_replica_and_reports_a_trade(
    ethereum_replica: Devnet, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        toml_dumps(
            {
                "chain": {"name": "ethereum", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]},
                "market": {"tokens": ["WETH", "USDC", "USDT"]},
                "strategies": {
                    "arbitrage": {"enabled": False},
                    "dca": {
                        "enabled": True,
                        "buy_token": "WETH",
                        "spend_token": "USDC",
                        "amount": 1_000,
                        "interval_s": 3_600,
                        "route": "pools",
                    },
                },
                "risk": {"max_trade_usd": 5_000.0},
                "feeds": {"simulated": True},
                "alerts": {"console": {"enabled": False}},
                "metrics": {"enabled": False},
                "wallet": {"keystore": str(tmp_path / "no-keystore.json")},
            }
        )
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # Run the CLI without blocking this loop: it drains the replica's Anvil output.
    process = await asyncio.create_subprocess_exec(
        CLI,
        "dry-run",
        "--config",
        str(config),
        "--fork-url",
        ethereum_replica.rpc_url,
        "--blocks",
        "3",
        "--out",
        str(tmp_path / "report"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "TMPDIR": str(scratch)},
    )
    async with asyncio.timeout(300):
        out, err = await process.communicate()
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 0, stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["trades"] >= 1, report
    assert f"funded {DEV_ACCOUNTS[1][0]}" in stdout and "USDC by" in stdout
    assert list(scratch.iterdir()) == []  # the rehearsal's temp folder is gone
