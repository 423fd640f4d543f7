"""Typed alert events and the ``Notifier`` protocol every alert channel implements.

An event knows its severity and renders itself twice: ``render_text()`` (plain text, for logs,
the console fallback and ``status``) and ``render_card()`` (an ``AlertCard``: title, summary and
named fields, which Telegram turns into HTML, Discord into an embed and the console into a panel).
Events carry no secrets: callers pass symbols, hashes, reasons and USD figures, never keys,
tokens or URLs. USD figures are ``float`` (reporting only); token amounts are ``int`` in the
token's smallest units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import ClassVar, Protocol, runtime_checkable

from agent.types import Token


class Severity(IntEnum):
    """How urgent an event is; channels can subscribe from a minimum severity upwards."""

    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class AlertCard:
    """Channel-neutral rich rendering of an event.

    ``fields`` are (name, value) pairs shown as a small table; ``at`` is ``time.time()`` seconds.
    """

    title: str
    summary: str
    fields: tuple[tuple[str, str], ...]
    severity: Severity
    kind: str
    at: float

    @property
    def timestamp_iso(self) -> str:
        """``at`` as an ISO 8601 UTC timestamp (Discord's embed ``timestamp`` format)."""
        return datetime.fromtimestamp(self.at, tz=UTC).isoformat()


def _usd(value_usd: float) -> str:
    """Signed USD with cents, e.g. ``+12.34 USD`` / ``-0.50 USD``."""
    return f"{value_usd:+,.2f} USD"


def _plain_usd(value_usd: float) -> str:
    return f"{value_usd:,.2f} USD"


def _short_hash(tx_hash: str | None) -> str:
    if not tx_hash:
        return "-"
    return tx_hash if len(tx_hash) <= 18 else f"{tx_hash[:10]}…{tx_hash[-6:]}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """Base of every event. ``at`` is when it happened, ``time.time()`` seconds."""

    kind: ClassVar[str] = "event"
    severity: ClassVar[Severity] = Severity.INFO

    at: float = field(default_factory=time.time)

    def title(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """One human sentence; may be empty when the title says it all."""
        return ""

    def fields(self) -> tuple[tuple[str, str], ...]:
        return ()

    def render_card(self) -> AlertCard:
        return AlertCard(
            title=self.title(),
            summary=self.summary(),
            fields=self.fields(),
            severity=self.severity,
            kind=self.kind,
            at=self.at,
        )

    def render_text(self) -> str:
        """Plain text: ``[severity] title``, the summary, then ``name: value`` lines."""
        lines = [f"[{self.severity.label}] {self.title()}"]
        if summary := self.summary():
            lines.append(summary)
        lines.extend(f"{name}: {value}" for name, value in self.fields())
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStarted(AlertEvent):
    kind: ClassVar[str] = "agent_started"
    severity: ClassVar[Severity] = Severity.INFO

    mode: str
    chain_id: int
    strategies: tuple[str, ...]
    wallet_address: str | None = None

    def title(self) -> str:
        return f"Agent started ({self.mode})"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("chain", str(self.chain_id)),
            ("strategies", ", ".join(self.strategies) or "-"),
            ("wallet", self.wallet_address or "-"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStopped(AlertEvent):
    kind: ClassVar[str] = "agent_stopped"
    severity: ClassVar[Severity] = Severity.WARNING

    reason: str

    def title(self) -> str:
        return "Agent stopped"

    def summary(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeSent(AlertEvent):
    """A transaction was broadcast; ``amount_in_wei`` is in ``token_in``'s smallest units."""

    kind: ClassVar[str] = "trade_sent"
    severity: ClassVar[Severity] = Severity.INFO

    trade_id: str
    strategy: str
    route: str
    tx_hash: str
    token_in: Token
    amount_in_wei: int
    predicted_profit_usd: float

    def title(self) -> str:
        return f"Trade sent: {self.route}"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("strategy", self.strategy),
            ("trade", self.trade_id),
            ("size", f"{self.token_in.from_units(self.amount_in_wei):,.6g} {self.token_in.symbol}"),
            ("predicted", _usd(self.predicted_profit_usd)),
            ("tx", _short_hash(self.tx_hash)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeFilled(AlertEvent):
    """A trade was mined and settled: realised profit (net of gas) beside the prediction."""

    kind: ClassVar[str] = "trade_filled"
    severity: ClassVar[Severity] = Severity.INFO

    trade_id: str
    strategy: str
    route: str
    tx_hash: str
    block_number: int
    predicted_profit_usd: float
    realised_profit_usd: float
    gas_cost_usd: float

    def title(self) -> str:
        return f"Trade filled: {self.route}"

    def summary(self) -> str:
        return (
            f"realised {_usd(self.realised_profit_usd)} vs predicted "
            f"{_usd(self.predicted_profit_usd)}"
        )

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("strategy", self.strategy),
            ("trade", self.trade_id),
            ("predicted", _usd(self.predicted_profit_usd)),
            ("realised", _usd(self.realised_profit_usd)),
            ("difference", _usd(self.realised_profit_usd - self.predicted_profit_usd)),
            ("gas", _plain_usd(self.gas_cost_usd)),
            ("block", str(self.block_number)),
            ("tx", _short_hash(self.tx_hash)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeReverted(AlertEvent):
    kind: ClassVar[str] = "trade_reverted"
    severity: ClassVar[Severity] = Severity.WARNING

    trade_id: str
    strategy: str
    route: str
    reason: str
    tx_hash: str | None = None
    gas_cost_usd: float = 0.0

    def title(self) -> str:
        return f"Trade reverted: {self.route}"

    def summary(self) -> str:
        return self.reason

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("strategy", self.strategy),
            ("trade", self.trade_id),
            ("gas lost", _plain_usd(self.gas_cost_usd)),
            ("tx", _short_hash(self.tx_hash)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeReorgedAlert(AlertEvent):
    """A reorg replaced the block of a fill pending confirmation: moved to another block,
    void (reorged out, or reverted where it landed), or waiting in the mempool again."""

    kind: ClassVar[str] = "trade_reorged"
    severity: ClassVar[Severity] = Severity.WARNING

    trade_id: str
    strategy: str
    outcome: str
    tx_hash: str | None
    old_block: int | None
    new_block: int | None
    realised_profit_usd_before: float
    realised_profit_usd_after: float
    detail: str = ""

    _TITLES: ClassVar[dict[str, str]] = {
        "moved": "Fill moved by a reorg",
        "reorged_out": "Fill reorged out (void)",
        "reverted": "Fill reverted after a reorg (void)",
        "requeued": "Fill's block replaced: back in the mempool",
    }

    def title(self) -> str:
        return self._TITLES.get(self.outcome, f"Fill reorged: {self.outcome}")

    def summary(self) -> str:
        return self.detail

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("strategy", self.strategy),
            ("trade", self.trade_id),
            ("block", "-" if self.old_block is None else str(self.old_block)),
            ("now in block", "-" if self.new_block is None else str(self.new_block)),
            ("realised before", _usd(self.realised_profit_usd_before)),
            ("realised now", _usd(self.realised_profit_usd_after)),
            ("tx", _short_hash(self.tx_hash)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRefusedAlert(AlertEvent):
    """The signing policy refused a transaction the agent was about to sign: nothing was signed
    or sent. A ``calldata``/``target``/``balance_change`` refusal of a 1inch answer means the
    API (or something between it and us) offered a transaction the agent did not ask for."""

    kind: ClassVar[str] = "signing_refused"
    severity: ClassVar[Severity] = Severity.CRITICAL

    purpose: str
    rule: str
    reason: str
    trade_id: str | None = None
    target: str | None = None

    def title(self) -> str:
        return f"Refused to sign a {self.purpose} transaction"

    def summary(self) -> str:
        return self.reason

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("rule", self.rule),
            ("trade", self.trade_id or "-"),
            ("to", self.target or "-"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCooledDown(AlertEvent):
    """A token reverts our transfers (blocklist, pause): no trade touches it for a while."""

    kind: ClassVar[str] = "token_cooled_down"
    severity: ClassVar[Severity] = Severity.WARNING

    token: str
    reason: str
    cooldown_s: float

    def title(self) -> str:
        return f"Token refused: {self.token}"

    def summary(self) -> str:
        return f"{self.reason}; no trades with it for {_duration(self.cooldown_s)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskHalt(AlertEvent):
    """Trading is halted (drawdown, daily loss, kill switch) until an explicit resume."""

    kind: ClassVar[str] = "risk_halt"
    severity: ClassVar[Severity] = Severity.CRITICAL

    reason: str
    detail: str = ""

    def title(self) -> str:
        return f"Trading halted: {self.reason}"

    def summary(self) -> str:
        return self.detail or "trading stays halted until an explicit resume"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedDown(AlertEvent):
    kind: ClassVar[str] = "feed_down"
    severity: ClassVar[Severity] = Severity.WARNING

    source: str
    stale_for_s: float
    error_class: str | None = None

    def title(self) -> str:
        return f"Feed down: {self.source}"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("stale for", _duration(self.stale_for_s)),
            ("error", self.error_class or "-"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedRecovered(AlertEvent):
    kind: ClassVar[str] = "feed_recovered"
    severity: ClassVar[Severity] = Severity.INFO

    source: str
    down_for_s: float

    def title(self) -> str:
        return f"Feed recovered: {self.source}"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (("was down for", _duration(self.down_for_s)),)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyError(AlertEvent):
    """A strategy raised or timed out; only the error class travels (messages may hold data)."""

    kind: ClassVar[str] = "strategy_error"
    severity: ClassVar[Severity] = Severity.ERROR

    strategy: str
    error_class: str
    occurrences: int = 1

    def title(self) -> str:
        return f"Strategy error: {self.strategy}"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (("error", self.error_class), ("occurrences", str(self.occurrences)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFailed(AlertEvent):
    """A background source (feed poller, CEX stream, alert worker, Telegram poller) raised; the
    engine restarts it with backoff. Sent once per outage, not once per restart; only the
    error class travels (messages may hold data)."""

    kind: ClassVar[str] = "source_failed"
    severity: ClassVar[Severity] = Severity.ERROR

    source: str
    error_class: str
    restart_in_s: float

    def title(self) -> str:
        return f"Source failed: {self.source}"

    def summary(self) -> str:
        return "restarting with backoff; trading goes on without it"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (("error", self.error_class), ("next restart in", _duration(self.restart_in_s)))


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadRefused(AlertEvent):
    """The block source offered an implausible head; the agent keeps to the real ones."""

    kind: ClassVar[str] = "head_refused"
    severity: ClassVar[Severity] = Severity.WARNING

    number: int
    reason: str
    last_good: int | None
    detail: str = ""

    def title(self) -> str:
        return f"Head refused: block {self.number}"

    def summary(self) -> str:
        return self.detail or "an RPC node offered an implausible chain head"

    def fields(self) -> tuple[tuple[str, str], ...]:
        last = "-" if self.last_good is None else str(self.last_good)
        return (("reason", self.reason), ("last good head", last))


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceOutlier(AlertEvent):
    """A pool's price strays from the other sources: ignored for USD valuation."""

    kind: ClassVar[str] = "price_outlier"
    severity: ClassVar[Severity] = Severity.WARNING

    symbol: str
    pool: str
    dex: str
    pool_price_usd: float
    price_usd: float
    deviation: float

    def title(self) -> str:
        return f"Price outlier ignored: {self.symbol} on {self.dex}"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("pool", _short_hash(self.pool)),
            ("pool price", f"${self.pool_price_usd:,.6g}"),
            ("price used", f"${self.price_usd:,.6g}"),
            ("deviation", f"{self.deviation:.1%}"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DailySummary(AlertEvent):
    kind: ClassVar[str] = "daily_summary"
    severity: ClassVar[Severity] = Severity.INFO

    day: date
    pnl_usd: float
    trades: int
    equity_usd: float
    drawdown_ratio: float = 0.0

    def title(self) -> str:
        return f"Daily summary {self.day.isoformat()}"

    def summary(self) -> str:
        return f"PnL {_usd(self.pnl_usd)} over {self.trades} trade(s)"

    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("pnl", _usd(self.pnl_usd)),
            ("trades", str(self.trades)),
            ("equity", _plain_usd(self.equity_usd)),
            ("drawdown", f"{self.drawdown_ratio:.2%}"),
        )


@runtime_checkable
class Notifier(Protocol):
    """One alert channel. ``send`` may raise; the fan-out isolates and counts failures."""

    @property
    def name(self) -> str: ...

    async def send(self, event: AlertEvent) -> None: ...

    async def aclose(self) -> None: ...
