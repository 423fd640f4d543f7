"""`defi-agent balance` in fork mode: the wallet's and the ArbExecutor's balances as the chain
holds them (read through the configured RPC), valued at the journal's latest prices."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from pydantic import SecretStr
from web3 import AsyncWeb3

from agent.app.rehearsal import fund_and_deploy
from agent.devnet import Devnet
from agent.devnet.traders import balance_of
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.wallet.keystore import create_keystore
from tests.e2e.harness import tree_for, write_config

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "defi-agent"
KEY = bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")
NATIVE = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"


async def test_balance_reads_wallet_and_executor_from_the_chain(
    devnet: Devnet, w3: AsyncWeb3, tmp_path: Path
) -> None:
    assert devnet.rpc is not None and devnet.deployment is not None
    assert devnet.deployments_dir is not None
    wallet = create_keystore(tmp_path / "keystore.json", SecretStr("pw-balance"), KEY, scrypt_n=2)
    executor = await fund_and_deploy(devnet.rpc, devnet.deployment, wallet)
    tokens = devnet.deployment.tokens
    tree = tree_for(
        rpc_url=devnet.rpc_url,
        deployment_file=devnet.deployments_dir / f"{devnet.name}.json",
        workdir=tmp_path,
        arb_executor=executor,
        tokens=["WETH", "USDC"],
        wallet={"keystore": str(tmp_path / "keystore.json")},
    )
    cfg = write_config(tmp_path / "agent.toml", tree, {})
    # the journal's latest equity snapshot priced WETH at 3,000 USD and USDC at 1 USD
    weth, usdc = tokens["WETH"].address, tokens["USDC"].address
    engine = await init_db(cfg.store.url)
    try:
        await Journal(session_factory(engine)).snapshot_equity(
            "fork", 0.0, {}, 7, {weth: 3_000 / 1e18, usdc: 1 / 1e6, NATIVE: 3_000 / 1e18}
        )
    finally:
        await engine.dispose()

    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "agent"]
    process = await asyncio.create_subprocess_exec(
        *command, "balance", "--config", str(tmp_path / "agent.toml"), "--json",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    sheet = json.loads(stdout)
    assert sheet["source"].startswith("chain 31337 at block ")
    assert sheet["priced_at_block"] == 7
    rows = {(r["holder"], r["symbol"]): r for r in sheet["balances"]}
    for holder, address in (("wallet", wallet), ("executor", executor)):
        for symbol in ("WETH", "USDC"):
            held = await balance_of(devnet.rpc, tokens[symbol].address, address)
            row = rows[(holder, symbol)]
            assert row["address"] == address and int(row["amount"]) == held
        assert held > 0  # funded: the test is not comparing zeros
    wallet_weth = rows[("wallet", "WETH")]
    assert wallet_weth["usd"] == int(wallet_weth["amount"]) * 3_000 / 1e18
    eth = await w3.eth.get_balance(wallet)
    assert int(rows[("wallet", "ETH")]["amount"]) == eth > 0
    assert sheet["total_usd"] == sum(r["usd"] or 0.0 for r in sheet["balances"])
