"""Local aiohttp fake servers for the external HTTP services the feeds call.

Each fake serves the documented response shape of the real API, records every request it was
asked (path, query, headers, monotonic and wall-clock arrival time) and can be scripted to fail
in the ways real services fail: 429 with Retry-After, 5xx, a response slower than the client's
timeout, a body that is not JSON, a payload with a field missing.

These are spies, not second implementations: prices and quotes come from plain dicts the test
sets, never from any pricing logic.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Payload = Any
Handler = Callable[[web.Request], Awaitable[Payload]]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at_monotonic: float
    at_wall: float


@dataclass
class Fault:
    """One scripted failure, consumed by the next request whose path starts with ``path``.

    kind: "429" | "503" | "500" | "timeout" | "malformed" | "missing_field" | "status" |
    "redirect" (``status`` and ``headers={"Location": ...}``)
    """

    kind: str
    path: str = ""
    retry_after: str | None = None
    delay_s: float = 0.0
    drop: tuple[str, ...] = ()
    status: int = 500
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeServer:
    """An aiohttp app on 127.0.0.1 (random port) with request recording and scripted faults."""

    name: str = "fake"
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # Extra latency on every response, to make benchmark cycles look like a network.
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self._prefix_routes: list[tuple[str, Handler]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- set-up -----------------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        """Serve ``handler`` at exactly ``path``; a path ending in ``/*`` matches a prefix."""
        if path.endswith("/*"):
            self._prefix_routes.append((path[:-1], handler))
        else:
            self._routes[path] = handler

    def fail(self, kind: str, *, path: str = "", times: int = 1, **kwargs: Any) -> Fault:
        """Script the next ``times`` matching requests to fail as ``kind``."""
        fault = Fault(kind=kind, path=path, times=times, **kwargs)
        self.faults.append(fault)
        return fault

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()

    async def start(self) -> FakeServer:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- serving ----------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if path.startswith(fault.path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                at_monotonic=time.monotonic(),
                at_wall=time.time(),
            )
        )
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        fault = self._take_fault(request.path)
        if fault is None:
            return await handler(request)
        if fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            headers.update(fault.headers)
            return web.json_response({"error": "rate limited"}, status=429, headers=headers)
        if fault.kind == "503":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.Response(text="unavailable", status=503, headers=headers)
        if fault.kind == "500":
            return web.json_response({"error": "internal"}, status=500)
        if fault.kind == "status":
            return web.json_response({"error": "bad request"}, status=fault.status)
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s or 5.0)
            return await handler(request)
        if fault.kind == "redirect":  # to headers["Location"], with status (301/302/307/308)
            return web.Response(status=fault.status, headers=fault.headers)
        if fault.kind == "malformed":
            return web.Response(text='{"truncated": ', content_type="application/json")
        if fault.kind == "missing_field":
            response = await handler(request)
            assert isinstance(response, web.Response) and response.text is not None
            payload = json.loads(response.text)
            for dotted in fault.drop:
                _drop(payload, dotted.split("."))
            return web.json_response(payload)
        raise AssertionError(f"unknown fault kind {fault.kind}")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self._routes.get(request.path)
        if handler is None:
            for prefix, candidate in self._prefix_routes:
                if request.path.startswith(prefix):
                    handler = candidate
                    break
        if handler is None:
            return web.json_response({"error": f"no route {request.path}"}, status=404)
        payload = await handler(request)
        if isinstance(payload, web.StreamResponse):
            return payload
        return web.json_response(payload)


def _drop(payload: Any, path: list[str]) -> None:
    """Remove ``path`` from ``payload``; ``*`` walks every element of a list or dict."""
    head, rest = path[0], path[1:]
    if head == "*":
        children = payload.values() if isinstance(payload, dict) else payload
        for child in list(children):
            if rest:
                _drop(child, rest)
        return
    if not rest:
        if isinstance(payload, dict):
            payload.pop(head, None)
        return
    if isinstance(payload, dict) and head in payload:
        _drop(payload[head], rest)
    elif isinstance(payload, list) and head.isdigit() and int(head) < len(payload):
        _drop(payload[int(head)], rest)


def http_date_in(seconds: float) -> tuple[str, float]:
    """An HTTP-date ``seconds`` from now (whole seconds, rounded up) and its epoch time."""
    epoch = math.ceil(time.time() + seconds)
    return email.utils.formatdate(epoch, usegmt=True), float(epoch)


# --------------------------------------------------------------------------------------------
# 1inch Swap API v6.0: /swap/v6.0/{chain}/quote and /swap/v6.0/{chain}/swap


@dataclass
class OneInchFake:
    """Quotes are ``amount * rate_num // rate_den`` per (src, dst) pair, set by the test."""

    server: FakeServer = field(default_factory=lambda: FakeServer("1inch"))
    chain_id: int = 1
    rates: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    router: str = "0x111111125421cA6dc452d289314280a0f8842A65"
    gas: int = 180_000

    def __post_init__(self) -> None:
        base = f"/swap/v6.0/{self.chain_id}"
        self.server.route(f"{base}/quote", self._quote)
        self.server.route(f"{base}/swap", self._swap)

    def _dst_amount(self, request: web.Request) -> tuple[str, str, int]:
        src = request.query["src"].lower()
        dst = request.query["dst"].lower()
        num, den = self.rates[(src, dst)]
        return src, dst, int(request.query["amount"]) * num // den

    async def _quote(self, request: web.Request) -> Payload:
        if "Authorization" not in request.headers:
            return web.json_response({"statusCode": 401, "description": "Unauthorized"}, status=401)
        _, _, dst_amount = self._dst_amount(request)
        payload: dict[str, Any] = {"dstAmount": str(dst_amount)}
        if request.query.get("includeGas") == "true":
            payload["gas"] = self.gas
        return payload

    async def _swap(self, request: web.Request) -> Payload:
        if "Authorization" not in request.headers:
            return web.json_response({"statusCode": 401, "description": "Unauthorized"}, status=401)
        _, _, dst_amount = self._dst_amount(request)
        return {
            "dstAmount": str(dst_amount),
            "tx": {
                "from": request.query["from"],
                "to": self.router,
                "data": "0x07ed2379" + "00" * 64,
                "value": "0",
                "gas": self.gas,
                "gasPrice": "20000000000",
            },
        }


# --------------------------------------------------------------------------------------------
# CoinGecko v3: /api/v3/simple/price, /api/v3/coins/{id}


@dataclass
class CoinGeckoFake:
    server: FakeServer = field(default_factory=lambda: FakeServer("coingecko"))
    prices_usd: dict[str, float] = field(default_factory=dict)
    votes_up_pct: dict[str, float] = field(default_factory=dict)
    prefix: str = "/api/v3"

    def __post_init__(self) -> None:
        self.server.route(f"{self.prefix}/simple/price", self._simple_price)
        self.server.route(f"{self.prefix}/coins/*", self._coin)

    async def _simple_price(self, request: web.Request) -> Payload:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        currencies = request.query.get("vs_currencies", "usd").split(",")
        return {
            coin: {cur: self.prices_usd[coin] for cur in currencies if cur == "usd"}
            for coin in ids
            if coin in self.prices_usd
        }

    async def _coin(self, request: web.Request) -> Payload:
        coin = request.path.rsplit("/", 1)[-1]
        if coin not in self.prices_usd:
            return web.json_response({"error": "coin not found"}, status=404)
        up = self.votes_up_pct.get(coin, 50.0)
        price = self.prices_usd[coin]
        return {
            "id": coin,
            "symbol": coin[:3],
            "name": coin.title(),
            "sentiment_votes_up_percentage": up,
            "sentiment_votes_down_percentage": round(100.0 - up, 2),
            "market_cap_rank": 2,
            "community_data": {"twitter_followers": 1000, "reddit_subscribers": 500},
            "market_data": {
                "current_price": {"usd": price},
                "market_cap": {"usd": price * 1_000_000},
                "total_volume": {"usd": price * 10_000},
                "price_change_percentage_24h": -1.5,
                "last_updated": "2026-11-21T08:00:00.000Z",
            },
            "last_updated": "2026-11-21T08:00:00.000Z",
        }


# --------------------------------------------------------------------------------------------
# X API v2: /2/tweets/search/recent


@dataclass
class XFake:
    """Posts per query string; pages of ``page_size`` with ``meta.next_token``."""

    server: FakeServer = field(default_factory=lambda: FakeServer("x"))
    posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 2

    def __post_init__(self) -> None:
        self.server.route("/2/tweets/search/recent", self._search)

    async def _search(self, request: web.Request) -> Payload:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        posts = self.posts.get(request.query["query"], [])
        since_id = request.query.get("since_id")
        if since_id is not None:
            posts = [p for p in posts if int(p["id"]) > int(since_id)]
        start = int(request.query.get("next_token") or 0)
        page = posts[start : start + self.page_size]
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta["newest_id"] = max(page, key=lambda p: int(p["id"]))["id"]
            meta["oldest_id"] = min(page, key=lambda p: int(p["id"]))["id"]
        if start + self.page_size < len(posts):
            meta["next_token"] = str(start + self.page_size)
        payload: dict[str, Any] = {"meta": meta}
        if page:
            payload["data"] = page
        return payload


def x_post(
    post_id: int,
    text: str,
    *,
    likes: int = 0,
    retweets: int = 0,
    replies: int = 0,
    quotes: int = 0,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A post in the shape X returns with ``tweet.fields=public_metrics,created_at``;
    posted just now unless ``created_at`` says otherwise (a fixed date ages out of the
    sentiment window)."""
    if created_at is None:
        now = time.gmtime()
        created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", now)
    return {
        "id": str(post_id),
        "text": text,
        "edit_history_tweet_ids": [str(post_id)],
        "created_at": created_at,
        "public_metrics": {
            "retweet_count": retweets,
            "reply_count": replies,
            "like_count": likes,
            "quote_count": quotes,
            "bookmark_count": 0,
            "impression_count": likes * 20,
        },
    }


# --------------------------------------------------------------------------------------------
# CEX fakes for ccxt: Binance spot (/api/v3/...) and Kraken (/0/public/...)


@dataclass
class Book:
    """Order book levels as (price, amount) floats; best first."""

    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


def simple_book(mid: float, spread_bps: float = 2.0, levels: int = 5, size: float = 1.0) -> Book:
    half = mid * spread_bps / 20_000
    step = mid * 0.0005
    return Book(
        bids=[(round(mid - half - i * step, 2), size * (i + 1)) for i in range(levels)],
        asks=[(round(mid + half + i * step, 2), size * (i + 1)) for i in range(levels)],
    )


@dataclass
class BinanceFake:
    """Binance spot REST (exchangeInfo, ticker/24hr one or many, depth) and the spot market
    streams websocket (``SUBSCRIBE`` to ``<id>@ticker`` / ``<id>@depth@100ms``)."""

    server: FakeServer = field(default_factory=lambda: FakeServer("binance"))
    books: dict[str, Book] = field(default_factory=dict)  # market id "ETHUSDT" -> book
    bases: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (base, quote)
    ws_interval_s: float = 0.05
    ws_connections: int = 0
    ws_subscriptions: list[str] = field(default_factory=list)
    # Close the next N websocket connections right after they subscribe (a dropped stream).
    ws_drop_after_subscribe: int = 0
    _depth_seq: int = 1_027_024

    def __post_init__(self) -> None:
        self.server.route("/api/v3/exchangeInfo", self._exchange_info)
        self.server.route("/api/v3/ticker/24hr", self._ticker_24hr)
        self.server.route("/api/v3/depth", self._depth)
        self.server.route("/ws/*", self._ws)

    async def _ws(self, request: web.Request) -> Payload:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connections += 1
        streams: list[str] = []
        while not ws.closed:
            try:
                message = await ws.receive(timeout=self.ws_interval_s)
            except TimeoutError:
                message = None
            if message is not None:
                if message.type != web.WSMsgType.TEXT:
                    break
                command = json.loads(message.data)
                if command.get("method") == "SUBSCRIBE":
                    streams += command["params"]
                    self.ws_subscriptions += command["params"]
                    await ws.send_json({"result": None, "id": command.get("id")})
                    if self.ws_drop_after_subscribe > 0:
                        self.ws_drop_after_subscribe -= 1
                        await ws.close()
                        break
            for stream in streams:
                await ws.send_json(self._ws_event(stream))
        return ws

    def _ws_event(self, stream: str) -> dict[str, Any]:
        market_id = stream.split("@")[0].upper()
        book = self.books[market_id]
        now_ms = int(time.time() * 1000)
        if stream.endswith("@ticker"):
            ticker = self._ticker(market_id)
            return {
                "e": "24hrTicker",
                "E": now_ms,
                "s": market_id,
                "p": ticker["priceChange"],
                "P": ticker["priceChangePercent"],
                "w": ticker["weightedAvgPrice"],
                "x": ticker["prevClosePrice"],
                "c": ticker["lastPrice"],
                "Q": ticker["lastQty"],
                "b": ticker["bidPrice"],
                "B": ticker["bidQty"],
                "a": ticker["askPrice"],
                "A": ticker["askQty"],
                "o": ticker["openPrice"],
                "h": ticker["highPrice"],
                "l": ticker["lowPrice"],
                "v": ticker["volume"],
                "q": ticker["quoteVolume"],
                "O": ticker["openTime"],
                "C": ticker["closeTime"],
                "F": 1,
                "L": 1000,
                "n": 1000,
            }
        # Diff depth: re-state the top level of each side (amounts unchanged), in sequence.
        first, self._depth_seq = self._depth_seq + 1, self._depth_seq + 1
        return {
            "e": "depthUpdate",
            "E": now_ms,
            "s": market_id,
            "U": first,
            "u": self._depth_seq,
            "b": [[f"{book.bids[0][0]:.2f}", f"{book.bids[0][1]:.8f}"]],
            "a": [[f"{book.asks[0][0]:.2f}", f"{book.asks[0][1]:.8f}"]],
        }

    def add_market(self, base: str, quote: str, mid: float) -> None:
        market_id = f"{base}{quote}"
        self.bases[market_id] = (base, quote)
        self.books[market_id] = simple_book(mid)

    async def _exchange_info(self, request: web.Request) -> Payload:
        symbols = []
        for market_id, (base, quote) in self.bases.items():
            symbols.append(
                {
                    "symbol": market_id,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.01000000",
                            "maxPrice": "1000000.00000000",
                            "tickSize": "0.01000000",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00010000",
                            "maxQty": "9000.00000000",
                            "stepSize": "0.00010000",
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _ticker(self, market_id: str) -> dict[str, Any]:
        book = self.books[market_id]
        bid, ask = book.bids[0], book.asks[0]
        last = (bid[0] + ask[0]) / 2
        now_ms = int(time.time() * 1000)
        return {
            "symbol": market_id,
            "priceChange": "0.00",
            "priceChangePercent": "0.000",
            "weightedAvgPrice": f"{last:.2f}",
            "prevClosePrice": f"{last:.2f}",
            "lastPrice": f"{last:.2f}",
            "lastQty": "0.1000",
            "bidPrice": f"{bid[0]:.2f}",
            "bidQty": f"{bid[1]:.4f}",
            "askPrice": f"{ask[0]:.2f}",
            "askQty": f"{ask[1]:.4f}",
            "openPrice": f"{last:.2f}",
            "highPrice": f"{last * 1.01:.2f}",
            "lowPrice": f"{last * 0.99:.2f}",
            "volume": "1000.0000",
            "quoteVolume": f"{last * 1000:.2f}",
            "openTime": now_ms - 86_400_000,
            "closeTime": now_ms,
            "firstId": 1,
            "lastId": 1000,
            "count": 1000,
        }

    async def _ticker_24hr(self, request: web.Request) -> Payload:
        if "symbol" in request.query:
            return self._ticker(request.query["symbol"])
        wanted = json.loads(request.query["symbols"]) if "symbols" in request.query else None
        ids = wanted if wanted is not None else list(self.books)
        return [self._ticker(i) for i in ids if i in self.books]

    async def _depth(self, request: web.Request) -> Payload:
        market_id = request.query["symbol"]
        limit = int(request.query.get("limit", 100))
        book = self.books[market_id]
        return {
            # The snapshot is as of the last streamed diff, so the next diff continues it.
            "lastUpdateId": self._depth_seq,
            "bids": [[f"{p:.2f}", f"{q:.8f}"] for p, q in book.bids[:limit]],
            "asks": [[f"{p:.2f}", f"{q:.8f}"] for p, q in book.asks[:limit]],
        }


# Kraken names some assets with legacy X/Z prefixes; ccxt maps them back (XXBT -> BTC).
KRAKEN_ASSET = {"BTC": "XXBT", "ETH": "XETH", "USD": "ZUSD", "EUR": "ZEUR", "USDT": "USDT"}
KRAKEN_ALTNAME = {"BTC": "XBT"}


@dataclass
class KrakenFake:
    """Kraken REST: /0/public/Assets, AssetPairs, Ticker (many pairs), Depth."""

    server: FakeServer = field(default_factory=lambda: FakeServer("kraken"))
    books: dict[str, Book] = field(default_factory=dict)  # pair id "XETHZUSD" -> book
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server.route("/0/public/Assets", self._assets)
        self.server.route("/0/public/AssetPairs", self._asset_pairs)
        self.server.route("/0/public/Ticker", self._ticker)
        self.server.route("/0/public/Depth", self._depth)

    def add_market(self, base: str, quote: str, mid: float) -> None:
        pair_id = KRAKEN_ASSET.get(base, base) + KRAKEN_ASSET.get(quote, quote)
        self.pairs[pair_id] = (base, quote)
        self.books[pair_id] = simple_book(mid)

    def _assets_used(self) -> set[str]:
        return {a for pair in self.pairs.values() for a in pair}

    async def _assets(self, request: web.Request) -> Payload:
        result = {
            KRAKEN_ASSET.get(a, a): {
                "aclass": "currency",
                "altname": KRAKEN_ALTNAME.get(a, a),
                "decimals": 10,
                "display_decimals": 5,
                "collateral_value": 1.0,
                "status": "enabled",
            }
            for a in self._assets_used()
        }
        return {"error": [], "result": result}

    async def _asset_pairs(self, request: web.Request) -> Payload:
        result = {}
        for pair_id, (base, quote) in self.pairs.items():
            altname = KRAKEN_ALTNAME.get(base, base) + KRAKEN_ALTNAME.get(quote, quote)
            result[pair_id] = {
                "altname": altname,
                "wsname": f"{KRAKEN_ALTNAME.get(base, base)}/{quote}",
                "aclass_base": "currency",
                "base": KRAKEN_ASSET.get(base, base),
                "aclass_quote": "currency",
                "quote": KRAKEN_ASSET.get(quote, quote),
                "lot": "unit",
                "cost_decimals": 5,
                "pair_decimals": 2,
                "lot_decimals": 8,
                "lot_multiplier": 1,
                "leverage_buy": [],
                "leverage_sell": [],
                "fees": [[0, 0.26], [50000, 0.24]],
                "fees_maker": [[0, 0.16], [50000, 0.14]],
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": "0.002",
                "costmin": "0.5",
                "tick_size": "0.01",
                "status": "online",
            }
        return {"error": [], "result": result}

    def _resolve(self, requested: str) -> str | None:
        if requested in self.pairs:
            return requested
        for pair_id, (base, quote) in self.pairs.items():
            if requested == KRAKEN_ALTNAME.get(base, base) + KRAKEN_ALTNAME.get(quote, quote):
                return pair_id
        return None

    async def _ticker(self, request: web.Request) -> Payload:
        requested = request.query.get("pair")
        ids = requested.split(",") if requested else list(self.pairs)
        result = {}
        for requested_id in ids:
            pair_id = self._resolve(requested_id)
            if pair_id is None:
                return {"error": ["EQuery:Unknown asset pair"]}
            book = self.books[pair_id]
            bid, ask = book.bids[0], book.asks[0]
            last = (bid[0] + ask[0]) / 2
            result[pair_id] = {
                "a": [f"{ask[0]:.2f}", "1", f"{ask[1]:.3f}"],
                "b": [f"{bid[0]:.2f}", "1", f"{bid[1]:.3f}"],
                "c": [f"{last:.2f}", "0.1"],
                "v": ["100.0", "1000.0"],
                "p": [f"{last:.2f}", f"{last:.2f}"],
                "t": [100, 1000],
                "l": [f"{last * 0.99:.2f}", f"{last * 0.99:.2f}"],
                "h": [f"{last * 1.01:.2f}", f"{last * 1.01:.2f}"],
                "o": f"{last:.2f}",
            }
        return {"error": [], "result": result}

    async def _depth(self, request: web.Request) -> Payload:
        pair_id = self._resolve(request.query["pair"])
        if pair_id is None:
            return {"error": ["EQuery:Unknown asset pair"]}
        count = int(request.query.get("count", 100))
        book = self.books[pair_id]
        now = int(time.time())
        return {
            "error": [],
            "result": {
                pair_id: {
                    "asks": [[f"{p:.2f}", f"{q:.3f}", now] for p, q in book.asks[:count]],
                    "bids": [[f"{p:.2f}", f"{q:.3f}", now] for p, q in book.bids[:count]],
                }
            },
        }
