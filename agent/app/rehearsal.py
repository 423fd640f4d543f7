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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.live import Live

from agent.app.build import open_agent, unlock_signer
from agent.app.control import AgentControl
from agent.app.funding import fund_token
from agent.app.report import LiveBoard, Report, build_report
from agent.app.runner import install_signal_handlers, remove_signal_handlers
from agent.chain.abi import UNISWAP_V2_PAIR_INIT_CODE_HASH, calldata_hex
from agent.chain.arb_executor import encode_deployment, load_arb_executor_artifact
from agent.chain.registry import (
    DEVNET_CHAIN,
    DEVNET_CHAIN_ID,
    addresses_for,
    chain_name_for_id,
    known_chains,
)
from agent.config.models import AgentConfig, RiskConfig
from agent.devnet import DEFAULT_DEPLOYMENTS_DIR, Devnet
from agent.devnet.deploy import Deployment
from agent.devnet.jsonrpc import JsonRpc
from agent.devnet.market import MarketSimulator
from agent.devnet.node import DEV_ACCOUNTS
from agent.devnet.replica import stand_in_node_interface
from agent.errors import ConfigError, FatalError
from agent.types import Token
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
        data = calldata_hex("mint(address,uint256)", ["address", "uint256"], [account, amount])
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
        data = calldata_hex("transfer(address,uint256)", ["address", "uint256"], [executor, amount])
        await _send_as(rpc, account, {"to": token.address, "data": data})
    return executor


_SUBMISSION_KEYS = (
    "submit_rpc_url",
    "submission",
    "relay_urls",
    "bundle_blocks",
    "reputation_keystore",
    "reputation_password_env",
)


def rehearsal_config(
    *,
    rpc_url: str,
    deployment_file: Path | None,
    workdir: Path,
    arb_executor: str,
    tokens: list[str],
    base: Mapping[str, Any] | None = None,
    console: bool = False,
    chain: str = DEVNET_CHAIN,
    chain_id: int = DEVNET_CHAIN_ID,
) -> AgentConfig:
    """A fork-mode config for a local chain: the operator's settings (``base``) where given,
    generous limits for a first run otherwise, simulated feeds, no external alerts; with
    ``console``, the operator console on a free loopback port (its token in ``workdir``). A fork
    of a public chain (``chain``, ``chain_id``) uses the registry's addresses: no deployment
    file."""
    raw: dict[str, Any] = json.loads(json.dumps(base or {}))
    raw["chain"] = {
        **raw.get("chain", {}),
        "name": chain,
        "chain_id": chain_id,
        "rpc_urls": [rpc_url],
        "poll_interval_s": 0.2,
    }
    if deployment_file is not None:
        raw["chain"]["deployment_file"] = str(deployment_file)
    # Everything goes to the local chain: a private RPC or a relay of the real chain must never
    # see a rehearsal's transactions (a fork keeps the upstream chain id).
    for name in _SUBMISSION_KEYS:
        raw["chain"].pop(name, None)
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
    if chain != DEVNET_CHAIN:  # market.dexes defaults to the devnet's; a real chain has its own
        raw["market"].setdefault("dexes", addresses_for(chain).dex_names())
    raw.setdefault("feeds", {})["simulated"] = True
    raw["alerts"] = {"console": {"enabled": False}}
    raw["metrics"] = {"enabled": False}
    raw["console"] = {"enabled": console, "port": 0}
    raw["store"] = {"url": f"sqlite+aiosqlite:///{workdir / 'journal.db'}"}
    return AgentConfig.from_mapping(raw, environ={}, base_dir=workdir)


# -- orchestration -----------------------------------------------------------------------------
async def upstream_chain(fork_url: str) -> tuple[str, int]:
    """(registry name, chain id) of the chain at ``fork_url``; ``ConfigError`` when the
    registry does not know it (there would be no addresses to trade)."""
    try:
        async with JsonRpc(fork_url) as upstream:
            chain_id = int(await upstream.call("eth_chainId"), 16)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        # The URL may carry a provider key: the message names neither it nor its host.
        raise FatalError(
            f"the chain to fork cannot be reached ({type(exc).__name__}); check --fork-url "
            "or DEFI_AGENT_FORK_URL"
        ) from None
    name = DEVNET_CHAIN if chain_id == DEVNET_CHAIN_ID else chain_name_for_id(chain_id)
    if name is None:
        raise ConfigError(
            f"--fork-url serves chain id {chain_id}, which the registry does not know "
            f"(known: {', '.join(known_chains())})"
        )
    return name, chain_id


