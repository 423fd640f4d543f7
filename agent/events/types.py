"""What happened, as typed facts: the one vocabulary sources publish and subscribers read.

Every event is a frozen dataclass with ``at`` (``time.time()`` seconds) and a ``kind`` string.
Events carry no secrets: symbols, addresses, hashes, reasons, error classes and USD figures,
never keys, tokens or URLs. Token amounts are ``int`` in the token's smallest units; USD figures
are ``float`` (reporting only).

Alerts render some of these events as cards (``agent.alerts.base``: ``FeedDown`` for
``FeedStale`` and ``HeadStalled``, ``TradeFilled`` for ``TradeMined`` ...); the mapping lives in
``agent.alerts.subscriber``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import ClassVar

# The source name block-source staleness is reported under (/health, alerts, metrics).
HEAD_SOURCE = "rpc head"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event. ``at`` is when it happened, ``time.time()`` seconds."""

    kind: ClassVar[str] = "event"

    at: float = field(default_factory=time.time)


# --- the block source -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadSeen(Event):
    """A new chain head (a block number higher than any seen before)."""

    kind: ClassVar[str] = "head_seen"

    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadStalled(Event):
    """No new head for ``stalled_for_s`` (past the stall threshold): published once per stall."""

    kind: ClassVar[str] = "head_stalled"

    last_head: int | None
    stalled_for_s: float
    error_class: str | None = None  # the block source's latest failure, if it is failing


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadResumed(Event):
    """The first new head after a stall."""

    kind: ClassVar[str] = "head_resumed"

    number: int
    stalled_for_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadRefused(Event):
    """The block source offered an implausible head and it was not acted on: a number beyond
    what the elapsed time allows, a block the node does not have, one that does not link to
    the last good head, or one no other endpoint confirms. ``reason`` is a short code
    (``too_far_ahead``, ``unknown_block``, ``broken_ancestry``, ``unconfirmed``, ...)."""

    kind: ClassVar[str] = "head_refused"

    number: int
    reason: str
    last_good: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadTrusted(Event):
    """The first plausible head after one or more were refused."""

    kind: ClassVar[str] = "head_trusted"

    number: int
    refused: int  # heads refused since the last plausible one


# --- prices ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceOutlier(Event):
    """A pool's price for ``symbol`` strays from the consensus of the other sources by more
    than the tolerance: it is ignored for USD valuation until it comes back in line
    (published once per pool, on the transition)."""

    kind: ClassVar[str] = "price_outlier"

    symbol: str
    pool: str  # address
    dex: str
    pool_price_usd: float
    price_usd: float  # the consensus the pool was compared with
    deviation: float  # |pool / consensus - 1|


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolsDrifted(Event):
    """The spot check found pools whose event-advanced state differed from the chain at
    ``block`` (they were reloaded): a missed or misapplied log, or a node that changed."""

    kind: ClassVar[str] = "pools_drifted"

    block: int
    pools: tuple[str, ...]  # addresses


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolsLoading(Event):
    """Progress of the background first load: ``loaded`` of ``total`` pools have a state
    (the rest are still loading, or waiting to retry a failed load)."""

    kind: ClassVar[str] = "pools_loading"

    loaded: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolsSkipped(Event):
    """Discovery's liquidity filter: ``skipped`` pools hold under ``min_liquidity_usd`` and are
    not watched (``dropped`` of them were watched until this check, ``added`` came back)."""

    kind: ClassVar[str] = "pools_skipped"

    skipped: int
    dropped: int
    added: int
    min_liquidity_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceOutlierCleared(Event):
    """A pool reported as a price outlier agrees with the consensus again."""

    kind: ClassVar[str] = "price_outlier_cleared"

    symbol: str
    pool: str


# --- feeds ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStale(Event):
    """A feed source went stale (fresh -> stale transition); ``required`` ones degrade /health."""

    kind: ClassVar[str] = "feed_stale"

    source: str
    stale_for_s: float
    error: str | None = None  # redacted by the feed that recorded it
    required: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedFresh(Event):
    """A stale feed source has a fresh reading again (stale -> fresh transition)."""

    kind: ClassVar[str] = "feed_fresh"

    source: str
    stale_for_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedsChecked(Event):
    """Age of the latest good reading of every feed source (seconds), each time feeds are
    checked: the staleness gauges read it."""

    kind: ClassVar[str] = "feeds_checked"

    ages_s: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFailed(Event):
    """A background source (feed poller, CEX stream, alert worker, Telegram poller) raised and
    is restarted in ``restart_in_s``: published once per outage, not once per restart."""

    kind: ClassVar[str] = "source_failed"

    source: str
    error_class: str
    restart_in_s: float


