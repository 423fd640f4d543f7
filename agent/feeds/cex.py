"""CEX prices through ccxt's async clients: tickers, order-book top and depth, spot only.

* One ccxt exchange object per configured exchange, built on the agent's shared aiohttp
  session (ccxt's ``session`` option; ccxt then never closes it).
* Tickers come from ``fetch_tickers(symbols)`` in one request when the exchange has it
  (``has['fetchTickers']``), otherwise ``fetch_ticker`` per symbol. Order books come from
  ``fetch_order_book(symbol, depth)``.
* Streaming: with ``use_websocket=True`` and the exchange in ``ccxt.pro``, :meth:`CexClient.watch`
  runs ``watch_ticker`` / ``watch_order_book`` loops (``client.use_websocket`` tells the engine
  which to run); otherwise, and by default, the engine polls :meth:`CexClient.poll` on a timer.
  Tests cover polling on Binance and Kraken and streaming on Binance (a dropped stream
  reconnects).
* Calls go through :class:`agent.feeds.http.SourceGuard` (rate limit, timeout, retries honouring
  Retry-After, breaker). ccxt's own throttle is off by default because the guard limits instead.
  Errors are classified from the HTTP status seen on the wire (recorded from ccxt's
  ``handle_errors`` hook) and ccxt's exception classes, never from message text.
* ccxt is untyped: everything it returns is ``Any`` and is validated into the frozen dataclasses
  below at this boundary. Prices and sizes are floats: CEX data values things and scores
  opportunities, it never sizes an on-chain amount directly.
* ``api_urls`` rewrites every ``urls['api']`` endpoint onto another origin (tests point it at a
  local fake; an operator could point it at a proxy).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from agent.errors import (
    AgentError,
    CexRejected,
    ConfigError,
    HttpStatusError,
    RateLimitedError,
    ResponseShapeError,
    ServerError,
)
from agent.feeds.http import (
    ReadingBook,
    RedactingLogger,
    Redactor,
    SourceGuard,
    SourcePolicy,
    describe_error,
    parse_retry_after,
    read_into,
)
from agent.types import Reading


@functools.cache
def _ccxt() -> tuple[Any, Any | None]:
    """``(ccxt.async_support, ccxt.pro or None)``, imported on first use: ccxt takes seconds
    and ~80 MB to import, which a run with simulated or no CEX feeds should not pay."""
    import ccxt.async_support as ccxt_async

    try:  # ccxt.pro ships inside ccxt >= 2; guard anyway so polling works without it.
        import ccxt.pro as ccxt_pro
    except ImportError:  # pragma: no cover - depends on the installed ccxt
        return ccxt_async, None
    return ccxt_async, ccxt_pro


# CEX asset -> on-chain token symbol. Wrapped assets trade as their native coin on CEXs.
CEX_TO_ONCHAIN: dict[str, str] = {
    "ETH": "WETH",
    "BTC": "WBTC",
    "XBT": "WBTC",
    "USDC": "USDC",
    "USDT": "USDT",
    "DAI": "DAI",
    "LINK": "LINK",
    "UNI": "UNI",
    "AAVE": "AAVE",
}
# Quote assets treated as one US dollar when valuing (a documented approximation).
USD_QUOTES = frozenset({"USD", "USDT", "USDC", "DAI"})

# Per-exchange options that keep market loading to the spot endpoints (and public ones).
SPOT_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchMargins": False,
        "fetchCurrencies": False,
        # The default miniTicker stream has no bid/ask; the full ticker stream has both.
        "watchTickers": {"name": "ticker"},
    },
    "binanceus": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
    "okx": {"fetchMarkets": ["spot"]},
    "bybit": {"fetchMarkets": ["spot"]},
}

DEFAULT_POLICY = SourcePolicy(rate_per_s=5.0, burst=5, timeout_s=10.0, max_age_s=15.0)


@dataclass(frozen=True, slots=True)
class CexTicker:
    """Best bid/ask and last trade of a spot market, in quote currency per base unit."""

    exchange: str
    symbol: str
    bid: float
    ask: float
    last: float | None
    base_volume_24h: float | None
    timestamp_ms: int | None

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> float:
        return (self.ask - self.bid) / self.mid * 10_000


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Top ``depth`` levels per side as (price, base amount), best first."""

    exchange: str
    symbol: str
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    timestamp_ms: int | None = None

    @property
    def best_bid(self) -> float:
        return self.bids[0][0]

    @property
    def best_ask(self) -> float:
        return self.asks[0][0]

    @property
    def mid(self) -> float:
        return (self.best_bid + self.best_ask) / 2

    def depth_quote(self, side: str, within_bps: float) -> float:
        """Quote-currency value resting on ``side`` ("bids"/"asks") within ``within_bps`` of mid."""
        levels = self.bids if side == "bids" else self.asks
        limit = self.mid * within_bps / 10_000
        return sum(p * q for p, q in levels if abs(p - self.mid) <= limit)

    def vwap(self, side: str, base_amount: float) -> float | None:
        """Average price to fill ``base_amount`` against ``side``; None if the book is too thin."""
        levels = self.asks if side == "asks" else self.bids
        remaining, cost = base_amount, 0.0
        for price, amount in levels:
            take = min(amount, remaining)
            cost += take * price
            remaining -= take
            if remaining <= 0:
                return cost / base_amount
        return None


