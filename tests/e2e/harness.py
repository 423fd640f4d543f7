"""Drive the real agent (``open_agent`` wiring, the real engine) on the devnet, block by block.

The chain automines, so the test decides what happens in each block: it opens a price gap with
a dev account's swap (one mined block), then hands that block number to the running engine and
waits for the tick and for any trade it started. Nothing of ours is mocked: the engine, the
risk gate, the ArbExecutor, the SQLite journal and the alert channels are the ones an operator
runs; only Telegram and Discord are local fake servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from agent.app.build import AgentParts, open_agent
from agent.app.control import AgentControl
from agent.app.rehearsal import fund_and_deploy
from agent.config.loading import toml_dumps
from agent.config.models import AgentConfig
from agent.devnet import Devnet
from agent.devnet.deploy import Deployment
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.node import DEV_ACCOUNTS
from agent.devnet.traders import SwapResult, balance_of, swap_v2
from agent.engine.loop import TickReport
from agent.wallet.keystore import Signer

# Dev accounts: [4..8] are the demo's simulated traders; the tests' gap opener and agent differ.
GAPPER = DEV_ACCOUNTS[6][0]
AGENT_ACCOUNT, AGENT_KEY = DEV_ACCOUNTS[3]
TELEGRAM_TOKEN = "123456:e2e-test-bot-token-AAbbCCddEE"
OPERATOR_CHAT_ID = 424242
STRANGER_CHAT_ID = 666


def agent_signer() -> Signer:
    return Signer(bytes.fromhex(AGENT_KEY.removeprefix("0x")))


def tree_for(
    *,
    rpc_url: str,
    deployment_file: Path,
    workdir: Path,
    arb_executor: str,
    tokens: Iterable[str],
    telegram_url: str | None = None,
    discord_url: str | None = None,
    risk: Mapping[str, Any] | None = None,
    strategies: Mapping[str, Any] | None = None,
    engine: Mapping[str, Any] | None = None,
    wallet: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An agent.toml tree for fork mode on a local chain (the same keys an operator writes)."""
    symbols = list(tokens)
    tree: dict[str, Any] = {
        "chain": {
            "name": "devnet",
            "chain_id": 31337,
            "rpc_urls": [rpc_url],
            "deployment_file": str(deployment_file),
            "poll_interval_s": 0.2,
        },
        "execution": {
            "mode": "fork",
            "arb_executor": arb_executor,
            "slippage_bps": 30,
            "receipt_timeout_s": 30,
            "replace_after_s": 15,
        },
        "risk": {
            "max_gas_price_gwei": 500,
            "max_trade_usd": 500_000.0,
            "max_token_exposure_usd": 5_000_000.0,
            "max_total_exposure_usd": 10_000_000.0,
            "daily_loss_limit_usd": 50_000.0,
            "max_drawdown_pct": 50.0,
            "cooldown_s": 0.0,
            "revert_cooldown_s": 0.0,
            "token_allowlist": symbols,
            "kill_switch_file": str(workdir / "KILL"),
            **(risk or {}),
        },
        "market": {"tokens": symbols},
        "engine": {"block_source": "poll", **(engine or {})},
        "strategies": dict(
            strategies
            or {
                "arbitrage": {
                    "enabled": True,
                    "dexes": ["uniswap_v2", "sushiswap"],
                    "min_profit_usd": 1.0,
                    "max_input_usd": 200_000.0,
                }
            }
        ),
        "feeds": {"simulated": True},
        "alerts": {"console": {"enabled": False}},
        "metrics": {"enabled": False},
        "store": {"url": f"sqlite+aiosqlite:///{workdir / 'journal.db'}"},
    }
    if wallet is not None:
        tree["wallet"] = dict(wallet)
    if telegram_url is not None:
        tree["alerts"]["telegram"] = {
            "enabled": True,
            "bot_token": "${TELEGRAM_BOT_TOKEN}",
            "chat_id": OPERATOR_CHAT_ID,
            "allowed_chat_ids": [OPERATOR_CHAT_ID],
            "api_base_url": telegram_url,
        }
    if discord_url is not None:
        tree["alerts"]["discord"] = {"enabled": True, "webhook_url": "${DISCORD_WEBHOOK_URL}"}
    return tree


def write_config(path: Path, tree: Mapping[str, Any], environ: Mapping[str, str]) -> AgentConfig:
    """Write ``tree`` as agent.toml and load it back exactly as ``defi-agent run`` does."""
    path.write_text(toml_dumps(tree))
    return AgentConfig.load(path, environ=environ)


