"""What strategies see: one immutable picture of the market and of our portfolio per tick.

Built by the engine from the pool registry and the feeds; strategies read it and return
opportunities, never touching I/O. Every off-chain value is a ``Reading`` so its age and
staleness travel with it; a strategy that needs a stale input skips (or falls back to neutral).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.dex.pools import PoolRef as PoolRef  # its home is dex; strategies read it here
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool
from agent.types import GasPrice, Reading, Token, WhaleTrade

Pool = V2Pool | V3Pool

_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CexQuote:
    """Best bid/ask on a centralised exchange for a token, in USD per whole token."""

    exchange: str
    symbol: str
    bid: float
    ask: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class SentimentScore:
    """Crowd sentiment for a token: ``score`` in [-1, 1], with post volume and its z-score."""

    score: float
    volume: int = 0
    volume_z: float = 0.0


@dataclass(frozen=True, slots=True)
class AggregatorQuote:
    """An aggregator's (1inch) best output for ``amount_in`` of ``token_in``; smallest units."""

    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    gas: int = 0


@dataclass(frozen=True)
class MarketSnapshot:
    """The market at ``block``. Token-keyed maps use checksummed token addresses.

    ``timestamp`` is the block's (its header's, seconds since the epoch): the market's time,
    for schedules and holding times. ``read_at`` is when the snapshot was read (the local clock
    the ages of it and of the feeds' readings are measured on; the block's time when not given).
    Deadlines count from the later of the two (``deadline``).
    ``pools`` hold exact pool states (quotes are pure and never mutate them); ``stale_pools``
    are pools whose last read failed (their state is the last good one). ``prices_usd`` are
    valuation prices per whole token. ``native_price_usd`` values gas (ETH on Ethereum).
    """

    block: int
    timestamp: float
    chain_id: int
    tokens: Mapping[str, Token]
    pools: Mapping[str, Pool]
    pool_refs: Mapping[str, PoolRef]
    gas: GasPrice | None
    native_price_usd: float
    prices_usd: Mapping[str, float]
    stale_pools: frozenset[str] = frozenset()
    cex: Mapping[str, Reading[CexQuote]] = field(default_factory=lambda: _EMPTY)
    aggregator: Mapping[tuple[str, str], Reading[AggregatorQuote]] = field(
        default_factory=lambda: _EMPTY
    )
    sentiment: Mapping[str, Reading[SentimentScore]] = field(default_factory=lambda: _EMPTY)
    whale_trades: tuple[WhaleTrade, ...] = ()
    # True only when the executor can carry out an aggregator (1inch) route: a real 1inch
    # client builds the swap. Simulated quotes and paper mode have no swap to execute.
    aggregator_executable: bool = False
    read_at: float | None = None

    @property
    def feeds_now(self) -> float:
        """The time a feed reading's age is measured at (``read_at``, else the block's)."""
        return self.timestamp if self.read_at is None else self.read_at

    def deadline(self, seconds: int) -> int:
        """A transaction deadline ``seconds`` after the later of the block's time and the read
        time: the block that mines it is stamped at least that late. From the block's time
        alone, a quiet chain's old head (a devnet mines only on demand) would give a deadline
        already past when the next block is mined; from our clock alone, a chain whose clock
        runs ahead would."""
        return int(max(self.timestamp, self.feeds_now)) + seconds

    def gas_cost_usd(self, gas_units: int) -> float:
        """USD cost of ``gas_units`` at the snapshot's max fee (a conservative estimate)."""
        if self.gas is None:
            return 0.0
        return gas_units * self.gas.max_fee_wei / 1e18 * self.native_price_usd

    def value_usd(self, token: str, amount: int) -> float:
        """USD value of ``amount`` smallest units of ``token`` (0.0 when unpriced)."""
        meta = self.tokens.get(token)
        price = self.prices_usd.get(token)
        if meta is None or price is None:
            return 0.0
        return amount / 10.0**meta.decimals * price

    def sentiment_or_neutral(self, token: str, now: float | None = None) -> float:
        """The token's sentiment score, or 0.0 (neutral) when missing or stale at ``now``
        (default ``feeds_now``)."""
        reading = self.sentiment.get(token)
        now = self.feeds_now if now is None else now
        if reading is None or reading.value is None or reading.is_stale(now):
            return 0.0
        return reading.value.score


@dataclass(frozen=True)
class PortfolioView:
    """Our holdings as strategies and the risk gate see them. Balances in smallest units."""

    balances: Mapping[str, int]
    equity_usd: float
    peak_equity_usd: float
    realized_pnl_today_usd: float = 0.0
    exposure_usd: Mapping[str, float] = field(default_factory=lambda: _EMPTY)

    @property
    def drawdown_pct(self) -> float:
        if self.peak_equity_usd <= 0:
            return 0.0
        return max(0.0, (self.peak_equity_usd - self.equity_usd) / self.peak_equity_usd * 100)

    @property
    def total_exposure_usd(self) -> float:
        return sum(self.exposure_usd.values())