def onchain_pair(cex_symbol: str) -> tuple[str, str] | None:
    """``"ETH/USDT"`` -> ``("WETH", "USDT")``; None when an asset has no on-chain mapping."""
    base, _, quote = cex_symbol.partition("/")
    quote = quote.split(":")[0]  # spot symbols have no settle part, but be tolerant
    if base not in CEX_TO_ONCHAIN or quote not in CEX_TO_ONCHAIN:
        return None
    return CEX_TO_ONCHAIN[base], CEX_TO_ONCHAIN[quote]


def cex_base_for(onchain_symbol: str) -> str:
    """``"WETH"`` -> ``"ETH"``: the asset a CEX lists for an on-chain token."""
    for cex_asset, token in CEX_TO_ONCHAIN.items():
        if token == onchain_symbol and cex_asset != "XBT":
            return cex_asset
    return onchain_symbol


def rewrite_api_urls(api_urls: Any, origin: str) -> Any:
    """Every URL in ccxt's ``urls['api']`` (a str or nested dict) moved onto ``origin``,
    keeping its path: ``https://api.binance.com/api/v3`` -> ``{origin}/api/v3``."""
    if isinstance(api_urls, str):
        parts = urlsplit(api_urls)
        if parts.scheme and parts.netloc:
            return origin.rstrip("/") + api_urls[len(f"{parts.scheme}://{parts.netloc}") :]
        return api_urls
    if isinstance(api_urls, dict):
        return {name: rewrite_api_urls(url, origin) for name, url in api_urls.items()}
    return api_urls


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _levels(raw: Any, depth: int) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list):
        raise ResponseShapeError("order book side is not a list")
    levels = []
    for level in raw[:depth]:
        price = _float(level[0]) if isinstance(level, list | tuple) and level else None
        amount = _float(level[1]) if isinstance(level, list | tuple) and len(level) > 1 else None
        if price is None or amount is None:
            raise ResponseShapeError("order book level lacks price or amount")
        levels.append((price, amount))
    return tuple(levels)