@dataclass
class Chain:
    """The session devnet with the agent's wallet funded and its ArbExecutor deployed."""

    devnet: Devnet
    arb_executor: str
    deployment_file: Path

    @property
    def rpc(self) -> JsonRpc:
        assert self.devnet.rpc is not None
        return self.devnet.rpc

    @property
    def deployment(self) -> Deployment:
        assert self.devnet.deployment is not None
        return self.devnet.deployment

    @property
    def symbols(self) -> list[str]:
        return [s for s in self.deployment.tokens if not s.startswith("ALT")]

    def tree(self, workdir: Path, **options: Any) -> dict[str, Any]:
        """``tree_for`` this chain (its RPC, deployment, ArbExecutor and tokens)."""
        return tree_for(
            rpc_url=self.devnet.rpc_url,
            deployment_file=self.deployment_file,
            workdir=workdir,
            arb_executor=self.arb_executor,
            tokens=self.symbols,
            **options,
        )

    async def block_number(self) -> int:
        return int(await self.rpc.call("eth_blockNumber"), 16)

    async def open_gap(self, dex: str = "sushiswap", usd: float = 150_000.0) -> SwapResult:
        """Sell WETH for USDC on ``dex`` (one mined block): its WETH gets cheaper than elsewhere."""
        a = self.deployment.addresses
        weth = self.deployment.tokens["WETH"]
        amount = int(usd / self.deployment.prices_usd["WETH"] * 10**weth.decimals)
        return await swap_v2(
            self.rpc,
            dex=dex,
            router=a[f"{dex}.router"],
            trader=GAPPER,
            path=[a["WETH"], a["USDC"]],
            amount_in=amount,
        )

    async def send_as(self, sender: str, to: str, data: str) -> None:
        """A transaction from any account (Anvil impersonation), mined and checked."""
        from agent.app.rehearsal import _send_as

        await _send_as(self.rpc, sender, {"to": to, "data": data})

    async def balance(self, symbol: str, owner: str) -> int:
        return await balance_of(self.rpc, self.deployment.tokens[symbol].address, owner)


async def funded_chain(devnet: Devnet, account: str = AGENT_ACCOUNT) -> Chain:
    assert devnet.rpc is not None and devnet.deployment is not None
    assert devnet.deployments_dir is not None  # the agent reads the deployment from this file
    executor = await fund_and_deploy(devnet.rpc, devnet.deployment, account)
    deployment_file = devnet.deployments_dir / f"{devnet.name}.json"
    return Chain(devnet, executor, deployment_file)


@dataclass
class AgentRun:
    """A running engine fed blocks by the test."""

    parts: AgentParts
    stop: asyncio.Event
    reports: dict[int, TickReport] = field(default_factory=dict)
    _queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[Any] | None = None

    async def _blocks(self) -> AsyncIterator[int]:
        while True:
            yield await self._queue.get()

    def _on_tick(self, report: TickReport) -> None:
        self.reports[report.block] = report

    async def tick(self, block: int | None = None, timeout_s: float = 30.0) -> TickReport:
        """Show the engine ``block`` (default: the latest), wait for its tick and its trades."""
        if block is None:
            block = await self.parts.w3.eth.block_number
        self._queue.put_nowait(block)
        async with asyncio.timeout(timeout_s):
            while block not in self.reports:
                self._check_alive()
                await asyncio.sleep(0.02)
            while self.parts.engine.trades_in_flight:
                await asyncio.sleep(0.02)
        return self.reports[block]

    def replay(self, block: int) -> None:
        """Hand the engine ``block`` again (as a reconnecting websocket would), not waiting."""
        self._queue.put_nowait(block)

    def _check_alive(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # raises what killed the engine
            raise AssertionError("the engine stopped")


@contextlib.asynccontextmanager
async def running_agent(
    cfg: AgentConfig,
    *,
    signer: Signer | None = None,
    extra_strategies: Iterable[Any] = (),  # Strategy implementations (ClassVar names)
    telegram_control: bool = False,
    mode: str = "fork",
) -> AsyncIterator[AgentRun]:
    """``open_agent`` + ``Engine.run`` in a task, blocks supplied by ``AgentRun.tick``.

    ``mode="paper"`` runs without any key (no signer is passed)."""
    stop = asyncio.Event()
    factory: Callable[[AgentParts], Any] | None = (
        (lambda parts: AgentControl(parts, stop)) if telegram_control else None
    )
    async with open_agent(
        cfg,
        mode=mode,
        signer=None if mode == "paper" else (signer or agent_signer()),
        console=Console(file=io.StringIO()),
        control_factory=factory,
    ) as parts:
        parts.engine.strategies.extend(extra_strategies)
        run = AgentRun(parts, stop)
        parts.engine.on_tick = run._on_tick
        run.task = asyncio.create_task(parts.engine.run(run._blocks(), stop=stop))
        try:
            yield run
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await run.task


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` until true (a bound on waiting, never a timing assertion)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


# -- the real `defi-agent run` process ---------------------------------------------------------
KEYSTORE_PASSWORD_ENV = "E2E_KEYSTORE_PASSWORD"
KEYSTORE_PASSWORD = "correct horse battery staple e2e"
Process = asyncio.subprocess.Process


async def start_agent_run(
    config: Path,
    environ: Mapping[str, str],
    *extra: str,
    stdout: Any = None,
    stderr: Any = asyncio.subprocess.STDOUT,
) -> Process:
    """``defi-agent run --config CONFIG`` as its own process, the entry point an operator uses,
    with ``environ`` added to this process's environment. The caller (or the
    ``agent_processes`` fixture) makes sure it is gone at the end."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "run",
        "--config",
        str(config),
        *extra,
        env={**os.environ, **environ},
        stdout=stdout,
        stderr=stderr,
    )
