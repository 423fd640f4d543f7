"""A JSON-RPC proxy on 127.0.0.1 that forwards to a real node and injects faults.

With probability ``failure_rate`` a request gets one of the faults an RPC provider really shows:
HTTP 500, HTTP 429, a connection reset, a reply slower than the client's timeout, a truncated
body, garbled JSON. Everything else is forwarded unchanged. It records what it did, so a test
can check that faults really happened. ``cut()`` makes it drop every connection (a dead
endpoint) until ``restore()``. ``lie(method, result)`` makes it a lying node: the next answers
to ``method`` carry ``result`` instead of the node's (``told`` records each lie).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

FAULTS = ("http_500", "http_429", "reset", "timeout", "truncated", "garbled")


class FaultyRpcProxy:
    """``async with FaultyRpcProxy(upstream_url, failure_rate=0.3) as proxy: proxy.url``."""

    def __init__(
        self,
        upstream_url: str,
        *,
        failure_rate: float = 0.3,
        slow_reply_s: float = 1.0,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
    ) -> None:
        self.upstream_url = upstream_url
        self.failure_rate = failure_rate
        self.slow_reply_s = slow_reply_s
        self.faults = faults
        self.rng = random.Random(seed)
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self.down = False
        self.dropped_while_down = 0
        self._lies: list[tuple[str, Callable[[Any], Any]]] = []
        self.told: list[tuple[str, Any]] = []  # (method, the result answered instead)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> FaultyRpcProxy:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}/"
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FaultyRpcProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _forward(self, body: bytes) -> bytes:
        assert self._session is not None
        async with self._session.post(
            self.upstream_url, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            return await upstream.read()

    def cut(self) -> None:
        """Every request from now on has its connection reset (the node is unreachable)."""
        self.down = True

    def restore(self) -> None:
        self.down = False

    def lie(self, method: str, result: Any, *, times: int = 1) -> None:
        """The next ``times`` answers to ``method`` carry ``result`` (a value, or a function of
        the node's real result) instead of the node's own."""
        rewrite = result if callable(result) else (lambda _real: result)
        self._lies.extend([(method, rewrite)] * times)

    def _lie_about(self, body: bytes, reply: bytes) -> bytes:
        if not self._lies:
            return reply
        request = json.loads(body)
        if not isinstance(request, dict) or request.get("method") != self._lies[0][0]:
            return reply
        method, rewrite = self._lies.pop(0)
        answer = json.loads(reply)
        answer["result"] = rewrite(answer.get("result"))
        self.told.append((method, answer["result"]))
        return json.dumps(answer).encode()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.down:
            self.dropped_while_down += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        body = await request.read()
        fault = self.rng.choice(self.faults) if self.rng.random() < self.failure_rate else None
        if fault is None:
            reply = self._lie_about(body, await self._forward(body))
            return web.Response(body=reply, content_type="application/json")
        self.injected[fault] += 1
        if fault == "http_500":
            return web.Response(status=500, text="internal error")
        if fault == "http_429":
            return web.Response(status=429, text="too many requests", headers={"Retry-After": "0"})
        if fault == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if fault == "timeout":
            await asyncio.sleep(self.slow_reply_s)
            return web.Response(body=await self._forward(body), content_type="application/json")
        reply = await self._forward(body)
        if fault == "truncated":
            return web.Response(body=reply[: len(reply) // 2], content_type="application/json")
        return web.Response(
            body=b'{"jsonrpc":"2.0","id":' + reply[5:40], content_type="application/json"
        )