class CexClient:
    """One exchange: markets, tickers and order books for configured spot symbols."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        exchange_id: str,
        symbols: Sequence[str],
        *,
        api_key: str | None = None,
        secret: str | None = None,
        api_urls: str | None = None,
        policy: SourcePolicy = DEFAULT_POLICY,
        order_book_depth: int = 20,
        use_websocket: bool = False,
        ccxt_rate_limit: bool = False,
        batch_tickers: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        ccxt_async, ccxt_pro = _ccxt()
        module: Any = ccxt_async
        if use_websocket and ccxt_pro is not None and exchange_id in ccxt_pro.exchanges:
            module = ccxt_pro
        if not hasattr(module, exchange_id):
            raise ConfigError(f"feeds.cex.exchanges: unknown ccxt exchange {exchange_id!r}")
        self.exchange_id = exchange_id
        self.source = f"cex:{exchange_id}"
        self.symbols = tuple(symbols)
        self.order_book_depth = order_book_depth
        # False forces one fetch_ticker per symbol (the baseline the benchmark compares with).
        self.batch_tickers = batch_tickers
        self.redactor = Redactor([s for s in (api_key, secret) if s])
        self.log = (
            logger if logger is not None else logging.getLogger(f"agent.feeds.cex.{exchange_id}")
        )
        config: dict[str, Any] = {
            "session": session,
            "enableRateLimit": ccxt_rate_limit,
            "timeout": int(policy.timeout_s * 1000),
            "logger": RedactingLogger(
                logging.getLogger(f"agent.feeds.cex.ccxt.{exchange_id}"), self.redactor
            ),
            "options": {"defaultType": "spot", **SPOT_ONLY_OPTIONS.get(exchange_id, {})},
        }
        if api_key:
            config["apiKey"] = api_key
        if secret:
            config["secret"] = secret
        self.exchange: Any = getattr(module, exchange_id)(config)
        if api_urls:
            self.exchange.urls["api"] = rewrite_api_urls(self.exchange.urls["api"], api_urls)
        self.use_websocket = use_websocket and module is ccxt_pro
        self.guard = SourceGuard(self.source, policy, self.redactor, logger=self.log)
        self.tickers_book: ReadingBook[str, CexTicker] = ReadingBook(self.source, policy.max_age_s)
        self.books_book: ReadingBook[str, OrderBook] = ReadingBook(self.source, policy.max_age_s)
        self._last_status: int | None = None
        self._markets_loaded = False
        # Record the HTTP status of every response: ccxt calls handle_errors(code, ...) first.
        original_handle_errors = self.exchange.handle_errors

        def recording_handle_errors(code: Any, *args: Any) -> Any:
            self._last_status = code if isinstance(code, int) else None
            return original_handle_errors(code, *args)

        self.exchange.handle_errors = recording_handle_errors

    # -- guarded calls ---------------------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        async def attempt() -> Any:
            self._last_status = None
            self.exchange.last_http_response = None
            try:
                result = await fn()
            except AgentError:
                raise
            except Exception as exc:
                raise self._classify(exc, what) from None
            if self._body_is_malformed():
                raise ServerError(f"{self.source}: {what} returned malformed JSON")
            return result

        return await self.guard.call(attempt, what)

    def _body_is_malformed(self) -> bool:
        body = self.exchange.last_http_response
        if not isinstance(body, str) or not body.strip():
            return False
        try:
            json.loads(body)
        except ValueError:
            return True
        return False

    def _classify(self, exc: Exception, what: str) -> AgentError:
        ccxt_async, _ = _ccxt()
        status = self._last_status
        headers: Mapping[str, str] = self.exchange.last_response_headers or {}
        label = f"{self.source}: {what}"
        if status in (418, 429) or isinstance(
            exc, ccxt_async.RateLimitExceeded | ccxt_async.DDoSProtection
        ):
            retry_after = parse_retry_after(_header(headers, "Retry-After"))
            return RateLimitedError(f"{label} -> rate limited (HTTP {status})", retry_after)
        if status is not None and status >= 500:
            retry_after = parse_retry_after(_header(headers, "Retry-After"))
            return ServerError(f"{label} -> HTTP {status}", retry_after if status == 503 else None)
        if status is not None and status >= 400:
            return HttpStatusError(f"{label} -> HTTP {status}", status)
        if self._body_is_malformed():
            return ServerError(f"{label} returned malformed JSON")
        if isinstance(exc, ccxt_async.RequestTimeout):
            return ServerError(f"{label} timed out")
        if isinstance(exc, ccxt_async.NetworkError | ccxt_async.BadResponse):
            return ServerError(f"{label} failed: {type(exc).__name__}")
        detail = self.redactor.redact(str(exc))[:200]
        if isinstance(exc, ccxt_async.BaseError):
            return CexRejected(f"{label} rejected: {type(exc).__name__}: {detail}")
        return ResponseShapeError(f"{label}: unexpected response ({type(exc).__name__}: {detail})")

    # -- API ---------------------------------------------------------------------------------------

    async def load_markets(self) -> None:
        """Load markets once; configured symbols must be spot markets of this exchange."""
        if self._markets_loaded:
            return
        markets = await self._call("load_markets", self.exchange.load_markets)
        if not isinstance(markets, dict):
            raise ResponseShapeError(f"{self.source}: load_markets returned no markets")
        for symbol in self.symbols:
            market = markets.get(symbol)
            if not isinstance(market, dict) or not market.get("spot", False):
                raise ConfigError(
                    f"feeds.cex.{self.exchange_id}.symbols: {symbol!r} is not a spot market"
                )
        self._markets_loaded = True

    async def fetch_tickers(self, symbols: Sequence[str] | None = None) -> dict[str, CexTicker]:
        """Tickers of ``symbols`` (default: configured) in one request when supported."""
        await self.load_markets()
        wanted = list(symbols if symbols is not None else self.symbols)
        if self.batch_tickers and self.exchange.has.get("fetchTickers"):
            raw = await self._call("fetch_tickers", lambda: self.exchange.fetch_tickers(wanted))
            if not isinstance(raw, dict):
                raise ResponseShapeError(f"{self.source}: fetch_tickers returned no object")
        else:
            raw = {}
            for symbol in wanted:
                raw[symbol] = await self._call(
                    f"fetch_ticker {symbol}",
                    lambda symbol=symbol: self.exchange.fetch_ticker(symbol),  # type: ignore[misc]
                )
        return {s: self._ticker(s, raw.get(s)) for s in wanted if s in raw}

    def _ticker(self, symbol: str, raw: Any) -> CexTicker:
        if not isinstance(raw, dict):
            raise ResponseShapeError(f"{self.source}: no ticker for {symbol}")
        bid, ask = _float(raw.get("bid")), _float(raw.get("ask"))
        if bid is None or ask is None or bid <= 0 or ask < bid:
            raise ResponseShapeError(f"{self.source}: ticker {symbol} lacks a valid bid/ask")
        timestamp = raw.get("timestamp")
        return CexTicker(
            exchange=self.exchange_id,
            symbol=symbol,
            bid=bid,
            ask=ask,
            last=_float(raw.get("last")),
            base_volume_24h=_float(raw.get("baseVolume")),
            timestamp_ms=int(timestamp) if isinstance(timestamp, int | float) else None,
        )

    async def fetch_order_book(self, symbol: str, depth: int | None = None) -> OrderBook:
        """Top ``depth`` levels (default: configured) of ``symbol``."""
        await self.load_markets()
        limit = depth or self.order_book_depth
        raw = await self._call(
            f"fetch_order_book {symbol}", lambda: self.exchange.fetch_order_book(symbol, limit)
        )
        return self._order_book(symbol, raw, limit)

    def _order_book(self, symbol: str, raw: Any, depth: int) -> OrderBook:
        if not isinstance(raw, dict):
            raise ResponseShapeError(f"{self.source}: no order book for {symbol}")
        bids, asks = _levels(raw.get("bids"), depth), _levels(raw.get("asks"), depth)
        if not bids or not asks:
            raise ResponseShapeError(f"{self.source}: order book {symbol} has an empty side")
        timestamp = raw.get("timestamp")
        return OrderBook(
            exchange=self.exchange_id,
            symbol=symbol,
            bids=bids,
            asks=asks,
            timestamp_ms=int(timestamp) if isinstance(timestamp, int | float) else None,
        )

    async def poll(self, *, order_books: bool = True) -> None:
        """One polling cycle: all tickers (batched), then each order book. Never raises.

        Calls to one exchange run one after another: its rate limit is per exchange anyway.
        """
        try:
            tickers = await self.fetch_tickers()
        except Exception as exc:
            error = describe_error(exc, self.redactor)
            self._log_failure("tickers", exc, error)
            for symbol in self.symbols:
                self.tickers_book.fail(symbol, error)
                if order_books:
                    self.books_book.fail(symbol, error)
            return
        for symbol in self.symbols:
            if symbol in tickers:
                self.tickers_book.ok(symbol, tickers[symbol])
            else:
                self.tickers_book.fail(symbol, f"ResponseShapeError: no valid ticker for {symbol}")
        if order_books:
            for symbol in self.symbols:

                async def fetch(symbol: str = symbol) -> OrderBook:
                    return await self.fetch_order_book(symbol)

                await read_into(self.books_book, symbol, fetch, self.redactor, self.log)

    def _log_failure(self, what: str, exc: Exception, error: str) -> None:
        if isinstance(exc, AgentError):
            self.log.warning("%s: %s stale: %s", self.source, what, error)
        else:
            self.log.error(
                "%s: %s crashed\n%s", self.source, what, self.redactor.format_exception(exc)
            )

    async def watch(self) -> None:
        """Stream tickers and books over websockets until cancelled (``use_websocket`` only).

        Each symbol gets its own loop; a failed watch marks the symbol stale and retries after
        a backoff (ccxt reconnects the stream on the next watch call). When the markets cannot
        be loaded, every symbol is marked stale with the error and the error is raised: the
        engine restarts this watch with backoff.
        """
        if not self.use_websocket:
            raise ConfigError(f"feeds.cex.{self.exchange_id}: websocket streaming not available")
        try:
            await self._call("load_markets", self.exchange.load_markets)
        except Exception as exc:
            error = describe_error(exc, self.redactor)
            for symbol in self.symbols:
                self.tickers_book.fail(symbol, error)
                self.books_book.fail(symbol, error)
            raise
        async with asyncio.TaskGroup() as group:
            for symbol in self.symbols:
                group.create_task(self._watch_loop(symbol, ticker=True))
                group.create_task(self._watch_loop(symbol, ticker=False))

    async def _watch_loop(self, symbol: str, *, ticker: bool) -> None:
        backoff_s = self.guard.policy.backoff_initial_s
        while True:
            try:
                if ticker:
                    raw = await self.exchange.watch_ticker(symbol)
                    self.tickers_book.ok(symbol, self._ticker(symbol, raw))
                else:
                    raw = await self.exchange.watch_order_book(symbol, self.order_book_depth)
                    self.books_book.ok(symbol, self._order_book(symbol, raw, self.order_book_depth))
                backoff_s = self.guard.policy.backoff_initial_s
            except Exception as exc:
                error = describe_error(exc, self.redactor)
                (self.tickers_book if ticker else self.books_book).fail(symbol, error)
                self.log.warning("%s: watch %s failed: %s", self.source, symbol, error)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.guard.policy.backoff_max_s)

    def ticker(self, symbol: str) -> Reading[CexTicker] | None:
        return self.tickers_book.get(symbol)

    def order_book(self, symbol: str) -> Reading[OrderBook] | None:
        return self.books_book.get(symbol)

    async def close(self) -> None:
        """Release ccxt's resources; the shared session stays open (ccxt doesn't own it)."""
        await self.exchange.close()


class CexSource(Protocol):
    """What the engine uses of a CEX client; :class:`CexClient` and ``sim.SimCexClient``."""

    exchange_id: str
    source: str
    symbols: tuple[str, ...]
    tickers_book: ReadingBook[str, CexTicker]
    books_book: ReadingBook[str, OrderBook]

    async def poll(self, *, order_books: bool = True) -> None: ...

    def ticker(self, symbol: str) -> Reading[CexTicker] | None: ...

    def order_book(self, symbol: str) -> Reading[OrderBook] | None: ...

    async def close(self) -> None: ...


@dataclass
class CexFeed:
    """Several exchanges polled together; cross-exchange views for strategies."""

    clients: list[CexSource] = field(default_factory=list)

    async def poll(self, *, order_books: bool = True) -> None:
        """One cycle on every exchange concurrently (each exchange sequential inside)."""
        await asyncio.gather(*(c.poll(order_books=order_books) for c in self.clients))

    def tickers(self) -> dict[tuple[str, str], Reading[CexTicker]]:
        """Every ticker reading keyed by (exchange, symbol)."""
        return {
            (c.exchange_id, symbol): reading
            for c in self.clients
            for symbol, reading in c.tickers_book.snapshot().items()
        }

    def mid_usd(self, onchain_symbol: str, now: float | None = None) -> float | None:
        """Median fresh mid across exchanges of ``onchain_symbol`` against a USD-like quote
        (``"WETH"`` -> ETH/USDT, ETH/USD, ...); None when no fresh ticker exists."""
        mids = []
        for (_, symbol), reading in self.tickers().items():
            base, _, quote = symbol.partition("/")
            if (
                reading.value is not None
                and not reading.is_stale(now)
                and CEX_TO_ONCHAIN.get(base) == onchain_symbol
                and quote in USD_QUOTES
            ):
                mids.append(reading.value.mid)
        return median(mids) if mids else None

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def spot_symbols(symbols: Iterable[str]) -> list[str]:
    """Drop derivative symbols (``BASE/QUOTE:SETTLE``) from a configured list."""
    return [s for s in symbols if ":" not in s]
