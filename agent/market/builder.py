"""Builds the per-block ``MarketSnapshot`` from the pool registry, the gas oracle and the feeds.

USD prices come from the pools themselves (each token's deepest pool against a USD stablecoin,
or through WETH), so valuation needs no outside service; a fresh CoinGecko price, when that
feed is on, takes precedence. Feed clients keep their own readings (``Reading`` with source,
age and error); ``FeedBoard`` only translates them into the snapshot's types, so a stale
reading stays visibly stale and strategies decide what to do with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.dex.pools import PoolRegistry
from agent.dex.v2 import V2Pool
from agent.errors import StaleDataError
from agent.market.snapshot import (
    AggregatorQuote,
    CexQuote,
    MarketSnapshot,
    Pool,
    SentimentScore,
)
from agent.types import GasPrice, Reading, Token, WhaleTrade

_Q96 = float(2**96)
USD_STABLES = ("USDC", "USDT", "DAI")


class GasSource(Protocol):
    async def poll(self) -> Reading[GasPrice]: ...


class WhaleSource(Protocol):
    async def scan(self, from_block: int, to_block: int | None = None) -> list[WhaleTrade]: ...


def mid_price(pool: Pool, base: str) -> tuple[float, int]:
    """(price of ``base`` in the other token, both in raw units; depth of the other side).

    Fee-less mid from reserves (V2) or the sqrt price (V3); depth is the other token's reserve
    (V2) or the active liquidity (V3), only used to pick the deepest pool.
    """
    if isinstance(pool, V2Pool):
        if base == pool.token0:
            return (pool.reserve1 / pool.reserve0 if pool.reserve0 else 0.0), pool.reserve1
        return (pool.reserve0 / pool.reserve1 if pool.reserve1 else 0.0), pool.reserve0
    price1_per_0 = (pool.sqrt_price_x96 / _Q96) ** 2
    if base == pool.token0:
        return price1_per_0, pool.liquidity
    return (1 / price1_per_0 if price1_per_0 else 0.0), pool.liquidity


def pool_prices_usd(
    pools: Mapping[str, Pool],
    tokens: Mapping[str, Token],
    stale: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """USD per whole token for every token reachable from a stablecoin (stables count as 1)."""
    prices = {a: 1.0 for a, t in tokens.items() if t.symbol in USD_STABLES}
    for _ in range(2):  # direct stable pools first, then one hop through priced tokens (WETH)
        best: dict[str, tuple[float, float]] = {}
        for address, pool in pools.items():
            if address in stale:
                continue
            for base, quote in ((pool.token0, pool.token1), (pool.token1, pool.token0)):
                if base in prices or quote not in prices or base not in tokens:
                    continue
                raw, depth = mid_price(pool, base)
                if raw <= 0 or quote not in tokens:
                    continue
                scale = 10.0 ** (tokens[base].decimals - tokens[quote].decimals)
                value = raw * scale * prices[quote]
                depth_usd = depth / 10.0 ** tokens[quote].decimals * prices[quote]
                if base not in best or depth_usd > best[base][1]:
                    best[base] = (value, depth_usd)
        prices.update({token: value for token, (value, _) in best.items()})
    return prices


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
    """The engine's ``SnapshotSource``: refresh pools, read gas and whales, assemble a snapshot."""

    def __init__(
        self,
        *,
        chain_id: int,
        registry: PoolRegistry,
        tokens: Mapping[str, Token],
        native_token: str,
        gas: GasSource | None = None,
        whales: WhaleSource | None = None,
        feeds: FeedBoard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain_id = chain_id
        self.registry = registry
        self.tokens = dict(tokens)
        self.native_token = native_token
        self.gas = gas
        self.whales = whales
        self.feeds = feeds or FeedBoard()
        self.clock = clock
        self.last_gas: GasPrice | None = None
        self.last_prices: dict[str, float] = {}
        self.rpc_s = 0.0
        # set by the wiring when the executor can build aggregator swaps (a real 1inch client)
        self.aggregator_executable = False

    async def snapshot(self, block: int) -> MarketSnapshot:
        started = time.perf_counter()
        await self.registry.refresh(block)
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
        prices = pool_prices_usd(pools, self.tokens, stale)
        prices.update(self.feeds.external_prices_usd())
        self.last_prices = prices
        return MarketSnapshot(
            block=block,
            timestamp=self.clock(),
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
        )

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


def token_map(tokens: Iterable[Token]) -> dict[str, Token]:
    return {t.address: t for t in tokens}
