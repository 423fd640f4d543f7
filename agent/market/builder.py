"""Builds the per-block ``MarketSnapshot`` from the pool registry, the gas oracle and the feeds.

USD prices come from the pools themselves (every live pool against a USD stablecoin, or
through WETH), so valuation needs no outside service: a weighted median in which each pool
weighs the smaller of its two sides, pools straying from it ignored and reported, so one pool
with absurd reserves moves neither equity nor drawdown nor exposure. A fresh CoinGecko price,
when that feed is on, takes precedence; it and fresh CEX mids also weigh the pools.

Feed clients keep their own readings (``Reading`` with source, age and error); ``FeedBoard``
only translates them into the snapshot's types, so a stale reading stays visibly stale and
strategies decide what to do with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.dex.pools import PoolRegistry
from agent.dex.v2 import V2Pool
from agent.errors import StaleDataError
from agent.events import EventBus, PoolsDrifted, PriceOutlier, PriceOutlierCleared
from agent.market.snapshot import (
    AggregatorQuote,
    CexQuote,
    MarketSnapshot,
    Pool,
    SentimentScore,
)
from agent.types import GasPrice, Reading, Token, WhaleTrade

log = logging.getLogger(__name__)

_Q96 = float(2**96)
USD_STABLES = ("USDC", "USDT", "DAI")
# A pool whose price strays further than this fraction from the consensus is ignored.
MAX_PRICE_DEVIATION = 0.2


class GasSource(Protocol):
    async def poll(self) -> Reading[GasPrice]: ...


class WhaleSource(Protocol):
    async def scan(self, from_block: int, to_block: int | None = None) -> list[WhaleTrade]: ...


def mid_price(pool: Pool, base: str) -> tuple[float, int]:
    """(price of ``base`` in the other token, both in raw units; depth of the other side).

    Fee-less mid from reserves (V2) or the sqrt price (V3); depth is the other token's reserve
    (V2) or its virtual reserve at the current price (V3), in the other token's raw units.
    """
    price, _base_reserve, quote_reserve = pool_sides(pool, base)
    return price, quote_reserve


def pool_sides(pool: Pool, base: str) -> tuple[float, int, int]:
    """(price of ``base`` in the other token, base reserve, other reserve), all in raw units.

    V2: the reserves; V3: the virtual reserves of the active range (``L / sqrt P`` of token0,
    ``L * sqrt P`` of token1), what a V2 pool of the same depth at this price would hold.
    """
    if isinstance(pool, V2Pool):
        if base == pool.token0:
            price = pool.reserve1 / pool.reserve0 if pool.reserve0 else 0.0
            return price, pool.reserve0, pool.reserve1
        price = pool.reserve0 / pool.reserve1 if pool.reserve1 else 0.0
        return price, pool.reserve1, pool.reserve0
    sqrt_price = pool.sqrt_price_x96 / _Q96
    if sqrt_price <= 0:
        return 0.0, 0, 0
    reserve0 = int(pool.liquidity / sqrt_price)
    reserve1 = int(pool.liquidity * sqrt_price)
    if base == pool.token0:
        return sqrt_price**2, reserve0, reserve1
    return 1 / sqrt_price**2, reserve1, reserve0


@dataclass(frozen=True, slots=True)
class PoolQuote:
    """One pool's price of ``token`` (USD per whole token) and what backs it: the token's side
    in whole tokens, the other side in USD."""

    pool: str
    token: str
    price_usd: float
    base_amount: float  # whole base tokens in the pool (V3: virtual, active range)
    quote_usd: float  # the other side, USD


@dataclass(frozen=True, slots=True)
class PriceOutlierQuote:
    """A pool quote ignored because it strays from the consensus by more than the tolerance."""

    quote: PoolQuote
    consensus_usd: float

    @property
    def deviation(self) -> float:
        return abs(self.quote.price_usd / self.consensus_usd - 1)


@dataclass(frozen=True, slots=True)
class UsdPrices:
    """USD per whole token by address, and the pool quotes left out as outliers."""

    prices: dict[str, float]
    outliers: tuple[PriceOutlierQuote, ...] = ()


def weighted_median(values: list[float], weights: list[float]) -> float:
    """The value at which half the total weight lies on each side (weights >= 0); the plain
    lower median when every weight is zero."""
    ranked = sorted(zip(values, weights, strict=True))
    total = sum(w for _, w in ranked)
    if total <= 0:
        return ranked[(len(ranked) - 1) // 2][0]
    running = 0.0
    for value, weight in ranked:
        running += weight
        if running >= total / 2:
            return value
    return ranked[-1][0]


def consensus_price(
    quotes: list[PoolQuote], reference_usd: float | None, max_deviation: float
) -> tuple[float, list[PoolQuote]]:
    """(price, outliers) for one token from one or more pools' quotes, USD per whole token.

    The reference is an outside price (CoinGecko, a CEX) when there is one and some pool agrees
    with it, else the plain median of the pools (one pool, one vote); pools further than
    ``max_deviation`` (a fraction) from an outside reference are outliers. Each other pool
    weighs what it is worth at the reference: the smaller of its two sides (``min(quote side,
    base side x reference)``), so a pool stuffed on one side to print an absurd price weighs
    only its thin side. The price is the weighted median; pools further than ``max_deviation``
    from it are outliers too, and the price is the weighted median of the rest.
    """

    def near(price: float, to: float) -> bool:
        return abs(price / to - 1) <= max_deviation

    candidates = quotes
    if reference_usd and any(near(q.price_usd, reference_usd) for q in quotes):
        candidates = [q for q in quotes if near(q.price_usd, reference_usd)]
    else:
        reference_usd = None  # no outside price, or one no pool agrees with: the pools decide
    reference = reference_usd or weighted_median(
        [q.price_usd for q in candidates], [0.0] * len(candidates)
    )
    weights = {id(q): min(q.quote_usd, q.base_amount * reference) for q in candidates}
    median = weighted_median(
        [q.price_usd for q in candidates], [weights[id(q)] for q in candidates]
    )
    kept = [q for q in candidates if near(q.price_usd, median)]
    price = weighted_median([q.price_usd for q in kept], [weights[id(q)] for q in kept])
    kept_ids = {id(q) for q in kept}
    return price, [q for q in quotes if id(q) not in kept_ids]


def usd_prices(
    pools: Mapping[str, Pool],
    tokens: Mapping[str, Token],
    stale: frozenset[str] = frozenset(),
    *,
    external: Mapping[str, float] | None = None,
    references: Mapping[str, float] | None = None,
    max_deviation: float = MAX_PRICE_DEVIATION,
) -> UsdPrices:
    """USD per whole token for every token reachable from a stablecoin (stables count as 1),
    from every live pool at once, outliers ignored (``consensus_price``).

    ``external`` prices (CoinGecko) are taken as they are; they and ``references`` (CEX mids)
    also weigh the pools (``consensus_price``), so an outside price cross-checks them. Tokens
    priced against a stable come first, then tokens priced through them (WETH).
    """
    external = external or {}
    references = references or {}
    prices = {a: 1.0 for a, t in tokens.items() if t.symbol in USD_STABLES}
    outliers: list[PriceOutlierQuote] = []
    for _ in range(2):  # direct stable pools first, then one hop through priced tokens (WETH)
        quotes: dict[str, list[PoolQuote]] = {}
        for address, pool in pools.items():
            if address in stale:
                continue
            for base, quote in ((pool.token0, pool.token1), (pool.token1, pool.token0)):
                if base in prices or quote not in prices or base not in tokens:
                    continue
                if quote not in tokens:
                    continue
                raw, base_reserve, quote_reserve = pool_sides(pool, base)
                if raw <= 0:
                    continue
                scale = 10.0 ** (tokens[base].decimals - tokens[quote].decimals)
                quotes.setdefault(base, []).append(
                    PoolQuote(
                        pool=address,
                        token=base,
                        price_usd=raw * scale * prices[quote],
                        base_amount=base_reserve / 10.0 ** tokens[base].decimals,
                        quote_usd=quote_reserve / 10.0 ** tokens[quote].decimals * prices[quote],
                    )
                )
        found: dict[str, float] = {}
        for token, token_quotes in quotes.items():
            outside = external.get(token) or references.get(token)
            price, ignored = consensus_price(token_quotes, outside, max_deviation)
            outliers.extend(PriceOutlierQuote(q, price) for q in ignored)
            found[token] = external.get(token, price)
        prices.update(found)
    prices.update({t: p for t, p in external.items() if t not in prices})  # no pool for them
    return UsdPrices(prices, tuple(outliers))


def pool_prices_usd(
    pools: Mapping[str, Pool],
    tokens: Mapping[str, Token],
    stale: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """USD per whole token from the pools alone, outliers ignored (``usd_prices``)."""
    return usd_prices(pools, tokens, stale).prices


@dataclass
class FeedBoard:
    """Reads the feed clients' latest readings into snapshot types (no I/O here).

    ``cex`` are CEX clients (real ``CexClient`` or ``SimCexClient``) with ``ticker(symbol)``;
    ``cex_symbols`` maps a CEX symbol (``ETH/USDT``) to the on-chain token address it prices.
    """

    cex: list[Any] = field(default_factory=list)
    cex_symbols: dict[str, str] = field(default_factory=dict)
    oneinch: Any | None = None
    sentiment: Any | None = None
    sentiment_tokens: dict[str, str] = field(default_factory=dict)  # feed key -> token address
    coingecko: Any | None = None
    coingecko_tokens: dict[str, str] = field(default_factory=dict)  # symbol -> token address

    def cex_quotes(self) -> dict[str, Reading[CexQuote]]:
        quotes: dict[str, Reading[CexQuote]] = {}
        for client in self.cex:
            for symbol, token in self.cex_symbols.items():
                reading = client.ticker(symbol)
                if reading is None or (token in quotes and not quotes[token].is_stale()):
                    continue
                ticker = reading.value
                quotes[token] = Reading(
                    reading.source,
                    None
                    if ticker is None
                    else CexQuote(ticker.exchange, symbol, ticker.bid, ticker.ask),
                    reading.fetched_at,
                    reading.max_age_s,
                    reading.error,
                )
        return quotes

    def aggregator_quotes(self) -> dict[tuple[str, str], Reading[AggregatorQuote]]:
        if self.oneinch is None:
            return {}
        quotes: dict[tuple[str, str], Reading[AggregatorQuote]] = {}
        for pair in self.oneinch.pairs:
            reading = self.oneinch.reading(pair)
            if reading is None:
                continue
            q = reading.value
            quotes[(pair.src, pair.dst)] = Reading(
                reading.source,
                None
                if q is None
                else AggregatorQuote(q.src, q.dst, q.amount_in, q.amount_out, q.gas or 0),
                reading.fetched_at,
                reading.max_age_s,
                reading.error,
            )
        return quotes

    def sentiment_scores(self) -> dict[str, Reading[SentimentScore]]:
        if self.sentiment is None:
            return {}
        scores: dict[str, Reading[SentimentScore]] = {}
        for key, token in self.sentiment_tokens.items():
            reading = self.sentiment.reading(key)
            if reading is None:
                continue
            s = reading.value
            scores[token] = Reading(
                reading.source,
                None if s is None else SentimentScore(s.score, s.post_volume, s.volume_z),
                reading.fetched_at,
                reading.max_age_s,
                reading.error,
            )
        return scores

    def readings(self) -> list[Reading[Any]]:
        """Every feed's current readings, one per client and key (for the freshness watch)."""
        found: list[Reading[Any]] = []
        for client in self.cex:
            found.extend(r for s in self.cex_symbols if (r := client.ticker(s)) is not None)
        found.extend(self.aggregator_quotes().values())
        found.extend(self.sentiment_scores().values())
        if self.coingecko is not None:
            found.extend(
                r for s in self.coingecko_tokens if (r := self.coingecko.price_usd(s)) is not None
            )
        return found

    def cex_mid_prices_usd(self) -> dict[str, float]:
        """Fresh CEX mid prices (USD per whole token) by token address: a check on the pools."""
        mids = {}
        for token, reading in self.cex_quotes().items():
            quote = reading.value
            if quote is not None and not reading.is_stale() and quote.bid > 0 and quote.ask > 0:
                mids[token] = (quote.bid + quote.ask) / 2
        return mids

    def external_prices_usd(self) -> dict[str, float]:
        if self.coingecko is None:
            return {}
        prices = {}
        for symbol, token in self.coingecko_tokens.items():
            reading = self.coingecko.price_usd(symbol)
            if reading is not None and reading.value is not None and not reading.is_stale():
                prices[token] = float(reading.value)
        return prices


