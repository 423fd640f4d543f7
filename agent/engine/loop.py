"""The tick loop: new block -> pools refreshed -> snapshot -> strategies -> risk -> execution.

``Engine`` receives every part it uses (``agent.app.build`` builds them from config); it owns
its tasks and runs them in one ``asyncio.TaskGroup``:

- the block loop (websocket newHeads or polling, whichever iterator it is given);
- one task per trade in flight, at most ``max_in_flight_per_pair`` per token pair;
- whatever background tasks it is handed (feed pollers, the alert worker, the Telegram
  command poller, the metrics server), cancelled and awaited on the way out.

Nothing a trade or a background source raises reaches the TaskGroup (which would cancel the
run): a trade task that raises, whatever the class, is logged (with a redacted traceback when
the class is unexpected), its intent journaled ``failed`` with the reason (the journal write
retried while the database is temporarily unavailable), counted, published as ``TradeFailed``
(alerted), and the next block trades; a background source that raises is restarted with
exponential backoff, logged at every failure and published as ``SourceFailed`` (alerted) once
per outage (``agent.errors`` states the whole contract).

Strategies run in isolation: each in a worker thread with a timeout; an exception or a timeout
in one is logged, counted, alerted and never stops the others or the loop. On stop (SIGTERM or
SIGINT through ``stop``), the loop takes no new block, waits up to ``shutdown_grace_s`` for
trades in flight (their intents and signed transactions are journaled before broadcast, so
anything cut off is finished by start-up reconciliation), then closes everything and returns.

At each tick the fills still pending ``execution.confirmations`` are checked against the chain
beside the snapshot's reads (``FinalityCheck``), and what a reorg did to them (moved to another
block, or voided) is applied to the books before any decision: today's PnL, the metrics, the
run report and ``TradeReorged`` for the alerts and the daily summary.

Strategy state is journaled before any trade starts, with the intents each strategy still awaits
(an outcome not yet handed to it); the next start hands it the outcome reconciliation settled
for each of them before its first decision, so a crash after a broadcast neither loses a fill
nor lets the strategy propose the same trade again.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import traceback
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from agent import events as ev
from agent.alerts.base import AlertEvent
from agent.chain.l1fee import ExtraFees
from agent.errors import AgentError, JournalNotFound, TemporaryError
from agent.execution import ExecutionOutcome, min_amount_out, min_profit
from agent.execution.finality import (
    FINAL,
    MOVED,
    REQUEUED,
    REVERTED,
    VOIDED,
    FinalityChange,
)
from agent.market.portfolio import PORTFOLIO_STATE_KEY, Portfolio
from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.metrics.server import AgentMetrics
from agent.risk.gate import Rejected, RiskGate, journal_rejection
from agent.store.journal import Journal
from agent.store.models import FINAL_INTENT_STATUSES, IntentStatus
from agent.types import FILL_FINAL, FILL_REORGED, Fill, Intent, NotFilled, Opportunity, OrderUpdate
from strategies.base import HearsReorgs, Strategy, TakesOrders

log = logging.getLogger(__name__)

BackgroundJob = Callable[[], Coroutine[Any, Any, None]]
# Journaling a failed trade while the database is locked: attempts, and the first wait (doubled
# each time). SQLite already waits out a lock for its busy_timeout inside each attempt.
FAILURE_JOURNAL_ATTEMPTS = 4
FAILURE_JOURNAL_WAIT_S = 0.5
# Beside a strategy's own saved state: the intents it started and has not been told the outcome
# of (the engine's bookkeeping, never shown to the strategy).
AWAITING_KEY = "_engine_awaiting_intents"


class Executor(Protocol):
    """Carries an intent through simulate -> sign -> send -> track -> settle (or paper fill)."""

    async def execute(self, intent: Intent) -> ExecutionOutcome: ...


class FinalityCheck(Protocol):
    """Checks the fills pending confirmation at a new head and journals what changed
    (``agent.execution.finality.FinalityWatch``)."""

    async def check(self, head: int) -> Sequence[FinalityChange]: ...


class SnapshotSource(Protocol):
    """Refreshes market state for a block and returns the immutable snapshot."""

    async def snapshot(self, block: int) -> MarketSnapshot: ...


class BalanceSource(Protocol):
    async def balances(self, block: int) -> dict[str, int]: ...


class AlertSink(Protocol):
    def post(self, event: AlertEvent) -> bool: ...


@dataclass(frozen=True)
class EngineSettings:
    mode: str
    slippage_bps: int = 50
    deadline_s: int = 120
    strategy_timeout_s: float = 2.0
    max_in_flight_per_pair: int = 1
    shutdown_grace_s: float = 10.0
    # A background source that raises is restarted after this delay, doubled per failure up to
    # the maximum; one that ran that long before failing starts a new outage (a new alert).
    restart_initial_s: float = 1.0
    restart_max_s: float = 60.0


@dataclass
class TickReport:
    """What one block produced; ``decide_s`` excludes the RPC round trips (``rpc_s``)."""

    block: int
    heads_skipped: int = 0  # heads since the previous tick that were never acted on
    opportunities: int = 0
    approved: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    started: int = 0
    strategy_errors: int = 0
    failed_strategies: list[str] = field(default_factory=list)
    rpc_s: float = 0.0
    decide_s: float = 0.0


@dataclass
class RunReport:
    ticks: list[TickReport] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (intent id, reason)
    equity_usd: list[tuple[int, float]] = field(default_factory=list)
    heads_skipped: int = 0  # heads the engine never acted on: a newer one was there first

    def tick_latency_ms(self) -> dict[str, float]:
        values = sorted(t.decide_s * 1000 for t in self.ticks)
        if not values:
            return {"median": 0.0, "p95": 0.0}
        return {
            "median": statistics.median(values),
            "p95": values[min(len(values) - 1, int(len(values) * 0.95))],
        }


def job_name(job: BackgroundJob) -> str:
    """A background job's name for logs and alerts: its owner's ``source`` or ``name``
    (``cex:binance``, ``sim-1inch``) and the method (``watch``, ``run``)."""
    owner = getattr(job, "__self__", None)
    method = getattr(job, "__name__", "job")
    label = getattr(owner, "source", None) or getattr(owner, "name", None)
    if isinstance(label, str) and label:
        return f"{label} {method}"
    return getattr(job, "__qualname__", method)


def _pairs_of(intent: Intent) -> frozenset[frozenset[str]]:
    """The token pairs a trade touches (one per hop): two trades sharing one never overlap."""
    hops = {frozenset((hop.token_in, hop.token_out)) for hop in intent.route}
    return frozenset(hops or {frozenset((intent.token_in, intent.token_out))})


def intent_from(opportunity: Opportunity, *, slippage_bps: int, deadline: int) -> Intent:
    """The executable form of an approved opportunity.

    A directional swap's ``min_amount_out`` is the exact prediction less ``slippage_bps``
    (floored). An arbitrage must return its input plus the profit floor the ArbExecutor
    enforces (the predicted profit less the slippage allowance), or it reverts.
    """
    if opportunity.kind == "arb":
        min_out = opportunity.amount_in + min_profit(opportunity.predicted_profit, slippage_bps)
    else:
        min_out = min_amount_out(opportunity.predicted_amount_out, slippage_bps)
    return Intent(
        id=f"{opportunity.id}-{uuid.uuid4().hex[:6]}",
        strategy=opportunity.strategy,
        kind=opportunity.kind,
        route=opportunity.route,
        token_in=opportunity.token_in,
        token_out=opportunity.token_out,
        amount_in=opportunity.amount_in,
        min_amount_out=min_out,
        predicted_amount_out=opportunity.predicted_amount_out,
        predicted_profit=opportunity.predicted_profit,
        predicted_profit_usd=opportunity.gross_profit_usd,
        deadline=deadline,
        opportunity_id=opportunity.id,
        predicted_gas_cost_wei=opportunity.gas_cost_wei,
        predicted_l1_fee_wei=opportunity.l1_fee_wei,
    )


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        *,
        market: SnapshotSource,
        strategies: Sequence[Strategy],
        risk: RiskGate,
        portfolio: Portfolio,
        executor: Executor,
        journal: Journal,
        alerts: AlertSink,
        balances: BalanceSource | None = None,
        metrics: AgentMetrics | None = None,
        background: Sequence[BackgroundJob] = (),
        on_tick: Callable[[TickReport], None] | None = None,
        reconcile: Callable[[], Coroutine[Any, Any, object]] | None = None,
        reconcile_every_blocks: int = 50,
        clock: Callable[[], float] = time.time,
        events: ev.EventBus | None = None,
        redact: Callable[[str], str] = str,
        extra_fees: Callable[[Intent, int], Awaitable[ExtraFees]] | None = None,
        finality: FinalityCheck | None = None,
    ) -> None:
        self.settings = settings
        self.market = market
        self.strategies = list(strategies)
        self.risk = risk
        self.portfolio = portfolio
        self.executor = executor
        self.journal = journal
        self.alerts = alerts
        self.balances = balances
        self.metrics = metrics
        self.background = list(background)
        self.on_tick = on_tick
        self.reconcile = reconcile
        self.reconcile_every_blocks = reconcile_every_blocks
        self.clock = clock
        # what happened (ticks, refusals, trades, halts): alerts, metrics, /health and the log
        # subscribe on this bus
        self.events = events if events is not None else ev.EventBus()
        # Removes the configuration's secrets from tracebacks and reasons before they are
        # logged, journaled or published (an exception text may quote a URL with its key).
        self.redact = redact
        # Prices what an L2 charges the transaction an intent would send beyond gas x price
        # (the L1 data fee; OP's operator fee), for the intent and its gas units.
        self.extra_fees = extra_fees
        # Fills pending confirmation, checked at each new head beside the snapshot's reads.
        self.finality = finality
        self._voided: set[str] = set()  # intents whose fill a reorg voided
        self.report = RunReport()
        self.last_snapshot: MarketSnapshot | None = None
        # the latest few snapshots: a fill is priced at its own block's prices when it settles
        # after the engine has moved on (a receipt takes a block or two; pools left unchanged
        # are shared between snapshots, so keeping a few costs little)
        self._recent_snapshots: deque[MarketSnapshot] = deque(maxlen=4)
        self._in_flight: dict[frozenset[str], int] = {}
        self._trade_tasks: set[asyncio.Task[None]] = set()
        self._evaluating: dict[str, asyncio.Future[list[Opportunity]]] = {}
        self._fills_for: dict[str, list[Fill | NotFilled]] = {}
        # fills a reorg voided or moved after the strategy got them: (before, after or None)
        self._changes_for: dict[str, list[tuple[Fill, Fill | None]]] = {}
        # conditional-order updates taken from a strategy and not yet journaled (a locked
        # journal): written, in order, with the next ones
        self._order_updates: dict[str, list[OrderUpdate]] = {}
        self._saved_portfolio: dict[str, Any] | None = None
        self._awaiting: dict[str, set[str]] = {}  # strategy -> intent ids started, not told

    @property
    def trades_in_flight(self) -> int:
        """Trades started and not yet settled (or given up at shutdown)."""
        return len(self._trade_tasks)

    # -- the loop ------------------------------------------------------------------------------
    async def run(
        self,
        blocks: AsyncIterator[int],
        *,
        stop: asyncio.Event | None = None,
        max_blocks: int | None = None,
    ) -> RunReport:
        """Process blocks until ``stop`` is set, ``max_blocks`` are done or ``blocks`` ends."""
        stop = stop or asyncio.Event()
        await self._start_strategies()
        async with asyncio.TaskGroup() as group:
            background = [
                group.create_task(self._supervised(job), name=f"background {job_name(job)}")
                for job in self.background
            ]
            try:
                await self._block_loop(group, blocks, stop, max_blocks)
            finally:
                await self._drain_trades()
                await self._settle_strategies()
                await self._closing_equity()
                for task in background:
                    task.cancel()
        return self.report

    async def _closing_equity(self) -> None:
        """One last equity snapshot after the trades in flight settled: the run's last fill
        is in its final equity (a tick's snapshot is taken before that tick's trades)."""
        snapshot = self.last_snapshot
        if snapshot is None or not self.report.fills:
            return
        block = max([snapshot.block] + [f.block_number or 0 for f in self.report.fills])
        try:
            if self.balances is not None:
                self.portfolio.refresh(await self.balances.balances(block))
            view = self.portfolio.view()
            await self.journal.snapshot_equity(
                self.settings.mode,
                view.equity_usd,
                dict(view.balances),
                block_number=block,
                unit_prices_usd=self.portfolio.unit_prices_usd(),
            )
        except AgentError as exc:  # the run is over either way: say so, never raise here
            log.warning("closing equity snapshot not written: %s", exc)
        else:
            self.report.equity_usd.append((block, view.equity_usd))

    async def _block_loop(
        self,
        group: asyncio.TaskGroup,
        blocks: AsyncIterator[int],
        stop: asyncio.Event,
        max_blocks: int | None,
    ) -> None:
        seen = 0
        taken: int | None = None  # the latest block a tick started on
        iterator = aiter(blocks)
        next_block: asyncio.Future[int] | None = None
        try:
            while not stop.is_set() and (max_blocks is None or seen < max_blocks):
                next_block = asyncio.ensure_future(anext(iterator))
                stopping = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {next_block, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                stopping.cancel()
                if next_block not in done:
                    break
                try:
                    block = next_block.result()
                except StopAsyncIteration:
                    break
                last = self.last_snapshot.block if self.last_snapshot is not None else None
                if last is not None and block <= last:
                    # A replayed head (websocket reconnect): its state is already acted on,
                    # and re-trading it would only send doomed trades that start revert
                    # cooldowns.
                    log.info("block %d already processed (latest %d): skipped", block, last)
                    continue
                # Heads that came while the last tick ran and were never worked on: the
                # source hands over the newest (agent.chain.blocks.newest), not a backlog.
                skipped = 0 if taken is None else max(0, block - taken - 1)
                taken = block
                seen += 1
                try:
                    await self.tick(block, group, heads_skipped=skipped)
                except Exception as exc:  # a bad block, or a bug in a tick, never kills the agent
                    self._log_failure(f"tick at block {block}", exc)
        finally:
            if next_block is not None and not next_block.done():
                next_block.cancel()
                await asyncio.wait({next_block})  # the source sees it before it is closed
            closing = getattr(iterator, "aclose", None)
            if closing is not None:  # the source's own tasks and connections end with the run
                await closing()

    async def _drain_trades(self) -> None:
        if not self._trade_tasks:
            return
        log.info(
            "waiting up to %.0fs for %d trade(s) in flight",
            self.settings.shutdown_grace_s,
            len(self._trade_tasks),
        )
        _, pending = await asyncio.wait(self._trade_tasks, timeout=self.settings.shutdown_grace_s)
        for task in pending:
            task.cancel()  # journaled before broadcast: reconciliation finishes them at start-up
        if pending:
            await asyncio.wait(pending)

    # -- one block -----------------------------------------------------------------------------
    async def tick(
        self, block: int, group: asyncio.TaskGroup, *, heads_skipped: int = 0
    ) -> TickReport:
        """Act on ``block``; ``heads_skipped``: heads since the previous tick never acted on."""
        report = TickReport(block, heads_skipped=heads_skipped)
        checking = None
        if self.finality is not None:
            checking = asyncio.create_task(self._check_finality(block), name=f"finality {block}")
        started = time.perf_counter()
        try:
            snapshot = await self.market.snapshot(block)
            snapshot_s = time.perf_counter() - started
        finally:
            # Settled before any decision: a fill voided by a reorg frees its nonce (resynced)
            # before a new trade takes one, and leaves today's PnL before the risk gate reads it.
            if checking is not None:
                await checking
        # A source that times its node round trips (MarketView.rpc_s) lets the local part of
        # building the snapshot (USD prices, feed readings) count as deciding, not as RPC.
        snapshot_rpc_s = min(snapshot_s, float(getattr(self.market, "rpc_s", snapshot_s)))
        balances_started = time.perf_counter()
        if self.balances is not None:
            self.portfolio.refresh(await self.balances.balances(block))
        report.rpc_s = snapshot_rpc_s + time.perf_counter() - balances_started
        decide_started = time.perf_counter() - (snapshot_s - snapshot_rpc_s)
        self.last_snapshot = snapshot
        self._recent_snapshots.append(snapshot)
        self.risk.refresh_controls()
        view = self.portfolio.mark(snapshot)
        self._watch_drawdown(view)
        await self._load_orders()
        opportunities = [
            await self._with_costs(o, snapshot)
            for o in await self._evaluate(snapshot, view, report)
        ]
        report.opportunities = len(opportunities)
        ranked = sorted(opportunities, key=lambda o: o.net_profit_usd, reverse=True)
        decisions = [(o, self._decide(o, snapshot, view, report)) for o in ranked]
        report.decide_s = time.perf_counter() - decide_started
        # Journal after deciding (the decision latency excludes the DB), but each approved
        # opportunity before its trade starts, so the intent row can reference it.
        unstarted = {d[0].id: d[1] for _, d in decisions if isinstance(d, tuple)}
        try:
            if unstarted:
                # Saved before any trade starts, with the intents it awaits: a crash after a
                # broadcast then restarts the strategy waiting for that trade (never from
                # before it proposed it, which would propose it again), and the next start
                # tells it the trade's outcome however it settled.
                for _, decision in decisions:
                    if isinstance(decision, tuple):
                        intent = decision[0]
                        self._awaiting.setdefault(intent.strategy, set()).add(intent.id)
                await self._persist_strategy_state()
            for opportunity, decision in decisions:
                await self._journal_opportunity(opportunity)
                if isinstance(decision, Rejected):
                    await journal_rejection(self.journal, opportunity, decision)
                    await self._did_not_happen(opportunity.id, opportunity, str(decision.reason))
                elif decision is None:  # its pair is busy: the strategy proposes it again
                    await self._did_not_happen(opportunity.id, opportunity, "pair busy")
                else:
                    intent, pairs = decision
                    task = group.create_task(
                        self._execute(intent, pairs), name=f"trade {intent.id}"
                    )
                    del unstarted[intent.id]
                    self._trade_tasks.add(task)
                    task.add_done_callback(self._trade_tasks.discard)
        finally:
            # The journal failed part-way (a locked database): trades not started give their
            # pairs back, or those pairs would stay reserved for good.
            for pairs in unstarted.values():
                for pair in pairs:
                    self._in_flight[pair] -= 1
        self.report.ticks.append(report)
        self.report.heads_skipped += heads_skipped
        self.report.equity_usd.append((block, view.equity_usd))
        if self.metrics is not None:
            self.metrics.record_tick(report.decide_s)
            self.metrics.set_portfolio(view.equity_usd, view.drawdown_pct / 100)
            self.metrics.set_halted(self.risk.halt is not None or self.risk.paused)
        self.events.publish(
            ev.Tick(
                block=block,
                opportunities=report.opportunities,
                approved=report.approved,
                started=report.started,
                refusals=tuple(sorted(report.rejected.items())),
                failed_strategies=tuple(report.failed_strategies),
                decide_s=report.decide_s,
                equity_usd=view.equity_usd,
                drawdown_ratio=view.drawdown_pct / 100,
                block_timestamp=snapshot.timestamp,
                heads_skipped=heads_skipped,
            )
        )
        await self._persist_strategy_state()
        await self._save_portfolio()
        await self.journal.snapshot_equity(
            self.settings.mode,
            view.equity_usd,
            dict(view.balances),
            block_number=block,
            unit_prices_usd=self.portfolio.unit_prices_usd(),
        )
        if self.journal.run_id is not None:  # `status`: the agent is alive at this block
            await self.journal.heartbeat(self.journal.run_id, block)
        if self.on_tick is not None:
            self.on_tick(report)
        if (
            self.reconcile is not None
            and block % self.reconcile_every_blocks == 0
            and not self._trade_tasks
        ):
            # Settle journal rows whose receipt came too late for their trade task (never
            # while a trade of ours is in flight: reconciliation would take it for a crash).
            await self.reconcile()
            await self._settle_awaited()
        return report

    # -- finality of fills ---------------------------------------------------------------------
    async def _check_finality(self, block: int) -> None:
        """The fills pending confirmation at head ``block``: what changed is journaled (by the
        check) and applied to the books. Never raises: the next head checks again."""
        assert self.finality is not None
        try:
            changes = await self.finality.check(block)
            for change in changes:
                await self._apply_finality(change)
        except Exception as exc:
            self._log_failure(f"finality check at block {block}", exc)

    async def _apply_finality(self, change: FinalityChange) -> None:
        """Bring the books in line with what a reorg (or enough confirmations) did to a fill:
        today's PnL, the metrics, the run report, the daily ledger and the alerts (through
        ``TradeReorged``). Balances, and so exposure, follow the chain at the next tick."""
        before = change.before
        known = next((f for f in self.report.fills if f.intent_id == change.intent_id), before)
        usd_before = known.profit_usd if known.profit_usd is not None else 0.0
        if change.outcome == FINAL:
            self.portfolio.confirm_fill(change.intent_id)
            self._replace_report_fill(change.intent_id, replace(known, finality=FILL_FINAL))
            return
        after: Fill | None = None
        if change.outcome == MOVED and change.after is not None:
            self.portfolio.unbook_fill(change.intent_id)
            after = self._priced(change.after, None)
            self.portfolio.book_fill(after)
            if after.profit_usd is not None:
                await self.journal.set_fill_usd(change.intent_id, after.profit_usd)
            self._replace_report_fill(change.intent_id, after)
        elif change.outcome in VOIDED:
            self._voided.add(change.intent_id)
            self.portfolio.unbook_fill(change.intent_id)
            self._replace_report_fill(change.intent_id, None)
            if change.outcome == REVERTED:  # as any trade that reverted: its pairs cool down
                self.risk.record_revert(change.intent, self.clock())
        usd_after = 0.0 if after is None else after.profit_usd or 0.0
        if change.outcome != REQUEUED:
            await self._save_portfolio()
            if self.metrics is not None:
                self.metrics.add_realised_pnl(usd_after - usd_before)
        self.events.publish(
            ev.TradeReorged(
                trade_id=change.intent_id,
                strategy=change.strategy,
                tx_hash=before.tx_hash,
                outcome=change.outcome,
                old_block=before.block_number,
                new_block=None if after is None else after.block_number,
                realised_profit_usd_before=usd_before,
                realised_profit_usd_after=usd_before if change.outcome == REQUEUED else usd_after,
                detail=change.detail,
            )
        )
        if after is not None or change.outcome in VOIDED:
            # the strategy that got the fill in on_fill undoes or corrects what it recorded
            # (delivered now when idle, else before its next evaluation)
            self._changes_for.setdefault(change.strategy, []).append((before, after))
            for strategy in self.strategies:
                if strategy.name == change.strategy:
                    try:
                        await self._save_state(strategy)
                    except AgentError as exc:  # told all the same; the state is saved next tick
                        log.warning("cannot journal %s's state (retried): %s", strategy.name, exc)

    def _replace_report_fill(self, intent_id: str, fill: Fill | None) -> None:
        """The run report's fill of ``intent_id`` replaced by ``fill`` (removed when None)."""
        fills = self.report.fills
        for i, known in enumerate(fills):
            if known.intent_id == intent_id:
                if fill is None:
                    del fills[i]
                else:
                    fills[i] = fill
                return

    def _watch_drawdown(self, view: PortfolioView) -> None:
        halt = self.risk.observe(view)  # the alert comes back once per halt
        if halt is not None:
            self.events.publish(ev.Halt(reason=halt.reason, detail=halt.detail))

    async def _evaluate(
        self, snapshot: MarketSnapshot, view: PortfolioView, report: TickReport
    ) -> list[Opportunity]:
        loop = asyncio.get_running_loop()

        async def one(strategy: Strategy) -> list[Opportunity]:
            running = self._evaluating.get(strategy.name)
            if running is not None and not running.done():
                # A timed-out evaluation is still running in its thread: never run a strategy
                # twice at once (strategies hold no locks; the engine serialises every call).
                log.warning("strategy %s still busy with an earlier block", strategy.name)
                return []
            self._deliver_fills(strategy)
            future = loop.run_in_executor(None, strategy.evaluate, snapshot, view)
            self._evaluating[strategy.name] = future
            try:
                return await asyncio.wait_for(
                    asyncio.shield(future), self.settings.strategy_timeout_s
                )
            except Exception as exc:  # isolation: one strategy never stops the others
                report.strategy_errors += 1
                report.failed_strategies.append(strategy.name)
                error_class = "Timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                log.error(
                    "strategy %s failed at block %d: %s",
                    strategy.name,
                    snapshot.block,
                    error_class,
                    exc_info=not isinstance(exc, TimeoutError),
                )
                if self.metrics is not None:
                    self.metrics.record_strategy_error(strategy.name, error_class)
                self.events.publish(
                    ev.StrategyFailed(
                        strategy=strategy.name, error_class=error_class, block=snapshot.block
                    )
                )
                return []

        results = await asyncio.gather(*(one(s) for s in self.strategies))
        found: list[Opportunity] = []
        for strategy, opportunities in zip(self.strategies, results, strict=True):
            if self.metrics is not None:
                self.metrics.record_opportunities(strategy.name, len(opportunities))
            found.extend(opportunities)
        return found

    async def _with_costs(self, opportunity: Opportunity, snapshot: MarketSnapshot) -> Opportunity:
        """``opportunity`` with its predicted costs in wei and, on an L2, what the chain charges
        its real transaction beyond gas x price added to ``gas_cost_usd`` (the risk gate's gas
        rules then judge the total): the L1 data fee, and OP's operator fee (with L2 gas). A
        fee that cannot be priced makes the cost prohibitive: the gate refuses it rather than
        trade blind."""
        l2_wei = opportunity.gas_estimate * snapshot.gas.max_fee_wei if snapshot.gas else 0
        opportunity = replace(opportunity, gas_cost_wei=l2_wei)
        if self.extra_fees is None:
            return opportunity
        intent = intent_from(
            opportunity,
            slippage_bps=self.settings.slippage_bps,
            deadline=snapshot.deadline(self.settings.deadline_s),
        )
        wei_usd = snapshot.native_price_usd / 1e18
        try:
            fees = await self.extra_fees(intent, opportunity.gas_estimate)
        except Exception as exc:  # the node or the build failed: the cost is unknown
            self._log_failure(f"L1 fee of {opportunity.id}", exc)
            # Unknown cost: as if gas took ten times the edge, so ``gas_to_profit`` refuses an
            # arbitrage; kept finite (it is journaled as JSON).
            fees = ExtraFees()
            l1_usd = 10 * max(opportunity.gross_profit_usd, 0.0) + 1.0
        else:
            l1_usd = fees.l1_fee_wei * wei_usd
        operator_usd = fees.operator_fee_wei * wei_usd
        return replace(
            opportunity,
            gas_cost_wei=l2_wei + fees.operator_fee_wei,
            l1_fee_wei=fees.l1_fee_wei,
            l1_fee_usd=l1_usd,
            gas_cost_usd=opportunity.gas_cost_usd + operator_usd + l1_usd,
            net_profit_usd=opportunity.net_profit_usd - operator_usd - l1_usd,
        )

    def _decide(
        self,
        opportunity: Opportunity,
        snapshot: MarketSnapshot,
        view: PortfolioView,
        report: TickReport,
    ) -> Rejected | tuple[Intent, frozenset[frozenset[str]]] | None:
        """Risk check and, when approved and its pairs are free, the intent to start (no I/O)."""
        decision = self.risk.check(
            opportunity, snapshot, view, self.clock(), slippage_bps=self.settings.slippage_bps
        )
        if isinstance(decision, Rejected):
            reason = str(decision.reason)
            report.rejected[reason] = report.rejected.get(reason, 0) + 1
            if self.metrics is not None:
                self.metrics.record_risk_rejection(reason)
            self.events.publish(
                ev.Refusal(
                    reason=reason,
                    strategy=opportunity.strategy,
                    opportunity_id=opportunity.id,
                    block=snapshot.block,
                    detail=decision.detail,
                )
            )
            return decision
        report.approved += 1
        intent = intent_from(
            opportunity,
            slippage_bps=self.settings.slippage_bps,
            deadline=snapshot.deadline(self.settings.deadline_s),
        )
        pairs = _pairs_of(intent)
        limit = self.settings.max_in_flight_per_pair
        if any(self._in_flight.get(pair, 0) >= limit for pair in pairs):
            return None  # a trade on one of these pairs is in flight: the next block re-evaluates
        for pair in pairs:
            self._in_flight[pair] = self._in_flight.get(pair, 0) + 1
        report.started += 1
        return intent, pairs

    async def _journal_opportunity(self, opportunity: Opportunity) -> None:
        await self.journal.record_opportunity(
            opportunity.id,
            opportunity.strategy,
            opportunity.kind,
            token_in=opportunity.token_in,
            amount_in=opportunity.amount_in,
            predicted_profit=opportunity.predicted_profit,
            predicted_profit_usd=opportunity.net_profit_usd,
            block_number=opportunity.block,
            details={"route": opportunity.note, "gas_cost_usd": opportunity.gas_cost_usd},
        )

    # -- one trade, isolated -------------------------------------------------------------------
    async def _execute(self, intent: Intent, pairs: frozenset[frozenset[str]]) -> None:
        """Run one trade task: nothing it raises reaches the TaskGroup (only cancellation)."""
        try:
            await self._trade(intent, pairs)
        except Exception as exc:  # the outcome is settled; only its bookkeeping failed
            self._log_failure(f"trade {intent.id} bookkeeping", exc)

    async def _trade(self, intent: Intent, pairs: frozenset[frozenset[str]]) -> None:
        route = " -> ".join(hop.dex for hop in intent.route)
        crash: Exception | None = None
        try:
            outcome = await self.executor.execute(intent)
        except Exception as exc:  # whatever the class: this trade fails, the agent trades on
            crash = exc
        finally:
            for pair in pairs:
                self._in_flight[pair] -= 1
        if crash is not None:
            outcome = await self._trade_crashed(intent, crash)
        if self.metrics is not None:
            self.metrics.record_trade(str(outcome.status))
        fill = outcome.fill
        if intent.id in self._voided:  # a reorg voided the fill before it was booked here
            log.warning("trade %s: its fill was voided by a reorg before booking", intent.id)
            return
        if outcome.status == IntentStatus.FILLED and fill is not None:
            fill = self._priced(fill, intent)
            self.report.fills.append(fill)
            if self.settings.mode == "paper":
                self.portfolio.apply_fill(fill)
            else:
                self.portfolio.book_fill(fill)
            # Now, not at the next tick: a crash before it must not forget today's loss.
            await self._save_portfolio()
            self.risk.record_trade(intent, self.clock())
            if self.metrics is not None and fill.profit_usd is not None:
                self.metrics.add_realised_pnl(fill.profit_usd)
            self._fills_for.setdefault(intent.strategy, []).append(fill)
            for strategy in self.strategies:
                if strategy.name == intent.strategy and self._idle(strategy):
                    self._deliver_fills(strategy)
                    # saved now, not at the next tick: a stop before it must not leave the
                    # strategy waiting on an order that already filled (a grid lot held twice)
                    await self._save_state(strategy)
            self.events.publish(
                ev.TradeMined(
                    trade_id=intent.id,
                    strategy=intent.strategy,
                    route=route,
                    tx_hash=fill.tx_hash,
                    block_number=fill.block_number,
                    predicted_profit_usd=intent.predicted_profit_usd,
                    realised_profit_usd=fill.profit_usd or 0.0,
                    gas_cost_usd=self._gas_usd(fill),
                )
            )
            if fill.profit_usd is not None:  # `report` shows the figure the alert showed
                await self.journal.set_fill_usd(
                    intent.id, fill.profit_usd, fill.predicted_profit_usd
                )
            return
        reason = outcome.detail or str(outcome.status)
        self.report.failures.append((intent.id, reason))
        if outcome.refused_token is not None:
            await self._token_refused(intent, outcome.refused_token, reason)
            return
        if outcome.status in (IntentStatus.REVERTED, IntentStatus.FAILED):
            self.risk.record_revert(intent, self.clock())
            ended = ev.TradeReverted if outcome.status == IntentStatus.REVERTED else ev.TradeFailed
            self.events.publish(
                ended(trade_id=intent.id, strategy=intent.strategy, route=route, reason=reason)
            )
            await self._did_not_happen(intent.id, intent, reason)
        log.warning("trade %s ended %s: %s", intent.id, outcome.status, reason)

    async def _trade_crashed(self, intent: Intent, exc: Exception) -> ExecutionOutcome:
        """The outcome of a trade whose executor raised: journaled ``failed`` with the reason,
        unless a transaction of it is already on its way to the chain (then reconciliation
        settles it and it stays ``submitted``)."""
        reason = self._reason(exc)
        self._log_failure(f"trade {intent.id}", exc)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TemporaryError),
                stop=stop_after_attempt(FAILURE_JOURNAL_ATTEMPTS),
                wait=wait_exponential(multiplier=FAILURE_JOURNAL_WAIT_S),
                reraise=True,
            ):
                with attempt:
                    status = await self.journal.record_failure(intent, self.settings.mode, reason)
        except AgentError as journal_exc:
            # Journaled before broadcast or never sent: start-up reconciliation settles a row
            # left pending; a row never written means nothing of this trade reached the chain.
            log.error(
                "trade %s failed (%s) and the journal could not record it: %s",
                intent.id,
                reason,
                self._reason(journal_exc),
            )
            status = IntentStatus.FAILED
        return ExecutionOutcome(intent.id, status, detail=reason)

    def _reason(self, exc: BaseException) -> str:
        """What failed, for the journal and the alert: our errors' messages are written for
        that; anything else is named by its class, with its (redacted, shortened) message."""
        if isinstance(exc, AgentError):
            return self.redact(str(exc))
        text = str(exc)
        return self.redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]

    def _log_failure(self, what: str, exc: Exception) -> None:
        """One line for the failures we name (``AgentError``); a redacted traceback for the rest."""
        if isinstance(exc, AgentError):
            log.warning("%s failed: %s", what, self._reason(exc))
        else:
            log.error(
                "%s crashed: %s\n%s",
                what,
                self._reason(exc),
                self.redact("".join(traceback.format_exception(exc))).rstrip(),
            )

    # -- background sources --------------------------------------------------------------------
    async def _supervised(self, job: BackgroundJob) -> None:
        """Run ``job`` until it returns or is cancelled; restart it with backoff when it raises.

        Every failure is logged; the first of an outage is published (``SourceFailed``). A job
        that ran for at least ``restart_max_s`` before failing had recovered: its next failure
        is a new outage.
        """
        name = job_name(job)
        delay_s = self.settings.restart_initial_s
        published = False
        while True:
            started = time.monotonic()
            try:
                await job()
            except Exception as exc:
                if time.monotonic() - started >= self.settings.restart_max_s:
                    delay_s, published = self.settings.restart_initial_s, False
                self._log_failure(f"{name} (restarting in {delay_s:.1f}s)", exc)
                if not published:
                    self.events.publish(
                        ev.SourceFailed(
                            source=name, error_class=type(exc).__name__, restart_in_s=delay_s
                        )
                    )
                    published = True
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self.settings.restart_max_s)
                continue
            log.info("%s finished", name)
            return

    async def _token_refused(self, intent: Intent, token: str, reason: str) -> None:
        """A token reverted our transfer: cool the token down (not just the pair), alert once
        per transition rather than once per attempt."""
        if self.risk.record_refused_token(token, self.clock(), reason):
            cooldown_s = self.risk.limits.refused_token_cooldown_s
            self.events.publish(ev.TokenRefused(token=token, reason=reason, cooldown_s=cooldown_s))
        await self._did_not_happen(intent.id, intent, reason)
        log.warning("trade %s: token %s refuses us: %s", intent.id, token, reason)

    def _priced(self, fill: Fill, intent: Intent | None) -> Fill:
        """The fill with USD figures, where it has none, at the prices of its block: the
        latest snapshot at or before it (the oldest kept when the fill is older still; the
        latest when its block is unknown)."""
        snapshot = self.last_snapshot
        if fill.block_number is not None and self._recent_snapshots:
            at_or_before = [s for s in self._recent_snapshots if s.block <= fill.block_number]
            snapshot = at_or_before[-1] if at_or_before else self._recent_snapshots[0]
        if snapshot is None or fill.profit_usd is not None:
            return fill
        return replace(
            fill,
            profit_usd=snapshot.value_usd(fill.token_in, fill.profit),
            predicted_profit_usd=fill.predicted_profit_usd
            if fill.predicted_profit_usd is not None or intent is None
            else intent.predicted_profit_usd,
        )

    def _gas_usd(self, fill: Fill) -> float:
        price = self.last_snapshot.native_price_usd if self.last_snapshot else 0.0
        return fill.gas_cost_wei / 1e18 * price

    # -- strategy state ------------------------------------------------------------------------
    def _idle(self, strategy: Strategy) -> bool:
        running = self._evaluating.get(strategy.name)
        return running is None or running.done()

    def _deliver_fills(self, strategy: Strategy) -> None:
        """Hand queued fills to an idle strategy (on the loop, never during its evaluate)."""
        awaiting = self._awaiting.get(strategy.name, set())
        for fill in self._fills_for.pop(strategy.name, []):
            awaiting.discard(fill.intent_id)
            try:
                strategy.on_fill(fill)
            except Exception:  # a strategy bug in on_fill is logged, the fill stays journaled
                log.exception("strategy %s failed in on_fill", strategy.name)
        for before, after in self._changes_for.pop(strategy.name, []):
            if not isinstance(strategy, HearsReorgs):
                continue
            try:
                strategy.on_fill_changed(before, after)
            except Exception:  # a strategy bug is logged; the books already follow the chain
                log.exception("strategy %s failed in on_fill_changed", strategy.name)

    async def _did_not_happen(
        self, trade_id: str, proposal: Opportunity | Intent, reason: str
    ) -> None:
        """Tell the strategy its proposal will not fill (refused, skipped for a busy pair,
        failed or reverted): ``on_fill`` with a ``NotFilled``, as the Strategy protocol
        promises, so it can re-arm at once instead of waiting for expiry."""
        self._fills_for.setdefault(proposal.strategy, []).append(
            self._nothing_traded(trade_id, proposal, reason)
        )
        for strategy in self.strategies:
            if strategy.name == proposal.strategy and self._idle(strategy):
                self._deliver_fills(strategy)
                await self._save_state(strategy)

    def _nothing_traded(
        self, trade_id: str, proposal: Opportunity | Intent, reason: str
    ) -> NotFilled:
        return NotFilled(
            intent_id=trade_id,
            opportunity_id=proposal.id
            if isinstance(proposal, Opportunity)
            else proposal.opportunity_id,
            token_in=proposal.token_in,
            token_out=proposal.token_out,
            predicted_amount_in=proposal.amount_in,
            predicted_amount_out=proposal.predicted_amount_out,
            reason=reason,
        )

    async def _start_strategies(self) -> None:
        for strategy in self.strategies:
            state = await self.journal.get_strategy_state(strategy.name)
            if state is not None:
                awaiting = state.pop(AWAITING_KEY, [])
                self._awaiting[strategy.name] = {str(intent_id) for intent_id in awaiting}
            strategy.on_start(state)
        # Trades the last run started and never reported back (killed, or cut off at shutdown)
        # were settled by start-up reconciliation: their outcomes reach the strategies now,
        # before any decision.
        await self._settle_awaited()

    async def _settle_awaited(self) -> None:
        """Queue, for every strategy, the outcome of each intent it awaits that the journal
        holds as final (the fill, or nothing traded), then hand them over and save."""
        for strategy in self.strategies:
            awaiting = self._awaiting.get(strategy.name, set())
            queued = {fill.intent_id for fill in self._fills_for.get(strategy.name, [])}
            for intent_id in sorted(awaiting - queued):
                try:
                    record = await self.journal.get_intent(intent_id)
                except JournalNotFound:
                    # Cut off before its intent was journaled: nothing was signed, and the
                    # strategy's pending order expires as any order that did not happen.
                    awaiting.discard(intent_id)
                    continue
                if record.status not in FINAL_INTENT_STATUSES:
                    continue  # still in flight: a later reconciliation settles it
                fill = await self.journal.get_fill(intent_id)
                outcome: Fill | NotFilled = (
                    fill
                    if fill is not None and fill.finality != FILL_REORGED
                    else self._nothing_traded(
                        intent_id, record.intent, record.status_detail or str(record.status)
                    )
                )
                self._fills_for.setdefault(strategy.name, []).append(outcome)
            if strategy.name in self._fills_for and self._idle(strategy):
                await self._save_state(strategy)

    async def _persist_strategy_state(self) -> None:
        for strategy in self.strategies:
            await self._save_state(strategy)

    async def _save_portfolio(self) -> None:
        """Journal the risk state of the books (equity peak, today's realised PnL) when it
        changed: ``open_agent`` restores it, so a restart keeps the drawdown and daily loss."""
        state = {**self.portfolio.state(), "mode": self.settings.mode}
        if state == self._saved_portfolio:
            return
        try:
            await self.journal.set_strategy_state(PORTFOLIO_STATE_KEY, state)
        except AgentError as exc:
            # A locked journal must not undo the fill's booking here: saved again next tick.
            log.warning("cannot journal the portfolio's risk state (retried): %s", exc)
            return
        self._saved_portfolio = state

    async def _save_state(self, strategy: Strategy) -> None:
        """Journal the strategy's state if it is idle (read before any await: still idle),
        fills queued for it delivered first, with the intents it still awaits."""
        if not self._idle(strategy):
            return
        self._deliver_fills(strategy)
        state = strategy.state()
        if state:
            awaiting = sorted(self._awaiting.get(strategy.name, ()))
            await self.journal.set_strategy_state(strategy.name, {**state, AWAITING_KEY: awaiting})
        if isinstance(strategy, TakesOrders):
            unwritten = self._order_updates.setdefault(strategy.name, [])
            unwritten.extend(strategy.order_updates())
            if unwritten:
                # a fill must reach the journal even through an outage (an order left pending
                # there would fire again after a restart): kept and retried until written
                await self.journal.apply_order_updates(list(unwritten))
                unwritten.clear()

    async def _load_orders(self) -> None:
        """Hand the journal's active conditional orders (placed from the CLI or Telegram
        while we run) to the idle strategies that execute them. A journal that cannot be
        read leaves them the orders they have: the tick goes on."""
        takers = [s for s in self.strategies if isinstance(s, TakesOrders) and self._idle(s)]
        if not takers:
            return
        try:
            orders = await self.journal.list_orders(active_only=True)
        except AgentError as exc:
            log.warning("cannot read the conditional orders (kept as they were): %s", exc)
            return
        for strategy in takers:
            if not self._order_updates.get(strategy.name):  # the journal is behind it
                strategy.load_orders(orders)

    async def _settle_strategies(self) -> None:
        """On the way out: fills still queued go to their (idle) strategies, whose state is
        then saved, so the next start resumes from every settled trade."""
        for strategy in self.strategies:
            if self._idle(strategy):
                self._deliver_fills(strategy)
            await self._save_state(strategy)
