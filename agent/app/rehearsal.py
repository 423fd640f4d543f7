"""Rehearsals: ``dry-run`` (the agent on an Anvil fork) and ``demo`` (devnet + simulated
market + the agent trading it).

They use the same ``open_agent`` construction and the same engine as a live run; only the chain
differs (a local fork) and, for a fresh devnet, a seeded ``MarketSimulator`` makes prices move so
there is something to trade. The wallet is funded on the fork with Anvil cheat codes and its
ArbExecutor is deployed there; nothing touches a real chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from agent.app.build import open_agent, unlock_signer
from agent.app.control import AgentControl
from agent.app.report import LiveBoard, Report, build_report
from agent.app.runner import install_signal_handlers, remove_signal_handlers
from agent.chain.arb_executor import (
    UNISWAP_V2_PAIR_INIT_CODE_HASH,
    encode_deployment,
    load_arb_executor_artifact,
)
from agent.config.models import AgentConfig
from agent.devnet import DEFAULT_DEPLOYMENTS_DIR, Devnet
from agent.devnet.deploy import Deployment
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.market import MarketSimulator
from agent.devnet.node import DEV_ACCOUNTS
from agent.errors import FatalError
from agent.wallet.keystore import Signer

log = logging.getLogger(__name__)


# -- the chain side of a rehearsal ------------------------------------------------------------
async def _send_as(rpc: JsonRpc, sender: str, tx: dict[str, str]) -> dict[str, Any]:
    """Send from ``sender`` through Anvil (impersonated), wait for the receipt, check it."""
    await rpc.call("anvil_impersonateAccount", [sender])
    try:
        tx_hash = await rpc.call("eth_sendTransaction", [{"from": sender, **tx}])
    finally:
        await rpc.call("anvil_stopImpersonatingAccount", [sender])
    for _ in range(600):
        receipt: dict[str, Any] | None = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            if int(receipt["status"], 16) != 1:
                raise FatalError(f"funding transaction {tx_hash} reverted")
            return receipt
        await asyncio.sleep(0.05)
    raise FatalError(f"funding transaction {tx_hash} was not mined")


def _call(signature: str, types: list[str], args: list[object]) -> str:
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def fund_and_deploy(
    rpc: JsonRpc, deployment: Deployment, account: str, *, executor_usd: float = 400_000.0
) -> str:
    """Give ``account`` ETH and tokens on a local chain, deploy its ArbExecutor, fund it.

    Token balances come from the devnet's mintable test tokens (and WETH from wrapped ETH).
    Returns the ArbExecutor address (owned by ``account``).
    """
    await rpc.call("anvil_setBalance", [account, hex(10_000 * 10**18)])
    a = deployment.addresses
    await _send_as(
        rpc, account, {"to": a["WETH"], "data": "0xd0e30db0", "value": hex(500 * 10**18)}
    )
    for symbol, token in deployment.tokens.items():
        if symbol == "WETH":
            continue
        amount = int(1_000_000 / deployment.prices_usd[symbol] * 10**token.decimals)
        data = _call("mint(address,uint256)", ["address", "uint256"], [account, amount])
        await _send_as(rpc, account, {"to": token.address, "data": data})
    factories = {
        a[f"{dex}.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH for dex in ("uniswap_v2", "sushiswap")
    }
    creation = encode_deployment(load_arb_executor_artifact(), a["uniswap_v3.factory"], factories)
    receipt = await _send_as(rpc, account, {"data": "0x" + creation.hex(), "gas": hex(6_000_000)})
    executor = str(receipt["contractAddress"])
    from eth_utils import to_checksum_address

    executor = to_checksum_address(executor)
    for symbol in ("WETH", "USDC"):
        token = deployment.tokens[symbol]
        amount = int(executor_usd / 2 / deployment.prices_usd[symbol] * 10**token.decimals)
        data = _call("transfer(address,uint256)", ["address", "uint256"], [executor, amount])
        await _send_as(rpc, account, {"to": token.address, "data": data})
    return executor


def rehearsal_config(
    *,
    rpc_url: str,
    deployment_file: Path,
    workdir: Path,
    arb_executor: str,
    tokens: list[str],
    base: Mapping[str, Any] | None = None,
    console: bool = False,
) -> AgentConfig:
    """A fork-mode config for a local chain: the operator's settings (``base``) where given,
    generous limits for a first run otherwise, simulated feeds, no external alerts; with
    ``console``, the operator console on a free loopback port (its token in ``workdir``)."""
    raw: dict[str, Any] = json.loads(json.dumps(base or {}))
    raw["chain"] = {
        **raw.get("chain", {}),
        "name": "devnet",
        "chain_id": 31337,
        "rpc_urls": [rpc_url],
        "deployment_file": str(deployment_file),
        "poll_interval_s": 0.2,
    }
    raw.pop("wallet", None)
    execution = raw.setdefault("execution", {})
    execution.update({"mode": "fork", "arb_executor": arb_executor})
    execution.setdefault("receipt_timeout_s", 30)
    execution.setdefault("replace_after_s", 15)
    execution.setdefault("slippage_bps", 30)
    risk = raw.setdefault("risk", {})
    if base is None:
        risk.update(
            {
                "max_gas_price_gwei": 500,
                "max_trade_usd": 500_000.0,
                "max_token_exposure_usd": 5_000_000.0,
                "max_total_exposure_usd": 10_000_000.0,
                "daily_loss_limit_usd": 50_000.0,
                "max_drawdown_pct": 50.0,
                # The simulated gaps are wide (a 400k USD swap): closing one moves a pool a lot.
                "max_price_impact_bps": 1_000,
                "cooldown_s": 0.0,
                "revert_cooldown_s": 5.0,
            }
        )
        raw["strategies"] = {
            "arbitrage": {"enabled": True, "min_profit_usd": 1.0, "max_input_usd": 200_000.0},
        }
    risk["token_allowlist"] = tokens
    risk["kill_switch_file"] = str(workdir / "KILL")
    raw.setdefault("market", {})["tokens"] = tokens
    raw.setdefault("feeds", {})["simulated"] = True
    raw["alerts"] = {"console": {"enabled": False}}
    raw["metrics"] = {"enabled": False}
    raw["console"] = {"enabled": console, "port": 0}
    raw["store"] = {"url": f"sqlite+aiosqlite:///{workdir / 'journal.db'}"}
    return AgentConfig.from_mapping(raw, environ={}, base_dir=workdir)


# -- orchestration -----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def local_chain(
    fork_url: str | None, *, block_time_s: int, workdir: Path
) -> AsyncIterator[Devnet]:
    """An Anvil fork to rehearse on: of ``fork_url``, or of a fresh devnet started here.

    The fork produces a block every ``block_time_s`` seconds; the upstream chain is never
    written to. A fork of an existing devnet uses that devnet's deployment file.
    """
    async with contextlib.AsyncExitStack() as stack:
        deployment: Deployment | None = None
        if fork_url is None:
            upstream = await stack.enter_async_context(
                Devnet(name="upstream", deployments_dir=workdir)
            )
            fork_url, deployment = upstream.rpc_url, upstream.deployment
        else:
            known = DEFAULT_DEPLOYMENTS_DIR / "devnet.json"
            if not known.is_file():
                raise FatalError(
                    f"dry-run --fork-url needs the forked chain's deployment ({known}); "
                    "start it with `defi-agent devnet up`"
                )
            deployment = Deployment.from_json(known.read_text())
        fork = await stack.enter_async_context(
            Devnet(
                name="fork",
                fork_url=fork_url,
                deployment=deployment,
                block_time_s=block_time_s,
                deployments_dir=workdir,
            )
        )
        yield fork


async def rehearse(
    *,
    blocks: int,
    base_config: AgentConfig | None = None,
    base_raw: Mapping[str, Any] | None = None,
    fork_url: str | None = None,
    signer: Signer | None = None,
    simulate_market: bool = True,
    block_time_s: int = 1,
    out_dir: Path | None = None,
    console: Console | None = None,
    live: bool = False,
    dashboard: bool = False,
) -> Report:
    """Run the agent for ``blocks`` blocks on a local chain and report what it did; with
    ``dashboard``, serve the operator console and print its URL (token in the fragment)."""
    console = console or Console()
    workdir = Path(tempfile.mkdtemp(prefix="defi-agent-"))
    out_dir = out_dir or Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    async with local_chain(fork_url, block_time_s=block_time_s, workdir=workdir) as chain:
        assert chain.rpc is not None and chain.deployment is not None
        deployment = chain.deployment
        if signer is None:
            signer = (
                unlock_signer(base_config)
                if base_config is not None and base_config.wallet.keystore.is_file()
                else Signer(bytes.fromhex(DEV_ACCOUNTS[1][1][2:]))
            )
        executor = await fund_and_deploy(chain.rpc, deployment, signer.address)
        deployment_file = workdir / f"{chain.name}.json"
        symbols = [s for s in deployment.tokens if not s.startswith("ALT")]
        cfg = rehearsal_config(
            rpc_url=chain.rpc_url,
            deployment_file=deployment_file,
            workdir=workdir,
            arb_executor=executor,
            tokens=symbols,
            base=base_raw,
            console=dashboard,
        )
        simulator = MarketSimulator(chain.rpc, deployment) if simulate_market else None
        stop = asyncio.Event()
        # The fork is this rehearsal's own: the key's nonces there collide with nobody's.
        async with open_agent(
            cfg,
            mode="fork",
            signer=signer,
            console=console,
            control_factory=lambda parts: AgentControl(parts, stop),  # the console's kill
            lock_wallet=False,
        ) as parts:
            if parts.console is not None:
                # The terminal is the operator's: the token-bearing URL is printed, never logged.
                console.print(
                    f"Dashboard: {parts.console.dashboard_url()}",
                    soft_wrap=True,
                    markup=False,
                    highlight=False,
                )
            board = LiveBoard(parts)
            parts.engine.on_tick = board.on_tick
            if simulator is not None:
                parts.engine.background.append(lambda: _drive(simulator, block_time_s))
            install_signal_handlers(stop)
            try:
                if live:
                    with Live(board.render(), console=console, refresh_per_second=4) as screen:
                        refresher = asyncio.create_task(_refresh(screen, board))
                        try:
                            run = await parts.engine.run(
                                parts.blocks(), stop=stop, max_blocks=blocks
                            )
                        finally:
                            refresher.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await refresher
                else:
                    run = await parts.engine.run(parts.blocks(), stop=stop, max_blocks=blocks)
            finally:
                remove_signal_handlers()
            report = build_report(run, parts, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


async def _drive(simulator: MarketSimulator, interval_s: float) -> None:
    """Simulated traders act once per block interval; a failing step is logged, not fatal."""
    while True:
        try:
            await simulator.step()
        except Exception as exc:  # the demo market must never take the agent down
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("simulated market step failed: %s", exc)
        await asyncio.sleep(interval_s)


async def _refresh(screen: Live, board: LiveBoard) -> None:
    while True:
        screen.update(board.render())
        await asyncio.sleep(0.25)