class MarketView:
    """The engine's ``SnapshotSource``: refresh pools, read gas and whales, assemble a snapshot.

    ``block_timestamp(block)`` is the block's header timestamp (seconds): the snapshot's time.
    ``clock`` (local, seconds) stamps when the feeds were read (``MarketSnapshot.read_at``).
    """

    def __init__(
        self,
        *,
        chain_id: int,
        registry: PoolRegistry,
        tokens: Mapping[str, Token],
        native_token: str,
        block_timestamp: Callable[[int], Awaitable[float]],
        gas: GasSource | None = None,
        whales: WhaleSource | None = None,
        feeds: FeedBoard | None = None,
        events: EventBus | None = None,
        max_price_deviation: float = MAX_PRICE_DEVIATION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain_id = chain_id
        self.registry = registry
        self.tokens = dict(tokens)
        self.native_token = native_token
        self.block_timestamp = block_timestamp
        self.gas = gas
        self.whales = whales
        self.feeds = feeds or FeedBoard()
        self.clock = clock
        self.last_gas: GasPrice | None = None
        self.last_prices: dict[str, float] = {}
        self.events = events
        self.max_price_deviation = max_price_deviation
        # pools whose price is ignored as an outlier now, by address (reported on transitions)
        self.price_outliers: dict[str, PriceOutlierQuote] = {}
        self.rpc_s = 0.0
        # set by the wiring when the executor can build aggregator swaps (a real 1inch client)
        self.aggregator_executable = False

    async def snapshot(self, block: int) -> MarketSnapshot:
        started = time.perf_counter()
        # the header is usually known already (the head checks read it): no round trip then
        timestamp = await self.block_timestamp(block)
        refreshed = await self.registry.refresh(block)
        if refreshed.drifted and self.events is not None:
            self.events.publish(PoolsDrifted(block=block, pools=tuple(sorted(refreshed.drifted))))
        if self.gas is not None:
            reading = await self.gas.poll()
            if reading.value is not None:
                self.last_gas = reading.value
        whale_trades: tuple[WhaleTrade, ...] = ()
        if self.whales is not None:
            whale_trades = tuple(await self.whales.scan(block))
        self.rpc_s = time.perf_counter() - started
        pools = self.registry.pools
        stale = self.registry.stale_pools
        priced = usd_prices(
            pools,
            self.tokens,
            stale,
            external=self.feeds.external_prices_usd(),
            references=self.feeds.cex_mid_prices_usd(),
            max_deviation=self.max_price_deviation,
        )
        self._report_outliers(priced.outliers, block)
        prices = priced.prices
        self.last_prices = prices
        return MarketSnapshot(
            block=block,
            timestamp=timestamp,
            chain_id=self.chain_id,
            tokens=self.tokens,
            pools=pools,
            pool_refs=self.registry.pool_refs,
            gas=self.last_gas,
            native_price_usd=prices.get(self.native_token, 0.0),
            prices_usd=prices,
            stale_pools=stale,
            cex=self.feeds.cex_quotes(),
            aggregator=self.feeds.aggregator_quotes(),
            sentiment=self.feeds.sentiment_scores(),
            whale_trades=whale_trades,
            aggregator_executable=self.aggregator_executable,
            read_at=self.clock(),
        )

    def _report_outliers(self, outliers: tuple[PriceOutlierQuote, ...], block: int) -> None:
        """Log and publish pools that became price outliers, and those back in line (once per
        transition; a stale pool keeps its state until it is read again)."""
        now = {o.quote.pool: o for o in outliers}
        refs = self.registry.pool_refs
        for pool, outlier in now.items():
            if pool in self.price_outliers:
                continue
            token = self.tokens[outlier.quote.token]
            dex = refs[pool].dex if pool in refs else "?"
            log.warning(
                "pool %s (%s) prices %s at $%.6g, %.0f%% off the consensus $%.6g at block %d: "
                "ignored until it is back in line",
                pool,
                dex,
                token.symbol,
                outlier.quote.price_usd,
                outlier.deviation * 100,
                outlier.consensus_usd,
                block,
            )
            if self.events is not None:
                self.events.publish(
                    PriceOutlier(
                        symbol=token.symbol,
                        pool=pool,
                        dex=dex,
                        pool_price_usd=outlier.quote.price_usd,
                        price_usd=outlier.consensus_usd,
                        deviation=outlier.deviation,
                    )
                )
        stale = self.registry.stale_pools
        for pool, outlier in list(self.price_outliers.items()):
            if pool in now or pool in stale:
                continue
            symbol = self.tokens[outlier.quote.token].symbol
            log.info("pool %s prices %s in line again at block %d", pool, symbol, block)
            if self.events is not None:
                self.events.publish(PriceOutlierCleared(symbol=symbol, pool=pool))
            del self.price_outliers[pool]
        self.price_outliers.update(now)

    async def price_usd(self, symbol: str) -> float:
        """Latest pool-derived USD price of a token by symbol (for the simulated feeds).

        Raises ``StaleDataError`` while there is none (before the first pool refresh): a feed
        reading it goes stale instead of quoting a zero price.
        """
        for address, token in self.tokens.items():
            if token.symbol == symbol:
                if address not in self.last_prices:
                    self.last_prices = pool_prices_usd(self.registry.pools, self.tokens)
                price = self.last_prices.get(address, 0.0)
                if price > 0:
                    return price
        raise StaleDataError(f"no pool price for {symbol} yet")
