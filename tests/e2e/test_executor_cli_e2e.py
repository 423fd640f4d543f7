"""`defi-agent executor deploy|info|fund` as an operator runs them on the Ethereum replica
(chain id 1, registry addresses, the operator's keystore):

* the first deploy's broadcast is refused by the submit RPC; deploying again at once signs the
  identical transaction (same nonce, fees, data: the same hash) and succeeds, with no traceback,
  and writes ``arb_executor`` into the operator's agent.toml, keeping its comments;
* ``executor info`` shows the owner and which V2 factories it accepts;
* ``executor fund USDT 2500`` moves exactly that from the wallet to the executor.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from agent.chain.registry import addresses_for
from agent.config.loading import toml_dumps
from agent.devnet import Devnet
from agent.devnet.traders import balance_of
from agent.wallet.keystore import create_keystore
from tests.conftest import reverted
from tests.e2e.harness import AGENT_ACCOUNT, AGENT_KEY

CLI = str(Path(sys.executable).parent / "defi-agent")
PASSWORD = "executor-test-password"


class RefusingSubmitRpc:
    """A submit RPC that refuses the first ``eth_sendRawTransaction`` as a node does (for
    example while the wallet lacks gas) and forwards everything else to the node."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refused = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> RefusingSubmitRpc:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("method") == "eth_sendRawTransaction" and not self.refused:
            self.refused += 1
            error = {"code": -32000, "message": "insufficient funds for gas * price + value"}
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream, json=body) as reply,
        ):
            return web.json_response(await reply.json())


@dataclass
class Done:
    returncode: int | None
    stdout: str
    stderr: str


async def _cli(*args: str, cwd: Path) -> Done:
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


@pytest.fixture
async def ethereum(ethereum_replica: Devnet) -> AsyncIterator[Devnet]:
    async with reverted(ethereum_replica):
        yield ethereum_replica


def _config(tmp_path: Path, rpc_url: str, submit_url: str) -> Path:
    keystore = tmp_path / "keystore.json"
    create_keystore(keystore, SecretStr(PASSWORD), bytes.fromhex(AGENT_KEY[2:]), scrypt_n=2**4)
    tree: dict[str, Any] = {
        "chain": {
            "name": "ethereum",
            "chain_id": 1,
            "rpc_urls": [rpc_url],
            "submit_rpc_url": submit_url,
        },
        "wallet": {"keystore": str(keystore)},
        "execution": {"mode": "live", "receipt_timeout_s": 30},
        "market": {"tokens": ["WETH", "USDC", "USDT"]},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'journal.db'}"},
        "risk": {"kill_switch_file": str(tmp_path / "KILL")},
    }
    path = tmp_path / "agent.toml"
    # The operator's own comments must survive the edit.
    path.write_text("# my live config\n" + toml_dumps(tree) + "# arb_executor goes above\n")
    return path


async def test_deploy_twice_after_a_refused_broadcast_then_info_and_fund(
    ethereum: Devnet, tmp_path: Path
) -> None:
    assert ethereum.rpc is not None
    async with RefusingSubmitRpc(ethereum.rpc_url) as submit:
        config = _config(tmp_path, ethereum.rpc_url, submit.url)
        first = await _cli("executor", "deploy", "--config", str(config), cwd=tmp_path)
        assert first.returncode == 1 and submit.refused == 1
        assert "insufficient funds" in first.stderr and "Traceback" not in first.stderr
        second = await _cli("executor", "deploy", "--config", str(config), cwd=tmp_path)
        assert second.returncode == 0, second.stderr
    written = tomllib.loads(config.read_text())
    executor = written["execution"]["arb_executor"]
    assert executor in second.stdout and "wrote" in second.stdout
    assert config.read_text().startswith("# my live config\n")
    assert len(await ethereum.rpc.call("eth_getCode", [executor, "latest"])) > 2

    info = await _cli("executor", "info", "--config", str(config), cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert AGENT_ACCOUNT in info.stdout
    assert (
        "uniswap_v2 pairs" in info.stdout and "accepted (the registry's pair hash)" in info.stdout
    )

    usdt = addresses_for("ethereum").tokens["USDT"].address
    wallet_before = await balance_of(ethereum.rpc, usdt, AGENT_ACCOUNT)
    funded = await _cli("executor", "fund", "USDT", "2500", "--config", str(config), cwd=tmp_path)
    assert funded.returncode == 0, funded.stderr
    assert await balance_of(ethereum.rpc, usdt, executor) == 2_500 * 10**6
    assert wallet_before - await balance_of(ethereum.rpc, usdt, AGENT_ACCOUNT) == 2_500 * 10**6