@contextlib.asynccontextmanager
async def local_chain(
    fork_url: str | None,
    *,
    block_time_s: int,
    workdir: Path,
    fork_block: int | None = None,
    chain: tuple[str, int] = (DEVNET_CHAIN, DEVNET_CHAIN_ID),
) -> AsyncIterator[Devnet]:
    """An Anvil fork to rehearse on: of ``fork_url``, or of a fresh devnet started here.

    The fork produces a block every ``block_time_s`` seconds; the upstream chain is never
    written to. A fork of an existing devnet uses that devnet's deployment file; a fork of a
    public chain (``chain``: its registry name and id, see ``upstream_chain``) keeps the
    upstream chain id and carries no deployment: the agent uses the registry's addresses.
    """
    async with contextlib.AsyncExitStack() as stack:
        deployment: Deployment | None = None
        if fork_url is None:
            upstream = await stack.enter_async_context(
                Devnet(name="upstream", deployments_dir=workdir)
            )
            fork_url, deployment = upstream.rpc_url, upstream.deployment
        elif chain[0] != DEVNET_CHAIN:
            fork = await stack.enter_async_context(
                Devnet(
                    name=chain[0],
                    chain_id=chain[1],
                    fork_url=fork_url,
                    fork_block=fork_block,
                    block_time_s=block_time_s,
                    deployments_dir=None,
                )
            )
            yield fork
            return
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
                fork_block=fork_block,
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
    fork_block: int | None = None,
    signer: Signer | None = None,
    simulate_market: bool = True,
    block_time_s: int = 1,
    out_dir: Path | None = None,
    console: Console | None = None,
    live: bool = False,
    dashboard: bool = False,
) -> Report:
    """Run the agent for ``blocks`` blocks on a local chain and report what it did; with
    ``dashboard``, serve the operator console and print its URL (token in the fragment).

    ``fork_url`` of a public chain: the fork keeps its chain id, the agent uses the registry's
    addresses, the wallet is funded by ``agent.app.funding`` and an ArbExecutor is deployed
    and funded there. The temporary folder (journal, deployment) is removed afterwards.
    """
    console = console or Console()
    out_dir = out_dir or Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    chain_ref = (
        (DEVNET_CHAIN, DEVNET_CHAIN_ID) if fork_url is None else await upstream_chain(fork_url)
    )
    with tempfile.TemporaryDirectory(prefix="defi-agent-") as temporary:
        workdir = Path(temporary)
        async with local_chain(
            fork_url,
            block_time_s=block_time_s,
            workdir=workdir,
            fork_block=fork_block,
            chain=chain_ref,
        ) as chain:
            assert chain.rpc is not None and chain.deployment is not None
            if signer is None:
                signer = (
                    unlock_signer(base_config)
                    if base_config is not None and base_config.wallet.keystore.is_file()
                    else Signer(bytes.fromhex(DEV_ACCOUNTS[1][1][2:]))
                )
            simulator: MarketSimulator | None = None
            if chain_ref[0] == DEVNET_CHAIN:
                deployment = chain.deployment
                executor = await fund_and_deploy(chain.rpc, deployment, signer.address)
                cfg = rehearsal_config(
                    rpc_url=chain.rpc_url,
                    deployment_file=workdir / f"{chain.name}.json",
                    workdir=workdir,
                    arb_executor=executor,
                    tokens=[s for s in deployment.tokens if not s.startswith("ALT")],
                    base=base_raw,
                    console=dashboard,
                )
                if simulate_market:
                    simulator = MarketSimulator(chain.rpc, deployment)
            else:
                name, chain_id = chain_ref
                assert fork_url is not None
                async with JsonRpc(fork_url) as upstream:
                    stand_in = await stand_in_node_interface(chain.rpc, upstream, name)
                if stand_in is not None:
                    console.print(stand_in)
                tokens = _market_tokens(base_raw, name)
                funded = await fund_public_fork(
                    chain.rpc,
                    chain.rpc_url,
                    name,
                    tokens,
                    _token_addresses(base_raw),
                    signer.address,
                    wallet_usd=_funding_usd(base_raw),
                    executor_usd=2 * _funding_usd(base_raw),
                )
                for line in funded.lines:
                    console.print(line)
                cfg = rehearsal_config(
                    rpc_url=chain.rpc_url,
                    deployment_file=None,
                    workdir=workdir,
                    arb_executor=funded.executor,
                    tokens=tokens,
                    base=base_raw,
                    chain=name,
                    chain_id=chain_id,
                    console=dashboard,
                )
            report = await _run_rehearsal(
                cfg, signer, simulator, blocks, block_time_s, out_dir, console, live
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


async def _run_rehearsal(
    cfg: AgentConfig,
    signer: Signer,
    simulator: MarketSimulator | None,
    blocks: int,
    block_time_s: int,
    out_dir: Path,
    console: Console,
    live: bool,
) -> Report:
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
                        run = await parts.engine.run(parts.blocks(), stop=stop, max_blocks=blocks)
                    finally:
                        refresher.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await refresher
            else:
                run = await parts.engine.run(parts.blocks(), stop=stop, max_blocks=blocks)
        finally:
            remove_signal_handlers()
        return build_report(run, parts, out_dir)


def _market_tokens(base_raw: Mapping[str, Any] | None, chain: str) -> list[str]:
    """The operator's ``market.tokens``, else the chain's majors the registry knows."""
    market = (base_raw or {}).get("market", {})
    if market.get("tokens"):
        return [str(t) for t in market["tokens"]]
    known = addresses_for(chain).tokens
    return [s for s in ("WETH", "USDC", "USDT", "WBTC", "DAI") if s in known]


def _funding_usd(base_raw: Mapping[str, Any] | None) -> float:
    """USD of each token to fund: a quarter of the per-token exposure cap (wallet and
    executor together stay within it, so the operator's own limits leave room to trade)."""
    if base_raw is None:
        return 100_000.0
    default = RiskConfig.model_fields["max_token_exposure_usd"].default
    cap = float(base_raw.get("risk", {}).get("max_token_exposure_usd", default))
    return min(100_000.0, cap / 4)


def _token_addresses(base_raw: Mapping[str, Any] | None) -> dict[str, str]:
    return dict((base_raw or {}).get("market", {}).get("token_addresses", {}))


@dataclass
class FundedFork:
    """What ``fund_public_fork`` did: the ArbExecutor's address and one line per step."""

    executor: str
    lines: list[str]


async def fund_public_fork(
    rpc: JsonRpc,
    rpc_url: str,
    chain: str,
    token_refs: list[str],
    token_addresses: Mapping[str, str],
    account: str,
    *,
    wallet_usd: float = 100_000.0,
    executor_usd: float = 100_000.0,
) -> FundedFork:
    """On a local fork of a public chain: gas and ``wallet_usd`` of every token for
    ``account`` (``fund_wallet``), an ArbExecutor owned by ``account`` (V2 factories whose pair
    init-code hash verifies on chain) holding ``executor_usd`` in wrapped native and the first
    stablecoin. Amounts come from the fork's own pool prices."""
    wallet = await fund_wallet(
        rpc, rpc_url, chain, token_refs, token_addresses, account, wallet_usd=wallet_usd
    )
    executor = await _deploy_and_fund_executor(rpc, rpc_url, chain, account, wallet, executor_usd)
    return FundedFork(executor, wallet.lines)  # the executor steps are appended there


@dataclass
class FundedWallet:
    lines: list[str]
    tokens: dict[str, Token]
    prices: dict[str, float]
    holders: dict[str, list[str]]


async def fund_wallet(
    rpc: JsonRpc,
    rpc_url: str,
    chain: str,
    token_refs: list[str],
    token_addresses: Mapping[str, str],
    account: str,
    *,
    wallet_usd: float = 100_000.0,
) -> FundedWallet:
    """Gas (10,000 of the native token) and ``wallet_usd`` of every token for ``account`` on
    a local chain (a fork, a replica, the devnet), priced by the chain's own pools."""
    import aiohttp

    from agent.chain.multicall import Multicall
    from agent.chain.rpc import RpcClient
    from agent.chain.tokens import resolve_tokens
    from agent.dex.pools import PoolRegistry
    from agent.market.builder import pool_prices_usd

    registry_addresses = addresses_for(chain)
    lines: list[str] = []
    await rpc.call("anvil_setBalance", [account, hex(10_000 * 10**18)])
    lines.append(f"funded {account}: 10,000 of the native token (gas)")
    async with aiohttp.ClientSession() as session:
        client = RpcClient([rpc_url], session=session)
        multicall = Multicall(client)
        tokens = await resolve_tokens(token_refs, registry_addresses, token_addresses, multicall)
        v3 = registry_addresses.v3_dexes()
        pools = PoolRegistry(
            client,
            v2_factories={d.name: d.factory for d in registry_addresses.v2_dexes().values()},
            v3_factory=next(iter(v3.values())).factory if v3 else None,
            multicall=multicall,
        )
        await pools.discover(list(tokens))
        # prices and the pools holding each token: reserves and slot0 are enough (no ticks)
        heads = await pools.read_heads(sorted(pools.pool_refs))
        prices = pool_prices_usd(heads, tokens)
        holders = {t: [a for a, p in heads.items() if t in (p.token0, p.token1)] for t in tokens}
        for address, token in tokens.items():
            price = prices.get(address)
            if not price:
                lines.append(f"{token.symbol}: no pool price on the fork; not funded")
                continue
            amount = int(wallet_usd / price * 10**token.decimals)
            method = await fund_token(rpc, address, account, amount, holders=holders[address])
            lines.append(f"funded {account}: {_whole(amount, token)} {token.symbol} by {method}")
    return FundedWallet(lines, tokens, prices, holders)


async def _deploy_and_fund_executor(
    rpc: JsonRpc,
    rpc_url: str,
    chain: str,
    account: str,
    wallet: FundedWallet,
    executor_usd: float,
) -> str:
    import aiohttp

    from agent.chain.abi import verify_v2_init_code_hash
    from agent.chain.rpc import RpcClient

    registry_addresses = addresses_for(chain)
    lines = wallet.lines
    tokens, prices, holders = wallet.tokens, wallet.prices, wallet.holders
    async with aiohttp.ClientSession() as session:
        w3 = RpcClient([rpc_url], session=session).web3()
        v2_hashes: dict[str, bytes] = {}
        for dex in registry_addresses.v2_dexes().values():
            candidates = list(
                dict.fromkeys((dex.pair_init_code_hash, UNISWAP_V2_PAIR_INIT_CODE_HASH))
            )
            verified = await verify_v2_init_code_hash(w3, dex.factory, candidates)
            if verified is not None:
                v2_hashes[dex.factory] = verified
            else:
                lines.append(
                    f"{dex.name}: pair init-code hash not verified; not used by the executor"
                )
    v3_factory = registry_addresses.uniswap_v3_factory
    if v3_factory is None:
        raise FatalError(f"no Uniswap V3 factory known on {chain}")
    creation = encode_deployment(load_arb_executor_artifact(), v3_factory, v2_hashes)
    receipt = await _send_as(rpc, account, {"data": "0x" + creation.hex(), "gas": hex(6_000_000)})
    from eth_utils import to_checksum_address

    executor = to_checksum_address(str(receipt["contractAddress"]))
    lines.append(f"ArbExecutor {executor} deployed (owner {account})")
    stables = [a for a, t in tokens.items() if t.symbol in ("USDC", "USDT", "DAI")]
    for address in [registry_addresses.wrapped_native, *stables[:1]]:
        price = prices.get(address)
        if address not in tokens or not price:
            continue
        token = tokens[address]
        amount = int(executor_usd / 2 / price * 10**token.decimals)
        method = await fund_token(rpc, address, executor, amount, holders=holders[address])
        lines.append(f"funded the executor: {_whole(amount, token)} {token.symbol} by {method}")
    return executor


def _whole(amount: int, token: Token) -> str:
    return f"{amount / 10**token.decimals:,.4f}"


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