# --- the executor ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeSent(Event):
    """A trade's transaction was broadcast; ``amount_in_wei`` is in ``token_in``'s units."""

    kind: ClassVar[str] = "trade_sent"

    trade_id: str
    strategy: str
    route: str
    tx_hash: str
    token_in: str  # address
    amount_in_wei: int
    predicted_profit_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeMined(Event):
    """A trade filled (mined and settled, or a paper fill): realised beside predicted."""

    kind: ClassVar[str] = "trade_mined"

    trade_id: str
    strategy: str
    route: str
    tx_hash: str | None
    block_number: int | None
    predicted_profit_usd: float
    realised_profit_usd: float
    gas_cost_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeReverted(Event):
    """A trade's transaction was mined and reverted."""

    kind: ClassVar[str] = "trade_reverted"

    trade_id: str
    strategy: str
    route: str
    reason: str
    tx_hash: str | None = None
    gas_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeReorged(Event):
    """A reorg replaced the block of a fill still pending confirmation. ``outcome``: "moved"
    (re-included in ``new_block``, realised amounts read again), "reorged_out" (in no block
    any more: the fill is void), "reverted" (re-included and reverted there: void) or
    "requeued" (back in the node's pool, waiting to be mined again). The USD figures are the
    fill's realised profit before and after (0 after when void)."""

    kind: ClassVar[str] = "trade_reorged"

    trade_id: str
    strategy: str
    tx_hash: str | None
    outcome: str
    old_block: int | None
    new_block: int | None
    realised_profit_usd_before: float
    realised_profit_usd_after: float
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefused(Event):
    """A token started reverting our transfers (blocklist, pause): it cools down for
    ``cooldown_s``. Published once per transition, not once per attempt."""

    kind: ClassVar[str] = "token_refused"

    token: str
    reason: str
    cooldown_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeFailed(Event):
    """A trade ended before reaching the chain (simulation revert, refused broadcast, error)."""

    kind: ClassVar[str] = "trade_failed"

    trade_id: str
    strategy: str
    route: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRefusal(Event):
    """The signing policy refused a transaction before the key saw it: nothing was signed or
    sent. ``rule``: "risk" (the gate's last look: paused, halted), "target", "calldata",
    "simulation" or "balance_change"; ``purpose`` the transaction's (swap, approve, arb ...)."""

    kind: ClassVar[str] = "signing_refusal"

    purpose: str
    rule: str
    reason: str
    trade_id: str | None = None
    strategy: str | None = None
    target: str | None = None  # address


# --- the engine -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Event):
    """One block processed. ``refusals`` are (reason, count) pairs, sorted by reason;
    ``failed_strategies`` the strategies that raised or timed out on this block;
    ``block_timestamp`` the block's own time (its header's, seconds); ``heads_skipped`` the
    heads since the previous tick the engine never worked on (newer ones came first)."""

    kind: ClassVar[str] = "tick"

    block: int
    opportunities: int
    approved: int
    started: int
    refusals: tuple[tuple[str, int], ...] = ()
    failed_strategies: tuple[str, ...] = ()
    decide_s: float = 0.0
    equity_usd: float = 0.0
    drawdown_ratio: float = 0.0
    block_timestamp: float | None = None
    heads_skipped: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal(Event):
    """The risk gate refused an opportunity with one machine-readable reason."""

    kind: ClassVar[str] = "refusal"

    reason: str
    strategy: str
    opportunity_id: str
    block: int
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyFailed(Event):
    """A strategy raised or timed out on a block (only the error class: messages may hold data)."""

    kind: ClassVar[str] = "strategy_failed"

    strategy: str
    error_class: str
    block: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Halt(Event):
    """Trading halted (drawdown, daily loss) until an explicit resume: once per halt."""

    kind: ClassVar[str] = "halt"

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlAction(Event):
    """An operator acted on the running agent: ``who`` (e.g. ``telegram:424242``), ``action``
    (pause, resume, kill) and an optional detail (the pause reason)."""

    kind: ClassVar[str] = "control_action"

    who: str
    action: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DayClosed(Event):
    """A UTC day ended (seen at the first tick of the next): its trades and PnL, USD."""

    kind: ClassVar[str] = "day_closed"

    day: date
    pnl_usd: float
    trades: int
    equity_usd: float
    drawdown_ratio: float = 0.0
