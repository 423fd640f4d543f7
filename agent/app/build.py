"""Builds a running agent from ``AgentConfig``: the one place that constructs things.

``open_agent(cfg, ...)`` is an async context manager yielding ``AgentParts`` — every component
the engine needs, connected and ready (database migrated, pools discovered, journal
reconciled against the chain) — and closing all of them on the way out, whatever happens.
Components never build each other; they receive what they use from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

import aiohttp
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError
from web3 import AsyncWeb3

from agent.alerts.channels import build_channels, build_command_listener, telegram_api
from agent.alerts.fanout import AlertFanout
from agent.alerts.subscriber import AlertSubscriber
from agent.app.logs import redactor_for
from agent.app.preflight import check_wallet_address, verify_chain
from agent.chain.blocks import HeadMonitor, newest
from agent.chain.bundle import BundleJournal, BundleSender
from agent.chain.gas import GasOracle, GasPolicy
from agent.chain.heads import HeadGuard, RecentHeaders
from agent.chain.l1fee import ExtraFees, chain_fees_for
from agent.chain.limits import ProviderLimits
from agent.chain.logs import get_logs
from agent.chain.multicall import Multicall
from agent.chain.nonce import NonceManager
from agent.chain.registry import DEVNET_CHAIN, EXPECTED_BLOCK_TIME_S, chain_profile
from agent.chain.relay import RelayClient
from agent.chain.rpc import RpcClient, poll_new_blocks, subscribe_new_blocks
from agent.chain.tokens import resolve_tokens
from agent.chain.tx import TransactionSender
from agent.config.models import AgentConfig, ChainConfig
from agent.console.server import ConsoleServer
from agent.dex.pools import PoolRegistry
from agent.engine.loop import Engine, EngineSettings, Executor
from agent.errors import AgentError, ConfigError
from agent.events import EventBus, PoolsLoading
from agent.events.daily import DailyLedger
from agent.events.log import EventLog
from agent.execution import (
    ChainExecutor,
    DexContracts,
    PaperExecutor,
    Reconciler,
    settings_from_config,
)
from agent.execution.balances import BalanceReader, PaperBalances
from agent.execution.finality import FinalityWatch
from agent.execution.policy import SigningPolicy
from agent.execution.tx_journal import JournaledTxs
from agent.feeds.factory import build_feeds
from agent.feeds.oneinch import OneInchClient, QuotePair
from agent.feeds.readings import Poller
from agent.feeds.sim import SimCexClient, SimOneInchClient, SimSentimentFeed, best_pool_quote
from agent.feeds.watch import FeedWatch
from agent.feeds.whales import WhaleWatcher
from agent.market.builder import FeedBoard, MarketView
from agent.market.discovery import LiquidityFilter
from agent.market.portfolio import PORTFOLIO_STATE_KEY, Portfolio
from agent.metrics.server import AgentMetrics, HealthReport, HealthState, MetricsServer
from agent.risk.gate import RiskGate
from agent.store.db import create_engine, migrate, session_factory
from agent.store.journal import HEARTBEAT_INTERVAL_S, Journal
from agent.store.lock import journal_lock, wallet_lock
from agent.types import Intent, Token
from agent.wallet.keystore import KeystorePassword, Signer, unlock_keystore
from strategies import STRATEGIES
from strategies.base import Strategy
from strategies.signal import SignalStrategy

log = logging.getLogger(__name__)


@dataclass
class AgentParts:
    """Everything a run needs. ``engine`` is ready to ``run``; the rest is for reports."""

    cfg: AgentConfig
    mode: str
    rpc: RpcClient
    w3: AsyncWeb3[Any]
    registry: PoolRegistry
    market: MarketView
    journal: Journal
    portfolio: Portfolio
    risk: RiskGate
    alerts: AlertFanout
    metrics: AgentMetrics
    engine: Engine
    tokens: dict[str, Token]
    account: str | None
    arb_executor: str | None
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    events: EventBus = field(default_factory=EventBus)
    health: HealthState = field(default_factory=HealthState)
    heads: HeadMonitor | None = None  # None: heads are not published
    run_id: int | None = None  # the journal's record of this run
    head_guard: HeadGuard | None = None  # None: heads are not checked for plausibility
    console: ConsoleServer | None = None  # the operator console, when console.enabled

    def blocks(self) -> AsyncIterator[int]:
        """The heads the engine acts on: the newest checked head each time it asks, never a
        backlog (``newest``: a chain faster than a tick skips heads rather than queue them).

        The source is drained continuously, so the checks see the newest head too (never a
        queue of old ones); the checks and the stall watch run while the engine ticks."""
        chain = self.cfg.chain
        use_ws = chain.ws_url is not None and self.cfg.engine.block_source in ("auto", "ws")
        on_error = None if self.heads is None else self.heads.source_failed
        source: AsyncIterator[int]
        if use_ws:
            assert chain.ws_url is not None
            source = subscribe_new_blocks(str(chain.ws_url))
        else:
            source = poll_new_blocks(self.rpc, chain.poll_interval_s, on_error=on_error)
        source = newest(source)
        if self.head_guard is not None:  # judged before anything (the stall watch) sees it
            source = self.head_guard.guard(source)
        if self.heads is not None:
            source = self.heads.watch(source)
        return newest(source)


def nominal_block_time_s(chain: ChainConfig) -> float:
    """Seconds between blocks the head checks assume: configured, else the registry's figure.
    The devnet mines on demand, as fast as transactions arrive: a short one."""
    if chain.block_time_s is not None:
        return chain.block_time_s
    if chain.name == DEVNET_CHAIN:
        return 0.05
    return EXPECTED_BLOCK_TIME_S.get(chain.name, 12.0)


def provider_limits(cfg: AgentConfig) -> ProviderLimits:
    """``[chain.limits]`` as the ``ProviderLimits`` every RPC read respects."""
    return ProviderLimits(**cfg.chain.limits.model_dump())  # the same names, one to one


async def _tokens(cfg: AgentConfig, multicall: Multicall) -> dict[str, Token]:
    """``market.tokens`` (symbols or 0x addresses) with decimals and symbols read on chain."""
    return await resolve_tokens(
        cfg.market.tokens, cfg.chain_addresses(), cfg.market.token_addresses, multicall
    )


# Strategy settings that size a trade in USD; the risk gate refuses any trade above
# risk.max_trade_usd, so a strategy sized above it would only ever propose refused trades.
_USD_SIZE_FIELDS = ("max_input_usd", "max_trade_usd")
# Room under the cap for the price moving between sizing and the risk check.
_SIZE_HEADROOM = 0.98


def sized_within_risk(params: Any, risk: Any) -> tuple[Any, list[str]]:
    """``params`` with every USD size capped under ``risk.max_trade_usd``, and a note per cap
    (for ``config check``)."""
    cap = risk.max_trade_usd * _SIZE_HEADROOM
    capped = {f: cap for f in _USD_SIZE_FIELDS if hasattr(params, f) and getattr(params, f) > cap}
    notes = [
        f"{f} ({getattr(params, f):,.0f} USD) is above risk.max_trade_usd "
        f"({risk.max_trade_usd:,.0f} USD): trades are sized to {cap:,.0f} USD"
        for f in capped
    ]
    return (params.model_copy(update=capped) if capped else params), notes


def build_strategies(cfg: AgentConfig) -> list[Strategy]:
    strategies: list[Strategy] = []
    for name, cls in STRATEGIES.items():
        params = getattr(cfg.strategies, name)
        if params.enabled:
            strategies.append(cls(sized_within_risk(params, cfg.risk)[0]))
    return strategies


def settings_notes(cfg: AgentConfig) -> list[str]:
    """Settings that contradict each other, each with what the agent does about it."""
    notes: list[str] = []
    for name in STRATEGIES:
        params = getattr(cfg.strategies, name)
        if params.enabled:
            notes += [
                f"strategies.{name}.{note}" for note in sized_within_risk(params, cfg.risk)[1]
            ]
    if cfg.risk.max_trade_usd > cfg.risk.max_token_exposure_usd:
        notes.append(
            f"risk.max_trade_usd ({cfg.risk.max_trade_usd:,.0f}) is above "
            f"risk.max_token_exposure_usd ({cfg.risk.max_token_exposure_usd:,.0f}): a buy of "
            "one token can never use the whole trade size"
        )
    if cfg.execution.mode == "demo":
        notes.append(
            'execution.mode = "demo" is what `defi-agent demo` runs (a devnet, simulated '
            "traders, no keystore); `run` refuses it: choose live, paper or fork"
        )
    return notes


def unlock_signer(cfg: AgentConfig) -> Signer:
    """The keystore's signer with the configured password (env var or file; never argv)."""
    secret = cfg.keystore_password()
    if secret is None:
        raise ConfigError(
            f"wallet: no keystore password: set {cfg.wallet.password_env} or wallet.password_file"
        )
    from_env = cfg.env_value(cfg.wallet.password_env) is not None
    origin = cfg.wallet.password_env if from_env else str(cfg.wallet.password_file)
    password = KeystorePassword(secret, "env" if from_env else "file", origin)
    return unlock_keystore(cfg.wallet.keystore, password)


