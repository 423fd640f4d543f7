"""``defi-agent preflight``: what an operator checks before trading a real chain.

Each check is one line with a verdict; the ones that matter (every RPC endpoint on
``chain.chain_id``, code at Multicall3 and the factories, the keystore's address against
``wallet.address``) are fatal: ``preflight`` exits non-zero and ``run`` refuses to start
(``verify_chain``). A wrong chain is a configuration error (exit 2) naming both chain ids.

Nothing here signs or sends anything; the keystore is read without its password.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from eth_abi import decode, encode
from eth_utils import to_checksum_address

from agent.chain.abi import calldata
from agent.chain.limits import ProviderLimits
from agent.chain.multicall import Call, Multicall
from agent.chain.rpc import RpcClient
from agent.chain.tokens import resolve_tokens
from agent.config.models import AgentConfig
from agent.dex.pools import PoolRegistry
from agent.dex.v2 import V2Pool
from agent.errors import AgentError, WalletError, WrongChainError
from agent.market.builder import pool_prices_usd
from agent.market.discovery import pool_liquidity_usd
from agent.redaction import redact_endpoint
from agent.types import Token
from agent.wallet.keystore import read_keystore_address

_OWNER = bytes.fromhex("8da5cb5b")  # owner()
_EXECUTOR = bytes.fromhex("c34c08e5")  # executor()
_V2_INIT_CODE_HASH = bytes.fromhex("0c3502e1")  # v2InitCodeHash(address)


@dataclass(frozen=True, slots=True)
class Check:
    """One preflight verdict. ``fatal``: a failure here stops ``run`` from trading."""

    name: str
    ok: bool
    detail: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class PoolRow:
    dex: str
    pair: str
    fee_pips: int
    liquidity_usd: float | None


@dataclass
class PreflightReport:
    chain: str
    chain_id: int
    checks: list[Check] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "WETH/DAI on sushiswap: no pool"
    balances: list[tuple[str, str, str]] = field(default_factory=list)  # holder, token, amount

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.fatal]

    def add(self, name: str, ok: bool, detail: str, *, fatal: bool = False) -> None:
        self.checks.append(Check(name, ok, detail, fatal))


async def endpoint_chain_id(url: str, session: aiohttp.ClientSession, timeout_s: float) -> int:
    """``eth_chainId`` of one endpoint, without failover (each endpoint answers for itself)."""
    client = RpcClient([url], session=session, timeout_s=timeout_s, max_attempts=2)
    return int(await client.call_raw("eth_chainId"), 16)


async def verify_chain(cfg: AgentConfig, session: aiohttp.ClientSession) -> None:
    """Refuse to trade unless every RPC endpoint serves ``chain.chain_id``.

    Raises ``WrongChainError`` (exit 2) naming the endpoint (redacted) and both chain ids; an
    endpoint that does not answer is left to the RPC client's failover.
    """
    urls = [str(u) for u in cfg.chain.rpc_urls]
    if cfg.chain.submit_rpc_url is not None:
        urls.append(str(cfg.chain.submit_rpc_url))
    answers = await asyncio.gather(
        *(endpoint_chain_id(u, session, cfg.chain.request_timeout_s) for u in urls),
        return_exceptions=True,
    )
    for url, answer in zip(urls, answers, strict=True):
        if isinstance(answer, int) and answer != cfg.chain.chain_id:
            raise WrongChainError(
                f"chain: {redact_endpoint(url)} serves chain id {answer}, but the config says "
                f"chain.chain_id = {cfg.chain.chain_id} ({cfg.chain.name}); refusing to trade"
            )


async def check_wallet_address(cfg: AgentConfig) -> str | None:
    """The keystore's address; ``WalletError`` when ``wallet.address`` names another one.
    None when there is no keystore yet (paper mode needs none)."""
    if not cfg.wallet.keystore.is_file():
        return None
    address = read_keystore_address(cfg.wallet.keystore)
    if cfg.wallet.address is not None and cfg.wallet.address.lower() != address.lower():
        raise WalletError(
            f"wallet.address is {cfg.wallet.address} but the keystore {cfg.wallet.keystore} "
            f"holds {address}"
        )
    return address


def _units(amount: int, decimals: int) -> str:
    whole = amount / 10**decimals
    return f"{whole:,.6f}".rstrip("0").rstrip(".")


async def _code_checks(report: PreflightReport, rpc: RpcClient, cfg: AgentConfig) -> bool:
    addresses = cfg.chain_addresses()
    wanted = [("Multicall3", addresses.multicall3)]
    dexes = set(cfg.market.dexes)
    wanted += [
        (f"{d.name} factory", d.factory) for d in addresses.v2_dexes().values() if d.name in dexes
    ]
    wanted += [
        (f"{d.name} factory", d.factory) for d in addresses.v3_dexes().values() if d.name in dexes
    ]
    all_ok = True
    for name, address in wanted:
        code = await rpc.call_raw("eth_getCode", [address, "latest"])
        ok = isinstance(code, str) and len(code) > 2
        all_ok &= ok
        report.add(f"code: {name}", ok, address if ok else f"no code at {address}", fatal=True)
    return all_ok


async def _discover_pools(
    report: PreflightReport,
    rpc: RpcClient,
    multicall: Multicall,
    cfg: AgentConfig,
    tokens: dict[str, Token],
) -> None:
    addresses = cfg.chain_addresses()
    dexes = set(cfg.market.dexes)
    v2: dict[str, str] = {
        d.name: d.factory for d in addresses.v2_dexes().values() if d.name in dexes
    }
    v3 = [d for d in addresses.v3_dexes().values() if d.name in dexes]
    registry = PoolRegistry(
        rpc,
        v2_factories=v2,
        v3_factory=v3[0].factory if v3 else None,
        v3_dex=v3[0].name if v3 else "uniswap_v3",
        fee_tiers=list(cfg.market.v3_fee_tiers),
        multicall=multicall,
        tick_window_pct=cfg.market.v3_tick_window_pct,
    )
    await registry.discover(list(tokens))
    await registry.refresh(int(await rpc.call_raw("eth_blockNumber"), 16))
    prices = pool_prices_usd(registry.pools, tokens, registry.stale_pools)
    found: set[tuple[str, frozenset[str], int]] = set()
    refs = registry.pool_refs
    for address, pool in sorted(registry.pools.items(), key=lambda kv: refs[kv[0]].dex):
        ref = refs[address]
        t0, t1 = tokens[pool.token0], tokens[pool.token1]
        liquidity: float | None = None
        if pool.token0 in prices and pool.token1 in prices:
            if isinstance(pool, V2Pool):
                liquidity = pool.reserve0 / 10**t0.decimals * prices[pool.token0] + (
                    pool.reserve1 / 10**t1.decimals * prices[pool.token1]
                )
            else:
                held = await multicall.aggregate(
                    [
                        Call(t.address, calldata("balanceOf(address)", ["address"], [address]))
                        for t in (t0, t1)
                    ]
                )
                liquidity = 0.0
                for token, answer in zip((t0, t1), held.results, strict=True):
                    if answer.success and len(answer.return_data) >= 32:
                        (amount,) = decode(["uint256"], answer.return_data[:32])
                        liquidity += int(amount) / 10**token.decimals * prices[token.address]
        pair = f"{t0.symbol}/{t1.symbol}"
        found.add((ref.dex, frozenset((pool.token0, pool.token1)), pool.fee_pips))
        in_range = pool_liquidity_usd(pool, tokens, prices)
        if in_range is not None and in_range < cfg.market.min_liquidity_usd:
            report.skipped.append(
                f"{pair} on {ref.dex} fee {pool.fee_pips}: ${in_range:,.0f} of liquidity "
                f"(in range), under market.min_liquidity_usd"
            )
            continue
        report.pools.append(PoolRow(ref.dex, pair, pool.fee_pips, liquidity))
    for a, b in itertools.combinations(sorted(tokens), 2):
        pair = f"{tokens[a].symbol}/{tokens[b].symbol}"
        for dex in v2:
            if not any(dex == d and tokens_of == {a, b} for d, tokens_of, _ in found):
                report.skipped.append(f"{pair} on {dex}: no pair")
        for fee in cfg.market.v3_fee_tiers if v3 else ():
            if (v3[0].name, frozenset((a, b)), fee) not in found:
                report.skipped.append(f"{pair} on {v3[0].name} fee {fee}: no pool")
    for address, error in registry.errors().items():
        report.skipped.append(f"{address}: {error}")
    report.add("pools", bool(report.pools), f"{len(report.pools)} discovered", fatal=True)


async def _wallet_checks(
    report: PreflightReport,
    rpc: RpcClient,
    multicall: Multicall,
    cfg: AgentConfig,
    tokens: dict[str, Token],
    account: str,
) -> None:
    gas = int(await rpc.call_raw("eth_getBalance", [account, "latest"]), 16)
    report.add("wallet gas", gas > 0, f"{_units(gas, 18)} of the native token at {account}")
    holders = [("wallet", account)]
    executor = str(cfg.execution.arb_executor or "") or None
    if executor is not None:
        holders.append(("executor", executor))
    calls = [
        Call(t.address, calldata("balanceOf(address)", ["address"], [holder]))
        for _, holder in holders
        for t in tokens.values()
    ]
    answer = await multicall.aggregate(calls)
    results = iter(answer.results)
    for name, _holder in holders:
        for token in tokens.values():
            result = next(results)
            if result.success and len(result.return_data) >= 32:
                (amount,) = decode(["uint256"], result.return_data[:32])
                report.balances.append((name, token.symbol, _units(int(amount), token.decimals)))
    # Outstanding allowances to the routers: exact approvals are spent by their swap, so a
    # leftover one is what a refused or reverted swap left behind.
    addresses = cfg.chain_addresses()
    spenders = [d.router02 for d in addresses.v2_dexes().values() if d.router02]
    spenders += [r for d in addresses.v3_dexes().values() if (r := d.router)]
    pairs = list(itertools.product(tokens.values(), spenders))
    allowance_calls = [
        Call(
            t.address,
            calldata("allowance(address,address)", ["address", "address"], [account, spender]),
        )
        for t, spender in pairs
    ]
    outstanding = []
    for (token, spender), result in zip(
        pairs, (await multicall.aggregate(allowance_calls)).results, strict=True
    ):
        if result.success and len(result.return_data) >= 32:
            (amount,) = decode(["uint256"], result.return_data[:32])
            if amount:
                outstanding.append(f"{token.symbol} -> {spender}: {amount}")
    report.add(
        "allowances",
        True,
        "; ".join(outstanding) if outstanding else "none outstanding (reset to 0 before reuse)",
    )


async def _executor_checks(
    report: PreflightReport, rpc: RpcClient, cfg: AgentConfig, account: str | None
) -> None:
    executor = str(cfg.execution.arb_executor or "") or None
    if executor is None:
        report.add("executor", True, "none configured (arbitrage needs execution.arb_executor)")
        return
    code = await rpc.call_raw("eth_getCode", [executor, "latest"])
    if not (isinstance(code, str) and len(code) > 2):
        report.add("executor", False, f"no code at {executor}", fatal=True)
        return
    (owner,) = decode(["address"], bytes.fromhex((await _call(rpc, executor, _OWNER))[2:]))
    (trader,) = decode(["address"], bytes.fromhex((await _call(rpc, executor, _EXECUTOR))[2:]))
    report.add("executor owner", True, f"{to_checksum_address(owner)} (receives withdrawals)")
    # Only the executor role may trade through it: that must be the keystore's account.
    trader_ok = account is None or trader.lower() == account.lower()
    report.add("executor role", trader_ok, to_checksum_address(trader), fatal=True)
    registered = []
    for dex in cfg.chain_addresses().v2_dexes().values():
        if dex.name not in cfg.market.dexes:
            continue
        raw = await _call(rpc, executor, _V2_INIT_CODE_HASH + encode(["address"], [dex.factory]))
        value = bytes.fromhex(raw[2:])[:32]
        ok = value == dex.pair_init_code_hash
        detail = "registered" if ok else ("not registered" if not any(value) else "other hash")
        registered.append(f"{dex.name}: {detail}")
    report.add("executor init-code hashes", True, "; ".join(registered) or "-")


async def _call(rpc: RpcClient, to: str, data: bytes) -> str:
    return str(await rpc.call_raw("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"]))


async def _alert_checks(
    report: PreflightReport, cfg: AgentConfig, session: aiohttp.ClientSession
) -> None:
    alerts = cfg.alerts
    if alerts.telegram.enabled and alerts.telegram.bot_token is not None:
        from agent.alerts.channels import telegram_api

        try:
            await telegram_api(alerts.telegram, session).call("getMe", {}, timeout_s=10.0)
            report.add("alerts: telegram", True, "bot reachable")
        except AgentError as exc:
            report.add("alerts: telegram", False, type(exc).__name__)
    if alerts.discord.enabled and alerts.discord.webhook_url is not None:
        url = alerts.discord.webhook_url.get_secret_value()
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                report.add("alerts: discord", response.status == 200, f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:  # the URL is a secret: never shown
            report.add("alerts: discord", False, type(exc).__name__)


def _submission_checks(report: PreflightReport, cfg: AgentConfig, account: str | None) -> None:
    """Bundle mode: the relay reputation keystore exists and holds another key than the
    trading one (its address is read without its password)."""
    chain = cfg.chain
    if chain.submission_mode != "bundle" or chain.reputation_keystore is None:
        return
    try:
        reputation = read_keystore_address(chain.reputation_keystore)
    except WalletError as exc:
        report.add("relay reputation key", False, str(exc), fatal=True)
        return
    if account is not None and reputation.lower() == account.lower():
        detail = f"{reputation} is the trading key; relays must see another key"
        report.add("relay reputation key", False, detail, fatal=True)
        return
    relays = ", ".join(redact_endpoint(str(url)) for url in chain.relay_urls)
    detail = f"{reputation} signs bundles for {relays}, {chain.bundle_blocks} blocks ahead"
    report.add("relay reputation key", True, detail)


async def preflight(cfg: AgentConfig) -> PreflightReport:
    """Run every check against the configured chain. ``WrongChainError`` for a wrong chain."""
    report = PreflightReport(cfg.chain.name, cfg.chain.chain_id)
    async with aiohttp.ClientSession() as session:
        urls: Sequence[str] = [str(u) for u in cfg.chain.rpc_urls]
        for url in urls:
            try:
                chain_id = await endpoint_chain_id(url, session, cfg.chain.request_timeout_s)
            except AgentError as exc:
                report.add(f"rpc {redact_endpoint(url)}", False, f"unreachable: {exc}", fatal=True)
                continue
            if chain_id != cfg.chain.chain_id:
                raise WrongChainError(
                    f"chain: {redact_endpoint(url)} serves chain id {chain_id}, but the config "
                    f"says chain.chain_id = {cfg.chain.chain_id} ({cfg.chain.name})"
                )
            report.add(f"rpc {redact_endpoint(url)}", True, f"chain id {chain_id}")
        if report.failed:
            return report
        limits = ProviderLimits(**cfg.chain.limits.model_dump())
        rpc = RpcClient(
            list(urls), session=session, timeout_s=cfg.chain.request_timeout_s, limits=limits
        )
        multicall = Multicall(
            rpc,
            max_calls_per_chunk=cfg.market.multicall_batch_size,
            max_request_bytes=limits.max_request_bytes,
        )
        try:
            account = await check_wallet_address(cfg)
            report.add("keystore", True, account or "none yet (paper mode needs none)")
        except WalletError as exc:
            account = None
            report.add("keystore", False, str(exc), fatal=True)
        if not await _code_checks(report, rpc, cfg):
            return report
        try:
            tokens = await resolve_tokens(
                cfg.market.tokens, cfg.chain_addresses(), cfg.market.token_addresses, multicall
            )
        except AgentError as exc:
            report.add("tokens", False, str(exc), fatal=True)
            return report
        report.add("tokens", True, ", ".join(t.symbol for t in tokens.values()))
        await _discover_pools(report, rpc, multicall, cfg, tokens)
        if account is not None:
            await _wallet_checks(report, rpc, multicall, cfg, tokens, account)
        await _executor_checks(report, rpc, cfg, account)
        _submission_checks(report, cfg, account)
        await _alert_checks(report, cfg, session)
    return report


def report_lines(report: PreflightReport) -> dict[str, Any]:
    """The report as JSON-friendly data (``preflight --json``)."""
    return {
        "chain": report.chain,
        "chain_id": report.chain_id,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks],
        "pools": [
            {"dex": p.dex, "pair": p.pair, "fee_pips": p.fee_pips, "liquidity_usd": p.liquidity_usd}
            for p in report.pools
        ],
        "skipped": report.skipped,
        "balances": report.balances,
    }
