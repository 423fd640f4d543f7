"""`defi-agent preflight` as an operator runs it before going live, against the Ethereum
replica (chain id 1, the registry's addresses, no deployment file):

* the right chain: the pools table (DEX, pair, fee, liquidity in USD), the wallet's balances and
  the executor's checks; exit 0;
* an RPC on another chain: exit 2 naming both chain ids, and `run` refuses to start;
* a keystore that is not `wallet.address`: preflight fails, `run` refuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent.config.loading import toml_dumps
from agent.devnet import Devnet
from agent.devnet.node import DEV_ACCOUNTS
from agent.wallet.keystore import create_keystore
from tests.e2e.harness import AGENT_ACCOUNT, AGENT_KEY

CLI = str(Path(sys.executable).parent / "defi-agent")
PASSWORD = "preflight-test-password"


@dataclass
class Done:
    returncode: int | None
    stdout: str
    stderr: str


async def _cli(*args: str, cwd: Path) -> Done:
    """The CLI in a subprocess, without blocking this loop (it drains the replica's Anvil)."""
    process = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "DEFI_AGENT_KEYSTORE_PASSWORD": PASSWORD},
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    return Done(process.returncode, out.decode(), err.decode())


def _config(workdir: Path, *, chain: str, chain_id: int, rpc_url: str, **wallet: Any) -> Path:
    keystore = workdir / "keystore.json"
    if not keystore.exists():
        create_keystore(keystore, SecretStr(PASSWORD), bytes.fromhex(AGENT_KEY[2:]), scrypt_n=2**4)
    tree = {
        "chain": {"name": chain, "chain_id": chain_id, "rpc_urls": [rpc_url]},
        "wallet": {"keystore": str(keystore), **wallet},
        "execution": {"mode": "paper"},
        "market": {"tokens": ["WETH", "USDC", "USDT", "WBTC"]},
        "feeds": {"simulated": True},
        "alerts": {"console": {"enabled": False}},
        "metrics": {"enabled": False},
        "store": {"url": f"sqlite+aiosqlite:///{workdir / 'journal.db'}"},
        "risk": {"kill_switch_file": str(workdir / "KILL")},
    }
    path = workdir / "agent.toml"
    path.write_text(toml_dumps(tree))
    return path


async def test_preflight_on_the_ethereum_replica_lists_the_pools_and_passes(
    ethereum_replica: Devnet, tmp_path: Path
) -> None:
    config = _config(tmp_path, chain="ethereum", chain_id=1, rpc_url=ethereum_replica.rpc_url)
    shown = await _cli("preflight", "--config", str(config), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "pools" in shown.stdout and "liquidity USD" in shown.stdout
    answer = await _cli("preflight", "--config", str(config), "--json", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    rows = {(p["dex"], p["pair"], p["fee_pips"]): p["liquidity_usd"] for p in report["pools"]}
    # The replica's Uniswap V2 WETH/USDC pair (5M USD a side), found through the registry.
    usdc_weth = [
        usd
        for (dex, pair, _), usd in rows.items()
        if dex == "uniswap_v2" and "USDC" in pair and "WETH" in pair
    ]
    assert usdc_weth and 9_900_000 < usdc_weth[0] < 10_100_000
    assert {dex for dex, _, _ in rows} == {"uniswap_v2", "sushiswap", "uniswap_v3"}
    # Pairs the replica does not carry are listed as skipped, with the reason.
    assert any("sushiswap: no pair" in line for line in report["skipped"])
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["keystore"]["ok"] and checks["keystore"]["detail"] == AGENT_ACCOUNT
    assert checks["code: Multicall3"]["ok"]
    assert ("wallet", "USDT", "2,000,000") in [tuple(b) for b in report["balances"]]


async def test_an_rpc_on_another_chain_is_refused_by_preflight_and_run(
    ethereum_replica: Devnet, tmp_path: Path
) -> None:
    # An Arbitrum config pointed at an Ethereum RPC (chain id 1).
    config = _config(tmp_path, chain="arbitrum", chain_id=42161, rpc_url=ethereum_replica.rpc_url)
    checked = await _cli("preflight", "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "chain id 1," in checked.stderr and "42161" in checked.stderr
    assert "Traceback" not in checked.stderr
    started = await _cli("run", "--config", str(config), cwd=tmp_path)
    assert started.returncode == 2
    assert "chain id 1," in started.stderr and "42161" in started.stderr
    assert not (tmp_path / "journal.db").exists()  # refused before anything was set up


async def test_a_keystore_that_is_not_wallet_address_is_refused(
    ethereum_replica: Devnet, tmp_path: Path
) -> None:
    other = DEV_ACCOUNTS[5][0]
    config = _config(
        tmp_path, chain="ethereum", chain_id=1, rpc_url=ethereum_replica.rpc_url, address=other
    )
    checked = await _cli("preflight", "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 1
    assert f"wallet.address is {other}" in checked.stderr and AGENT_ACCOUNT in checked.stderr
    started = await _cli("run", "--config", str(config), "--mode", "fork", cwd=tmp_path)
    assert started.returncode == 2
    assert f"wallet.address is {other}" in started.stderr