def bundle_sender(
    cfg: AgentConfig,
    sender: TransactionSender,
    session: aiohttp.ClientSession,
    journal: BundleJournal,
) -> BundleSender:
    """Bundle mode: the relays of ``chain.relay_urls``, each request signed with the key of
    ``chain.reputation_keystore`` (its own keystore and password; never the trading key)."""
    chain = cfg.chain
    assert chain.reputation_keystore is not None  # the config requires it in bundle mode
    secret = cfg.reputation_password()
    if secret is None:
        raise ConfigError(
            f"chain.reputation_password_env: {chain.reputation_password_env} is not set "
            "(the reputation keystore's password)"
        )
    password = KeystorePassword(secret, "env", chain.reputation_password_env)
    reputation = unlock_keystore(chain.reputation_keystore, password)
    if reputation.address == sender.address:
        raise ConfigError(
            "chain.reputation_keystore: holds the trading key; relays must see another key"
        )
    relays = [RelayClient(str(url), session, reputation) for url in chain.relay_urls]
    return BundleSender(sender, relays, chain.bundle_blocks, journal)


@contextlib.asynccontextmanager
async def open_agent(
    cfg: AgentConfig,
    *,
    mode: str | None = None,
    signer: Signer | None = None,
    console: Console | None = None,
    control_factory: Callable[[AgentParts], Any] | None = None,
    lock_wallet: bool = True,
) -> AsyncIterator[AgentParts]:
    """Connect and build every part for ``mode`` (default ``execution.mode``).

    The journal is locked for this agent alone, and so is the wallet unless ``lock_wallet`` is
    False (rehearsals: a throwaway fork of their own, where the key's nonces are nobody
    else's). A second agent gets ``InstanceLocked``."""
    mode = mode or cfg.execution.mode
    chain_mode = "fork" if mode == "demo" else mode
    console = console or Console()
    async with contextlib.AsyncExitStack() as stack:
        engine_db = create_engine(cfg.store.url)
        stack.push_async_callback(engine_db.dispose)
        # One agent per journal, locked first: a second agent is told who holds it before it
        # binds a port, connects, migrates or signs anything.
        await stack.enter_async_context(journal_lock(engine_db))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        # Before anything reads the chain: the right chain, the operator's own keystore.
        await verify_chain(cfg, session)
        if chain_mode != "paper" and signer is None:
            await check_wallet_address(cfg)
        # One bus per agent: sources publish what happened, these subscribe.
        events = EventBus()
        metrics = AgentMetrics()
        metrics.subscribe(events)
        health = HealthState()
        health.subscribe(events)
        EventLog(summary_every_s=cfg.logging.summary_every_s).subscribe(events)
        DailyLedger(events).subscribe()
        built: list[AgentParts] = []  # the parts, once built: /health reads them
        if cfg.metrics.enabled:
            # Listen first: a busy port is a configuration error found before any connection.
            server = MetricsServer(
                metrics,
                lambda: _health(health, built),
                host=cfg.metrics.host,
                port=cfg.metrics.port,
            )
            await server.start()
            stack.push_async_callback(server.stop)
        console_server = ConsoleServer(cfg.console, events) if cfg.console.enabled else None
        if console_server is not None:
            console_server.listen()  # like metrics: a busy port fails before any connection
            stack.callback(console_server.close)
        limits = provider_limits(cfg)
        rpc = RpcClient(
            [str(u) for u in cfg.chain.rpc_urls],
            session=session,
            timeout_s=cfg.chain.request_timeout_s,
            limits=limits,
            on_request=lambda url, method, ok, latency_s: metrics.record_rpc_request(
                url, method, ok=ok, latency_s=latency_s
            ),
        )
        w3 = rpc.web3()
        addresses = cfg.chain_addresses()
        multicall = Multicall(
            rpc,
            max_calls_per_chunk=cfg.market.multicall_batch_size,
            max_request_bytes=limits.max_request_bytes,
        )
        tokens = await _tokens(cfg, multicall)
        dexes = set(cfg.market.dexes)
        v2_factories: dict[str, str] = {
            d.name: d.factory for d in addresses.v2_dexes().values() if d.name in dexes
        }
        v3 = {d.name: d for d in addresses.v3_dexes().values() if d.name in dexes}
        registry = PoolRegistry(
            rpc,
            v2_factories=v2_factories,
            v3_factory=next(iter(v3.values())).factory if v3 else None,
            fee_tiers=list(cfg.market.v3_fee_tiers),
            multicall=multicall,
            limits=limits,
            event_driven=cfg.market.event_driven_pools,
            spot_check_size=cfg.market.spot_check_pools,
            tick_window_pct=cfg.market.v3_tick_window_pct,
            background_load=True,
        )
        await registry.discover(list(tokens))
        pool_jobs = await _pool_jobs(cfg, registry, tokens, events)
        gas_cfg = cfg.feeds.gas
        gas = GasOracle(
            w3,
            GasPolicy(
                history_blocks=gas_cfg.block_count,
                percentiles=tuple(
                    sorted({*gas_cfg.percentiles, cfg.execution.priority_fee_percentile})
                ),
                priority_percentile=cfg.execution.priority_fee_percentile,
                max_priority_fee_wei=cfg.execution.max_priority_fee_wei,
                max_fee_cap_wei=cfg.execution.max_fee_wei,
                max_age_s=gas_cfg.max_age_s,
            ),
            model=chain_profile(cfg.chain.name).gas,
        )
        whale_wallets = list(cfg.feeds.whales.wallets) + list(cfg.strategies.whale_follow.wallets)
        whales = (
            WhaleWatcher(
                w3,
                whale_wallets,
                pool_tokens={a: (p.token0, p.token1) for a, p in registry.pools.items()},
                max_block_range=min(
                    cfg.feeds.whales.max_blocks_per_query, limits.logs_max_block_range
                ),
                fetch_logs=lambda query, first, last: get_logs(rpc, query, first, last, limits),
            )
            if whale_wallets
            else None
        )
        # block headers the head checks read: each snapshot's time is its block's timestamp
        headers = RecentHeaders(rpc)
        market = MarketView(
            chain_id=cfg.chain.chain_id,
            registry=registry,
            tokens=tokens,
            native_token=addresses.wrapped_native,
            block_timestamp=headers.timestamp,
            gas=gas,
            whales=whales,
            events=events,
        )
        background: list[Callable[[], Coroutine[Any, Any, None]]] = list(pool_jobs)
        # what builds 1inch swaps: only a real client, and only where a wallet signs them
        aggregator: OneInchClient | None = None
        if cfg.feeds.simulated:
            market.feeds = _simulated_feeds(market, tokens, background)
        else:
            feeds = build_feeds(
                cfg.feeds, session, {t.symbol: t for t in tokens.values()}, cfg.chain.chain_id
            )
            stack.push_async_callback(feeds.aclose)
            background.extend(feeds.runners())
            aggregator = feeds.oneinch if chain_mode in ("live", "fork") else None
            market.feeds = FeedBoard(
                cex=list(feeds.cex),
                cex_symbols=feeds.cex_symbols,
                oneinch=feeds.oneinch,
                sentiment=feeds.sentiment,
                sentiment_tokens=feeds.sentiment_tokens,
                coingecko=feeds.coingecko,
                coingecko_tokens=feeds.coingecko_tokens,
            )

        await migrate(engine_db)
        journal = Journal(session_factory(engine_db))

        contracts = DexContracts.from_addresses(
            addresses.role_addresses(),
            str(cfg.execution.arb_executor or "") or None,
            router_kinds={d.name: k for d in addresses.v3_dexes().values() if (k := d.router_kind)},
        )
        settings, fee_policy = settings_from_config(cfg.execution)
        executor: Executor
        account: str | None = None
        reconciler: Reconciler | None = None
        sender: TransactionSender | None = None
        portfolio = Portfolio(tokens)
        # What an L2 charges each opportunity's transaction beyond gas x price (the L1 data
        # fee, OP's operator fee), in every mode: paper fills book it as live fills do.
        l1_fees = chain_fees_for(w3, cfg.chain.name)
        extra_fees: Callable[[Intent, int], Awaitable[ExtraFees]] | None = None
        finality: FinalityWatch | None = None
        if chain_mode == "paper":
            # paper_balances may name a token by a symbol only market.tokens resolved
            by_ref = {k.upper(): t for a, t in tokens.items() for k in (a, t.symbol)}
            paper = {
                t.address: t.to_units(str(amount))
                for ref, amount in cfg.execution.paper_balances.items()
                if (t := by_ref.get(ref.upper()) or addresses.token(ref)) is not None
            }
            await journal.seed_paper_balances(paper)
            executor = PaperExecutor(w3, journal, contracts, settings.slippage_bps, l1_fees=l1_fees)
            if l1_fees is not None:
                extra_fees = executor.extra_fees
            balances: Any = PaperBalances(journal)
        else:
            signer = signer or unlock_signer(cfg)
            account = signer.address
            if lock_wallet:
                # One agent per wallet: nonces would collide. Taken before anything is signed.
                stack.enter_context(wallet_lock(cfg.wallet.keystore, signer.address))
            submit_w3 = w3
            if cfg.chain.submit_rpc_url is not None:
                submit = RpcClient([str(cfg.chain.submit_rpc_url)], session=session)
                submit_w3 = submit.web3()
            sender = TransactionSender(
                w3,
                submit_w3,
                signer,
                NonceManager(w3, signer.address),
                JournaledTxs(journal),
                cfg.chain.chain_id,
                fee_policy,
                fee_oracle=gas,
                # a private RPC: protect mode, or bundle mode's route for everything else
                private_submit=cfg.chain.submission_mode != "public"
                and cfg.chain.submit_rpc_url is not None,
            )
            bundles = (
                bundle_sender(cfg, sender, session, JournaledTxs(journal))
                if cfg.chain.submission_mode == "bundle"
                else None
            )
            confirmations = cfg.execution.confirmations
            reconciler = Reconciler(sender, journal, l1_fees=l1_fees, confirmations=confirmations)
            report = await reconciler.reconcile(wait_s=30.0)
            log.info("start-up reconciliation: %s", report)
            executor = ChainExecutor(
                sender,
                journal,
                contracts,
                settings,
                aggregator=aggregator,
                events=events,
                l1_fees=l1_fees,
                bundles=bundles,
            )
            if l1_fees is not None:
                extra_fees = executor.extra_fees
            # fills pending confirmation, checked at each head (with 1 they are final at once,
            # but fills an earlier run left pending are still seen through)
            finality = FinalityWatch(sender, journal, confirmations, l1_fees=l1_fees)
            market.aggregator_executable = aggregator is not None
            holders = [signer.address] + (
                [contracts.arb_executor] if contracts.arb_executor else []
            )
            balances = BalanceReader(multicall, list(tokens), holders)

        # The equity peak and today's realised PnL as the last run left them (the engine
        # journals them): a restart must not reset the drawdown or the daily loss limit.
        saved_books = await journal.get_strategy_state(PORTFOLIO_STATE_KEY)
        if saved_books is not None and saved_books.get("mode") == chain_mode:
            portfolio.restore(saved_books)
        risk = RiskGate.from_config(
            cfg.risk, slippage_bps=cfg.execution.slippage_bps, on_resume=portfolio.reset_peak
        )
        # From here on the journal's rows belong to this run; the run is closed on the way out
        # (before the database is disposed), whatever ends it.
        run_id = await journal.start_run(
            chain_mode, cfg.chain.name, cfg.chain.chain_id, config_hash(cfg)
        )
        stack.push_async_exit(partial(_finish_run, journal, run_id))
        background.append(partial(_heartbeat, journal, run_id))
        telegram = (
            telegram_api(cfg.alerts.telegram, session) if cfg.alerts.telegram.enabled else None
        )
        alerts = AlertFanout(
            build_channels(cfg.alerts, session, console, telegram),
            on_delivery=lambda record: metrics.record_alert_delivery(
                record.channel, record.outcome
            ),
        )
        stack.push_async_callback(alerts.aclose)
        if sender is not None:
            # Between every caller and the key, with the gate's last look before each signature.
            sender.guard = SigningPolicy(
                w3,
                sender.address,
                contracts,
                oneinch_router=addresses.oneinch_router,
                watched_tokens=list(tokens),
                journal=journal,
                risk=risk,
                events=events,
            )
        background.append(alerts.run)
        AlertSubscriber(alerts, tokens).subscribe(events)
        # Every head is published (the lag metrics read them); stalls are watched where a
        # quiet head means something (not on a devnet that mines on demand).
        stall_after_s = cfg.chain.head_stall_after_s()
        heads = HeadMonitor(events, stall_after_s=stall_after_s)
        if stall_after_s is not None:
            background.append(heads.run)
        block_time_s = nominal_block_time_s(cfg.chain)
        # A fresh head may take a moment to be served (by this node, and by another endpoint).
        head_guard = HeadGuard(
            rpc,
            events,
            block_time_s=block_time_s,
            grace_s=min(max(block_time_s, 0.5), 2.0),
            headers=headers,
        )
        if market.feeds is not None:
            required = cfg.metrics.required_sources
            watch = FeedWatch(events, market.feeds.readings, required=required)
            background.append(watch.run)
        engine = Engine(
            EngineSettings(
                mode=chain_mode,
                slippage_bps=cfg.execution.slippage_bps,
                deadline_s=cfg.execution.deadline_s,
                strategy_timeout_s=cfg.engine.strategy_timeout_s,
                max_in_flight_per_pair=cfg.engine.max_in_flight_per_pair,
                shutdown_grace_s=cfg.engine.shutdown_grace_s,
            ),
            market=market,
            strategies=build_strategies(cfg),
            risk=risk,
            portfolio=portfolio,
            executor=executor,
            journal=journal,
            alerts=alerts,
            balances=balances,
            metrics=metrics,
            background=background,
            reconcile=None if reconciler is None else partial(reconciler.reconcile, wait_s=0.0),
            events=events,
            redact=redactor_for(cfg),
            extra_fees=extra_fees,
            finality=finality,
        )
        parts = AgentParts(
            cfg=cfg,
            mode=chain_mode,
            rpc=rpc,
            w3=w3,
            registry=registry,
            market=market,
            journal=journal,
            portfolio=portfolio,
            risk=risk,
            alerts=alerts,
            metrics=metrics,
            engine=engine,
            tokens=tokens,
            account=account,
            arb_executor=contracts.arb_executor,
            background=background,
            events=events,
            health=health,
            heads=heads,
            run_id=run_id,
            head_guard=head_guard,
        )
        if telegram is not None and control_factory is not None:
            listener = build_command_listener(
                cfg.alerts.telegram, telegram, control_factory(parts), journal
            )
            if listener is not None:
                # The engine copied its background list when it was built: hand it over there.
                engine.background.append(listener.run)
                background.append(listener.run)
        if console_server is not None:
            from agent.app.control import AgentControl  # control.py imports this module

            stop = getattr(control_factory(parts), "stop", None) if control_factory else None
            signal_queue = next(
                (s for s in engine.strategies if isinstance(s, SignalStrategy)), None
            )
            console_server.attach(
                parts,
                AgentControl(parts, stop, who="api"),
                signals=None if signal_queue is None else signal_queue.enqueue,
            )
            parts.console = console_server
            engine.background.append(console_server.run)
            background.append(console_server.run)
        built.append(parts)
        yield parts


