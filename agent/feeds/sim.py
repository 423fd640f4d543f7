"""Simulated CEX, sentiment and 1inch sources, driven by the devnet market, for the demo.

They present the same interfaces as the real feeds (:class:`agent.feeds.cex.CexSource`,
:class:`agent.feeds.oneinch.QuoteSource`, :class:`agent.feeds.sentiment.SentimentSource`), so
the engine polls them the same way and needs no credentials. The market comes in through
callables the engine gives them (no web3 object is held here):

* ``price_usd(symbol) -> float``: the devnet pool price of an on-chain token in USD;
* ``best_quote(src, dst, amount_in) -> int``: the best local quote (smallest units).

``SimCexClient``: mid = pool price x (1 + drift), the drift a seeded mean-reverting random walk
in bps (so DEX-CEX gaps open and close), a fixed spread and a synthetic book.
``SimOneInchClient``: the best local quote, optionally improved by a few bps (an aggregator
splitting routes). ``SimSentimentFeed``: synthetic posts whose tone follows recent price
momentum, scored by the real :class:`SentimentAggregator`, plus a synthetic CoinGecko vote.
Everything is seeded and reproducible; a failing callable marks readings stale like an outage.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Protocol

from agent.errors import FatalError, SwapRevert
from agent.feeds.cex import CEX_TO_ONCHAIN, CexTicker, OrderBook, cex_base_for
from agent.feeds.http import ReadingBook, Redactor, read_into
from agent.feeds.oneinch import OneInchQuote, OneInchSwap, QuotePair
from agent.feeds.sentiment import SentimentAggregator, TokenSentiment
from agent.feeds.x import Post
from agent.types import Reading

PriceUsd = Callable[[str], Awaitable[float]]
BestQuote = Callable[[str, str, int], Awaitable[int]]

_log = logging.getLogger("agent.feeds.sim")


class QuotingPool(Protocol):
    """A local pool the simulated aggregator routes through (``agent.dex`` V2 and V3 pools)."""

    @property
    def token0(self) -> str: ...

    @property
    def token1(self) -> str: ...

    def quote_exact_input(self, token_in: str, amount_in: int) -> int: ...


def best_pool_quote(pools: Callable[[], Iterable[QuotingPool]]) -> BestQuote:
    """The simulated aggregator's quote: the best single-pool exact-input quote among the
    pools of the pair (0 where no pool can fill it); ``pools`` is read at every call."""

    async def best_quote(src: str, dst: str, amount_in: int) -> int:
        best = 0
        for pool in pools():
            if {pool.token0, pool.token1} != {src, dst}:
                continue
            try:
                best = max(best, pool.quote_exact_input(src, amount_in))
            except SwapRevert:
                continue  # this pool cannot fill the amount (the router would revert)
        return best

    return best_quote


class SimCexClient:
    """A CEX whose mids wander around the devnet pool prices (same interface as CexClient)."""

    def __init__(
        self,
        exchange_id: str,
        symbols: Sequence[str],
        price_usd: PriceUsd,
        *,
        drift_sigma_bps: float = 8.0,
        drift_reversion: float = 0.2,
        max_drift_bps: float = 150.0,
        spread_bps: float = 2.0,
        depth_levels: int = 10,
        level_size_usd: float = 50_000.0,
        max_age_s: float = 15.0,
        seed: int = 11,
    ) -> None:
        self.exchange_id = exchange_id
        self.source = f"sim-cex:{exchange_id}"
        self.symbols = tuple(symbols)
        self._price_usd = price_usd
        self.drift_sigma_bps = drift_sigma_bps
        self.drift_reversion = drift_reversion
        self.max_drift_bps = max_drift_bps
        self.spread_bps = spread_bps
        self.depth_levels = depth_levels
        self.level_size_usd = level_size_usd
        self.tickers_book: ReadingBook[str, CexTicker] = ReadingBook(self.source, max_age_s)
        self.books_book: ReadingBook[str, OrderBook] = ReadingBook(self.source, max_age_s)
        self.drift_bps: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self._rng = random.Random(seed)
        self._redactor = Redactor()

    async def _mid(self, symbol: str) -> float:
        base, _, quote = symbol.partition("/")
        base_price = await self._price_usd(CEX_TO_ONCHAIN.get(base, base))
        quote_price = (
            1.0
            if quote in ("USD", "USDT", "USDC")
            else await self._price_usd(CEX_TO_ONCHAIN.get(quote, quote))
        )
        # Mean-reverting walk: pulled back toward the pool price, bounded.
        drift = self.drift_bps[symbol] * (1 - self.drift_reversion)
        drift += self._rng.gauss(0.0, self.drift_sigma_bps)
        drift = max(-self.max_drift_bps, min(self.max_drift_bps, drift))
        self.drift_bps[symbol] = drift
        return base_price / quote_price * (1 + drift / 10_000)

    async def _tick(self, symbol: str) -> CexTicker:
        mid = await self._mid(symbol)
        half = mid * self.spread_bps / 20_000
        return CexTicker(self.exchange_id, symbol, mid - half, mid + half, mid, None, None)

    async def poll(self, *, order_books: bool = True) -> None:
        """Move every symbol one step; a failing price callable makes readings stale."""
        for symbol in self.symbols:
            reading = await read_into(
                self.tickers_book, symbol, partial(self._tick, symbol), self._redactor, _log
            )
            if not order_books:
                continue
            if reading.error is None and reading.value is not None:
                self.books_book.ok(symbol, self._book(symbol, reading.value.mid))
            else:
                self.books_book.fail(symbol, reading.error or "no price")

    def _book(self, symbol: str, mid: float) -> OrderBook:
        half = mid * self.spread_bps / 20_000
        step = mid * 0.0005
        size = self.level_size_usd / mid
        return OrderBook(
            self.exchange_id,
            symbol,
            bids=tuple((mid - half - i * step, size * (1 + i)) for i in range(self.depth_levels)),
            asks=tuple((mid + half + i * step, size * (1 + i)) for i in range(self.depth_levels)),
        )

    def ticker(self, symbol: str) -> Reading[CexTicker] | None:
        return self.tickers_book.get(symbol)

    def order_book(self, symbol: str) -> Reading[OrderBook] | None:
        return self.books_book.get(symbol)

    async def close(self) -> None:
        """Nothing to release (same interface as the real client)."""


class SimOneInchClient:
    """Aggregator quotes from the best local route (same interface as OneInchClient)."""

    source = "sim-1inch"

    def __init__(
        self,
        best_quote: BestQuote,
        *,
        pairs: Sequence[QuotePair] = (),
        improvement_bps: int = 0,
        gas: int = 180_000,
        max_age_s: float = 30.0,
    ) -> None:
        self._best_quote = best_quote
        self.pairs = tuple(pairs)
        self.improvement_bps = improvement_bps
        self.gas = gas
        self.book: ReadingBook[QuotePair, OneInchQuote] = ReadingBook(self.source, max_age_s)
        self._redactor = Redactor()

    async def quote(self, src: str, dst: str, amount_in: int) -> OneInchQuote:
        """Best local output plus ``improvement_bps`` (integer math, rounded down)."""
        local = await self._best_quote(src, dst, amount_in)
        amount_out = local * (10_000 + self.improvement_bps) // 10_000
        return OneInchQuote(src, dst, amount_in, amount_out, self.gas)

    async def build_swap(self, *args: object, **kwargs: object) -> OneInchSwap:
        """The simulator has no 1inch router to call: execution uses local routes."""
        raise FatalError("sim-1inch cannot build swap transactions; route locally")

    async def poll(self) -> dict[QuotePair, Reading[OneInchQuote]]:
        results: dict[QuotePair, Reading[OneInchQuote]] = {}
        for pair in self.pairs:

            async def fetch(pair: QuotePair = pair) -> OneInchQuote:
                return await self.quote(pair.src, pair.dst, pair.amount_in)

            results[pair] = await read_into(self.book, pair, fetch, self._redactor, _log)
        return results

    def reading(self, pair: QuotePair) -> Reading[OneInchQuote] | None:
        return self.book.get(pair)


_BULLISH = ("{t} breakout, bullish", "{t} to the moon", "accumulating more {t}, wagmi")
_BEARISH = ("{t} dumping hard, bearish", "{t} getting rekt", "selling my {t}, looks like a rug")
_NEUTRAL = ("watching {t} today", "{t} chart update", "what is everyone doing with {t}")


class SimSentimentFeed:
    """Synthetic crowd whose tone follows price momentum (same interface as SentimentFeed)."""

    source = "sim-sentiment"

    def __init__(
        self,
        tokens: Sequence[str],
        price_usd: PriceUsd,
        *,
        momentum_window: int = 5,
        base_posts: int = 4,
        posts_per_pct: float = 6.0,
        aggregator: SentimentAggregator | None = None,
        max_age_s: float = 900.0,
        seed: int = 13,
    ) -> None:
        self.tokens = tuple(tokens)
        self._price_usd = price_usd
        self.base_posts = base_posts
        self.posts_per_pct = posts_per_pct
        self.aggregator = aggregator if aggregator is not None else SentimentAggregator(tokens)
        self.book: ReadingBook[str, TokenSentiment] = ReadingBook(self.source, max_age_s)
        self._prices: dict[str, deque[float]] = {
            t: deque(maxlen=max(2, momentum_window)) for t in self.tokens
        }
        self._rng = random.Random(seed)
        self._next_post_id = 1
        self._redactor = Redactor()

    def _posts(self, token: str, momentum_pct: float) -> list[Post]:
        count = self.base_posts + int(abs(momentum_pct) * self.posts_per_pct)
        count += self._rng.randint(0, 2)
        # Probability a post is bullish rises with momentum (logistic), bearish falls.
        p_bull = 1 / (1 + math.exp(-momentum_pct * 2))
        posts = []
        for _ in range(count):
            roll = self._rng.random()
            if roll < 0.25:
                template = self._rng.choice(_NEUTRAL)
            elif roll < 0.25 + 0.75 * p_bull:
                template = self._rng.choice(_BULLISH)
            else:
                template = self._rng.choice(_BEARISH)
            posts.append(
                Post(
                    post_id=self._next_post_id,
                    text=template.format(t=f"${cex_base_for(token)}"),
                    created_at=None,
                    likes=self._rng.randint(0, 200),
                    retweets=self._rng.randint(0, 40),
                    replies=self._rng.randint(0, 20),
                    quotes=self._rng.randint(0, 5),
                )
            )
            self._next_post_id += 1
        return posts

    async def poll(self) -> dict[str, Reading[TokenSentiment]]:
        results: dict[str, Reading[TokenSentiment]] = {}
        for token in self.tokens:

            async def fetch(token: str = token) -> TokenSentiment:
                price = await self._price_usd(token)
                history = self._prices[token]
                history.append(price)
                momentum_pct = (history[-1] / history[0] - 1) * 100 if history[0] else 0.0
                self.aggregator.add_posts(token, self._posts(token, momentum_pct))
                votes_up = 50 + 30 * math.tanh(momentum_pct)
                return self.aggregator.compute(token, votes_up)

            results[token] = await read_into(self.book, token, fetch, self._redactor, _log)
        return results

    def reading(self, token: str) -> Reading[TokenSentiment] | None:
        return self.book.get(token)
