"""A JSON-RPC proxy on 127.0.0.1 that forwards to a real node and injects faults.

With probability ``failure_rate`` a request gets one of the faults an RPC provider really shows:
HTTP 500, HTTP 429, a connection reset, a reply slower than the client's timeout, a truncated
body, garbled JSON. Everything else is forwarded unchanged. It records what it did, so a test
can check that faults really happened. ``cut()`` makes it drop every connection (a dead
endpoint) until ``restore()``. ``lie(method, result)`` makes it a lying node: the next answers
to ``method`` carry ``result`` instead of the node's (``told`` records each lie).

``latency_s`` delays every answer by that much: a provider far away (a fast chain's blocks
then come quicker than a tick's round trips).

``limits=EnforcedLimits(...)`` makes it a provider with caps, refusing as providers do: a body
over ``max_body_bytes`` gets HTTP 413, a batch over ``max_batch_calls`` one error object, more
than ``requests_per_s`` requests in a second HTTP 429, and an ``eth_getLogs`` over
``logs_max_block_range`` blocks or ``logs_max_results`` results the error of ``style``:
Infura's ``-32005 query returned more than ...`` or Alchemy's ``-32602 ... block range ...``
(with the range that would work). ``refused`` counts each kind of refusal.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

FAULTS = ("http_500", "http_429", "reset", "timeout", "truncated", "garbled")


@dataclass(frozen=True)
class EnforcedLimits:
    """A provider's caps (``None``: no cap) and how it words a refused log query."""

    max_batch_calls: int | None = None
    max_body_bytes: int | None = None
    logs_max_block_range: int | None = None
    logs_max_results: int | None = None
    requests_per_s: int | None = None
    style: str = "infura"  # or "alchemy"


def _log_refusal(style: str, start: int, end: int, why: str) -> dict[str, Any]:
    if style == "infura":
        return {
            "code": -32005,
            "message": f"query returned more than 10000 results. Try with this block range "
            f"[{hex(start)}, {hex(end)}].",
        }
    return {
        "code": -32602,
        "message": f"Log response size exceeded ({why}). You can make eth_getLogs requests "
        f"with up to a 10 block range. Based on your parameters, this block range should "
        f"work: [{hex(start)}, {hex(end)}]",
    }


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
        limits: EnforcedLimits | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.upstream_url = upstream_url
        self.latency_s = latency_s
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
        self.limits = limits
        self.refused: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()  # JSON-RPC calls forwarded, by method
        self._recent: deque[float] = deque()
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

    async def _block_number(self) -> int:
        reply = await self._forward(b'{"jsonrpc":"2.0","id":0,"method":"eth_blockNumber"}')
        return int(json.loads(reply)["result"], 16)

    async def _enforce(self, body: bytes) -> web.Response | None:
        limits = self.limits
        assert limits is not None
        if limits.requests_per_s is not None:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            if len(self._recent) >= limits.requests_per_s:
                self.refused["rate"] += 1
                return web.Response(status=429, text="too many requests")
            self._recent.append(now)
        if limits.max_body_bytes is not None and len(body) > limits.max_body_bytes:
            self.refused["body"] += 1
            return web.Response(status=413, text="request entity too large")
        payload = json.loads(body)
        requests = payload if isinstance(payload, list) else [payload]
        if limits.max_batch_calls is not None and len(requests) > limits.max_batch_calls:
            self.refused["batch"] += 1
            error = {"code": -32600, "message": f"batch of more than {limits.max_batch_calls}"}
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": error})
        self.calls.update(str(r.get("method")) for r in requests)
        refused: dict[int, dict[str, Any]] = {}
        for index, call in enumerate(requests):
            if call.get("method") != "eth_getLogs" or limits.logs_max_block_range is None:
                continue
            query = call["params"][0]
            start_tag, end_tag = query.get("fromBlock", "latest"), query.get("toBlock", "latest")
            head = (
                None
                if str(start_tag).startswith("0x") and str(end_tag).startswith("0x")
                else (await self._block_number())
            )
            start = int(start_tag, 16) if str(start_tag).startswith("0x") else head
            end = int(end_tag, 16) if str(end_tag).startswith("0x") else head
            assert start is not None and end is not None
            if end - start + 1 > limits.logs_max_block_range:
                self.refused["logs_range"] += 1
                fits = (start, start + limits.logs_max_block_range - 1)
                refused[index] = _log_refusal(limits.style, *fits, "block range")
        if not refused and limits.logs_max_results is None:
            return None
        replies = json.loads(await self._forward(body))
        answers = replies if isinstance(replies, list) else [replies]
        by_id = {a.get("id"): a for a in answers}
        for index, call in enumerate(requests):
            answer = by_id.get(call.get("id"))
            if answer is None:
                continue
            if index in refused:
                answer.pop("result", None)
                answer["error"] = refused[index]
            elif (
                call.get("method") == "eth_getLogs"
                and limits.logs_max_results is not None
                and isinstance(answer.get("result"), list)
                and len(answer["result"]) > limits.logs_max_results
            ):
                self.refused["logs_results"] += 1
                query = call["params"][0]
                start = int(query["fromBlock"], 16)
                end = int(query["toBlock"], 16)
                answer.pop("result")
                answer["error"] = _log_refusal(
                    limits.style, start, (start + end) // 2, "too many results"
                )
        return web.json_response(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.down:
            self.dropped_while_down += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        body = await request.read()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.limits is not None:
            refusal = await self._enforce(body)
            if refusal is not None:
                return refusal
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