def config_hash(cfg: AgentConfig) -> str:
    """sha256 of the redacted effective configuration: two runs with the same settings share it
    (secrets do not enter it, so rotating a key does not change it)."""
    return hashlib.sha256(cfg.redacted_dump("json").encode()).hexdigest()


async def _heartbeat(journal: Journal, run_id: int) -> None:
    """Between blocks too (a quiet chain is not a dead agent): the run is alive."""
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        try:
            await journal.heartbeat(run_id)
        except (AgentError, SQLAlchemyError) as exc:  # a busy journal never stops the agent
            log.warning("run heartbeat not journaled: %s", type(exc).__name__)


async def _finish_run(
    journal: Journal,
    run_id: int,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    _traceback: TracebackType | None,
) -> bool:
    """Exit callback: journal why the run ended (never the exception's message: it may carry
    a URL); the exception, if any, goes on."""
    if exc is None:
        reason = "stopped"
    elif isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        reason = "interrupted"
    else:
        reason = f"failed: {type(exc).__name__}"
    try:
        await journal.finish_run(run_id, reason)
    except (AgentError, SQLAlchemyError) as error:
        log.warning("run %d end not journaled: %s", run_id, type(error).__name__)
    return False


async def _pool_jobs(
    cfg: AgentConfig, registry: PoolRegistry, tokens: dict[str, Token], events: EventBus
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """Filter the discovered pools by liquidity, start the first load, and return the
    background jobs that carry both on: the loader (pools usable as they come in) and the
    periodic liquidity recheck."""
    market = cfg.market
    jobs: list[Callable[[], Coroutine[Any, Any, None]]] = []
    if market.min_liquidity_usd > 0:
        liquidity = LiquidityFilter(
            registry, tokens, market.min_liquidity_usd, market.liquidity_recheck_interval_s, events
        )
        try:
            await liquidity.check()
        except AgentError as exc:  # every pool stays; the next check judges them
            log.warning("liquidity filter failed at start-up (%s): watching every pool", exc)
        jobs.append(liquidity.run)

    def progress(loaded: int, total: int) -> None:
        events.publish(PoolsLoading(loaded=loaded, total=total))

    load = partial(
        registry.load_pending,
        concurrency=market.first_load_concurrency,
        batch_pools=market.first_load_batch_pools,
        retry_max_s=market.first_load_retry_max_s,
        progress=progress,
        progress_interval_s=market.first_load_progress_interval_s,
    )
    # One round now: a small market (the devnet) is loaded before the first block, and feeds
    # priced from the pools start with prices; a large one goes on in the background.
    await load(forever=False, rounds=1)

    async def pool_first_load() -> None:
        await load()

    jobs.append(pool_first_load)
    return jobs


def _health(health: HealthState, built: list[AgentParts]) -> HealthReport:
    if not built:  # still starting: nothing ticked yet
        return health.report()
    parts = built[0]
    return health.report(
        halted=parts.risk.halt is not None,
        paused=parts.risk.paused,
        stale_pools=len(parts.registry.stale_pools),
        loading_pools=len(parts.registry.loading_pools),
    )


def _simulated_feeds(
    market: MarketView,
    tokens: dict[str, Token],
    background: list[Callable[[], Coroutine[Any, Any, None]]],
) -> FeedBoard:
    """Credential-free CEX, 1inch and sentiment sources driven by the chain's own pools."""
    board = FeedBoard()
    by_symbol = {t.symbol: t.address for t in tokens.values()}
    symbols = [s for s in ("ETH/USDT", "BTC/USDT") if s.split("/")[0] in ("ETH", "BTC")]
    cex = SimCexClient("sim", symbols, market.price_usd)
    board.cex = [cex]
    board.cex_symbols = {
        s: by_symbol[t] for s, t in (("ETH/USDT", "WETH"), ("BTC/USDT", "WBTC")) if t in by_symbol
    }

    pairs = []
    if "WETH" in by_symbol and "USDC" in by_symbol:
        usdc = tokens[by_symbol["USDC"]]
        pairs.append(QuotePair(by_symbol["USDC"], by_symbol["WETH"], 1_000 * 10**usdc.decimals))
    oneinch = SimOneInchClient(best_pool_quote(lambda: market.registry.pools.values()), pairs=pairs)
    board.oneinch = oneinch
    sentiment = SimSentimentFeed(list(by_symbol), market.price_usd)
    board.sentiment = sentiment
    board.sentiment_tokens = dict(by_symbol)
    for name, poll, interval in (
        ("sim-cex", cex.poll, 1.0),
        ("sim-1inch", oneinch.poll, 2.0),
        ("sim-sentiment", sentiment.poll, 5.0),
    ):
        background.append(Poller(name, poll, interval).run)
    return board
