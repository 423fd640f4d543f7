"""JSON-RPC access with ordered failover, retries and per-endpoint request counters.

Every request the agent makes (single, JSON-RPC batch, or through the ``AsyncWeb3`` built by
``RpcClient.web3()``) passes through ``RpcClient._post``: one place that picks the endpoint,
counts the request, classifies the failure and retries. Transient failures (timeouts,
connection resets, HTTP 429 and 5xx, truncated or garbled JSON, node rate-limit errors) are
retried with exponential backoff and jitter, moving to the next URL; a node's JSON-RPC error
answer (e.g. ``execution reverted``) is an answer and is returned, never retried.

Endpoint URLs may carry API keys: they appear in counters, logs and errors only as
``host[:port]`` (``agent.redaction.redact_endpoint``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from web3 import AsyncWeb3, WebSocketProvider
from web3._utils.encoding import Web3JsonEncoder
from web3.providers.async_base import AsyncJSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from agent.chain.limits import UNLIMITED, ProviderLimits, log_range_refusal
from agent.errors import (
    AgentError,
    RateLimitedError,
    RpcResponseError,
    RpcTransportError,
    TemporaryError,
)
from agent.events import Throttle
from agent.redaction import redact_endpoint
from agent.resilience import parse_retry_after

log = logging.getLogger(__name__)

# JSON-RPC error codes nodes and providers use for "slow down / try again"
_RETRYABLE_RPC_CODES = frozenset({-32005, -32097, 429})

# The window a provider counts its requests per second in, plus a little room for arrival jitter
_RATE_WINDOW_S = 1.02

# While an endpoint keeps failing, its failures are logged at most this often (seconds).
_REPEAT_LOG_EVERY_S = 60.0

RequestObserver = Callable[[str, str, bool, float], None]
"""Called after every HTTP request: (endpoint_url, method, ok, latency_s). May see a secret
URL: hand it to ``AgentMetrics.record_rpc_request``, which redacts it."""


@dataclass
class EndpointStats:
    """Counters of one endpoint. ``requests`` are HTTP requests (a JSON-RPC batch is one),
    ``calls`` the JSON-RPC calls inside them, ``failures`` the requests that failed."""

    label: str
    requests: int = 0
    calls: int = 0
    failures: int = 0
    cooldown_until: float = 0.0
    failing: int = 0  # consecutive failed requests (0 while the endpoint answers)
    failure_log: Throttle = field(default_factory=lambda: Throttle(_REPEAT_LOG_EVERY_S))


class RpcClient:
    """Ordered failover over ``rpc_urls`` on one aiohttp session.

    The first URL not cooling down after a failure is used; a failed attempt puts its URL in
    cooldown for ``cooldown_s`` and the retry goes to the next one. ``session`` can be passed in
    (tests, shared sessions); otherwise the client owns one and ``aclose`` closes it.
    """

    def __init__(
        self,
        rpc_urls: Sequence[str],
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        cooldown_s: float = 5.0,
        on_request: RequestObserver | None = None,
        limits: ProviderLimits = UNLIMITED,
    ) -> None:
        if not rpc_urls:
            raise ValueError("rpc_urls must name at least one endpoint")
        self.rpc_urls = list(rpc_urls)
        self.stats = [EndpointStats(redact_endpoint(url)) for url in self.rpc_urls]
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._cooldown_s = cooldown_s
        self._on_request = on_request
        self._next_id = 0
        self.limits = limits
        self._pacer = RequestPacer(limits.requests_per_s)

    # --- counters ---------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """HTTP requests sent to all endpoints so far (failed attempts included)."""
        return sum(s.requests for s in self.stats)

    @property
    def call_count(self) -> int:
        """JSON-RPC calls sent so far (each element of a batch counts)."""
        return sum(s.calls for s in self.stats)

    def counters(self) -> dict[str, dict[str, int]]:
        """``{endpoint label: {"requests", "calls", "failures"}}`` for metrics and benchmarks."""
        return {
            s.label: {"requests": s.requests, "calls": s.calls, "failures": s.failures}
            for s in self.stats
        }

    # --- requests ---------------------------------------------------------------------------

    async def call_raw(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC call; returns ``result`` or raises ``RpcResponseError``."""
        reply = await self.request(method, params)
        if "error" in reply:
            raise RpcResponseError(method, reply["error"])
        return reply.get("result")

    async def request(self, method: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """One JSON-RPC call; returns the whole response object (``result`` or ``error``)."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._new_id(), "method": method, "params": list(params)}
        ).encode()
        reply = await self._post_with_retries(body, method, 1, _expect_single)
        return cast(dict[str, Any], reply)

    async def call_endpoint(self, index: int, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC call to endpoint ``index`` only: no failover, no retry (a cross-check
        asks each endpoint in turn). Returns ``result``; raises ``RpcResponseError`` or a
        ``TemporaryError`` when that endpoint does not answer."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._new_id(), "method": method, "params": list(params)}
        ).encode()
        reply = await self._post(body, method, 1, _expect_single, index=index)
        if "error" in reply:
            raise RpcResponseError(method, reply["error"])
        return reply.get("result")

    async def batch_raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many JSON-RPC calls in one HTTP request; results in order. The first error object
        among the answers raises ``RpcResponseError``."""
        replies = await self.batch(calls)
        results = []
        for (method, _params), reply in zip(calls, replies, strict=True):
            if "error" in reply:
                raise RpcResponseError(method, reply["error"])
            results.append(reply.get("result"))
        return results

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """Many JSON-RPC calls; the response objects in request order. Calls travel in as few
        HTTP requests as ``limits`` allow (calls per batch, bytes per request), sent together."""
        return await self.batch_encoded(
            [method for method, _ in calls], [json.dumps(list(p)) for _, p in calls]
        )

    async def batch_encoded(
        self, methods: Sequence[str], params_json: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``batch`` of calls whose params are already JSON arrays (the web3 provider encodes
        them with web3's own encoder)."""
        if not methods:
            return []
        groups: list[list[int]] = [[]]
        size = 0
        for index, (method, params) in enumerate(zip(methods, params_json, strict=True)):
            cost = len(params) + len(method) + 60  # the envelope: jsonrpc, id, method
            group = groups[-1]
            if group and (
                len(group) >= self.limits.max_calls_per_batch
                or size + cost > self.limits.max_request_bytes
            ):
                groups.append([])
                size = 0
            groups[-1].append(index)
            size += cost
        if len(groups) == 1:
            return await self._batch_request(methods, params_json)
        answers = await asyncio.gather(
            *(
                self._batch_request([methods[i] for i in group], [params_json[i] for i in group])
                for group in groups
            )
        )
        return [reply for answer in answers for reply in answer]

    async def _batch_request(
        self, methods: Sequence[str], params_json: Sequence[str]
    ) -> list[dict[str, Any]]:
        first_id = self._next_id + 1
        self._next_id += len(methods)
        body = (
            "["
            + ",".join(
                f'{{"jsonrpc":"2.0","id":{first_id + i},"method":{json.dumps(m)},"params":{p}}}'
                for i, (m, p) in enumerate(zip(methods, params_json, strict=True))
            )
            + "]"
        ).encode()
        ids = list(range(first_id, first_id + len(methods)))
        method = methods[0] if len(set(methods)) == 1 else "batch"
        reply = await self._post_with_retries(body, method, len(methods), _expect_batch(ids))
        return cast(list[dict[str, Any]], reply)

    async def post_encoded(self, body: bytes, method: str, call_count: int) -> Any:
        """Send an already-encoded JSON-RPC body (used by the web3 provider); returns the
        decoded JSON, retried like every other request."""
        return await self._post_with_retries(body, method, call_count, _expect_any)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _post_with_retries(
        self, body: bytes, method: str, call_count: int, check: Callable[[Any], None]
    ) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self._backoff_initial_s,
                max=self._backoff_max_s,
                jitter=self._backoff_initial_s,
            ),
            retry=retry_if_exception_type(TemporaryError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post(body, method, call_count, check)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _pick_endpoint(self) -> int:
        now = time.monotonic()
        for index, stats in enumerate(self.stats):
            if stats.cooldown_until <= now:
                return index
        # every endpoint failed recently: use the one whose cooldown ends first
        return min(range(len(self.stats)), key=lambda i: self.stats[i].cooldown_until)

    async def _post(
        self,
        body: bytes,
        method: str,
        call_count: int,
        check: Callable[[Any], None],
        *,
        index: int | None = None,
    ) -> Any:
        if index is None:
            index = self._pick_endpoint()
        url = self.rpc_urls[index]
        stats = self.stats[index]
        await self._pacer.wait()
        stats.requests += 1
        stats.calls += call_count
        started = time.perf_counter()
        ok = False
        try:
            payload = await self._exchange(url, body)
            check(payload)
            ok = True
            if stats.failing:
                log.warning("rpc %s answers again after %d failure(s)", stats.label, stats.failing)
                stats.failing = 0
                stats.failure_log.reset()
            return payload
        except TemporaryError as exc:
            stats.failures += 1
            stats.failing += 1
            stats.cooldown_until = time.monotonic() + self._cooldown_s
            # An outage fails every retry of every request: log its start, then a line a minute.
            if stats.failure_log.ready():
                log.warning(
                    "rpc %s on %s failed: %s (%d consecutive failure(s); repeats logged at "
                    "most every %.0fs)",
                    method,
                    stats.label,
                    exc,
                    stats.failing,
                    _REPEAT_LOG_EVERY_S,
                )
            else:
                log.debug("rpc %s on %s failed: %s", method, stats.label, exc)
            raise
        finally:
            if self._on_request is not None:
                self._on_request(url, method, ok, time.perf_counter() - started)

    async def _exchange(self, url: str, body: bytes) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        label = redact_endpoint(url)
        try:
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RpcTransportError(f"{label}: {type(exc).__name__}") from None
        if status == 429:
            raise RateLimitedError(f"{label}: HTTP 429", parse_retry_after(retry_after))
        if status >= 500:
            raise RpcTransportError(f"{label}: HTTP {status}")
        try:
            payload = json.loads(raw)
        except ValueError:
            raise RpcTransportError(f"{label}: malformed JSON body ({len(raw)} bytes)") from None
        if status != 200 and not isinstance(payload, dict | list):
            raise RpcTransportError(f"{label}: HTTP {status}")
        return payload

    # --- web3 -------------------------------------------------------------------------------

    def web3(self) -> AsyncWeb3[Any]:
        """An ``AsyncWeb3`` whose every request (batches included) goes through this client."""
        return AsyncWeb3(FailoverProvider(self))

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _raise_if_retryable_error(reply: Any) -> None:
    error = reply.get("error") if isinstance(reply, dict) else None
    # Infura answers an oversized eth_getLogs with its rate-limit code: that is an answer
    # (ask for less), handled by the caller, not a reason to fail the request around it
    if log_range_refusal(error) is not None:
        return
    if isinstance(error, dict) and error.get("code") in _RETRYABLE_RPC_CODES:
        raise RateLimitedError(f"rpc error {error.get('code')}: {error.get('message', '')}")


def _expect_single(payload: Any) -> None:
    if not isinstance(payload, dict) or not ("result" in payload or "error" in payload):
        raise RpcTransportError("response is not a JSON-RPC response object")
    _raise_if_retryable_error(payload)


def _expect_batch(ids: list[int]) -> Callable[[Any], None]:
    def check(payload: Any) -> None:
        if isinstance(payload, dict):
            _raise_if_retryable_error(payload)
            raise RpcTransportError("batch answered with a single object")
        if not isinstance(payload, list) or len(payload) != len(ids):
            raise RpcTransportError("batch response has the wrong shape")
        by_id = {}
        for reply in payload:
            if not isinstance(reply, dict) or "id" not in reply:
                raise RpcTransportError("batch response has the wrong shape")
            _raise_if_retryable_error(reply)
            by_id[reply["id"]] = reply
        if set(by_id) != set(ids):
            raise RpcTransportError("batch response ids do not match the request")
        # callers read answers in request order
        payload[:] = [by_id[i] for i in ids]

    return check


def _expect_any(payload: Any) -> None:
    if isinstance(payload, list):
        for reply in payload:
            _raise_if_retryable_error(reply)
    else:
        _expect_single(payload)


class RequestPacer:
    """Spaces requests ``1 / per_s`` seconds apart (``per_s`` 0: no pacing) and never lets more
    than ``per_s`` go out in one second, so a provider's requests-per-second cap is met rather
    than answered with 429s. The second rule counts requests when they leave: spacing alone let
    waiters the event loop woke late (busy decoding a large answer) go out together."""

    def __init__(self, per_s: float) -> None:
        self._interval = 1.0 / per_s if per_s > 0 else 0.0
        self._next_slot = 0.0
        self._per_window = max(1, int(per_s))
        self._sent: deque[float] = deque()

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval  # claimed before sleeping: no lock needed
        if slot > now:
            await asyncio.sleep(slot - now)
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= _RATE_WINDOW_S:
                self._sent.popleft()
            if len(self._sent) < self._per_window:
                break
            await asyncio.sleep(self._sent[0] + _RATE_WINDOW_S - now)
        self._sent.append(now)


class FailoverProvider(AsyncJSONBaseProvider):
    """web3 provider that hands every request to an ``RpcClient`` (failover, retry, counts)."""

    def __init__(self, client: RpcClient) -> None:
        super().__init__()
        self.client = client

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        body = self.encode_rpc_request(method, params)
        return cast(RPCResponse, await self.client.post_encoded(body, str(method), 1))

    async def make_batch_request(
        self, requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        """The batch split by the client's limits (calls per batch, bytes per request) like
        every other batch; the answers in request order, which is how web3 pairs them."""
        params_json = [json.dumps(list(params), cls=Web3JsonEncoder) for _m, params in requests]
        replies = await self.client.batch_encoded([str(m) for m, _ in requests], params_json)
        return cast(list[RPCResponse], replies)

    async def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            await self.client.call_raw("web3_clientVersion")
        except AgentError:
            if show_traceback:
                raise
            return False
        return True

    async def disconnect(self) -> None:
        await self.client.aclose()


# --- new blocks ---------------------------------------------------------------------------


async def poll_new_blocks(
    client: RpcClient,
    poll_interval_s: float = 1.0,
    *,
    on_error: Callable[[BaseException], None] | None = None,
    repeat_log_every_s: float = 60.0,
) -> AsyncIterator[int]:
    """Yield the latest block number each time it changes, polling ``eth_blockNumber``.

    Transient failures are polled again; blocks skipped between two polls are not yielded one
    by one (a refresh covers a range). Any change is yielded, a lower number too: the source
    does not judge heads (``agent.chain.heads.HeadGuard`` does), so one bogus answer cannot
    make it ignore the real heads that follow. The first failure is logged, then at most one
    line per ``repeat_log_every_s`` while it lasts, and the recovery; ``on_error`` sees every
    failure.
    Runs until the consumer stops iterating.
    """
    last: int | None = None
    failures = 0
    repeat = Throttle(repeat_log_every_s)
    while True:
        try:
            number = int(await client.call_raw("eth_blockNumber"), 16)
        except (TemporaryError, RpcResponseError) as exc:
            failures += 1
            if on_error is not None:
                on_error(exc)
            if failures == 1:
                repeat.ready()  # the interval starts at the first line
                log.warning(
                    "polling eth_blockNumber failed: %s (retrying every %gs; repeats logged "
                    "at most every %gs)",
                    exc,
                    poll_interval_s,
                    repeat_log_every_s,
                )
            elif repeat.ready():
                log.warning("polling eth_blockNumber still failing (%d times): %s", failures, exc)
            await asyncio.sleep(poll_interval_s)
            continue
        if failures:
            log.warning("eth_blockNumber answers again after %d failed poll(s)", failures)
            failures = 0
            repeat.reset()
        if number != last:
            last = number
            yield number
        await asyncio.sleep(poll_interval_s)


async def subscribe_new_blocks(
    ws_url: str, *, reconnect_delay_s: float = 1.0, max_reconnect_delay_s: float = 30.0
) -> AsyncIterator[int]:
    """Yield block numbers from a ``newHeads`` websocket subscription, reconnecting with
    backoff when the connection drops. The websocket is closed when the consumer stops."""
    delay = reconnect_delay_s
    label = redact_endpoint(ws_url)
    while True:
        try:
            async with AsyncWeb3(WebSocketProvider(ws_url)) as w3:
                await w3.eth.subscribe("newHeads")
                delay = reconnect_delay_s
                async for message in w3.socket.process_subscriptions():
                    head = message["result"]
                    number = head["number"] if isinstance(head, dict) else head.number
                    yield int(number, 16) if isinstance(number, str) else int(number)
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.warning("newHeads on %s dropped: %s", label, type(exc).__name__)
        except Exception as exc:  # websockets and web3 raise their own connection errors
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("newHeads on %s failed: %s", label, type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_reconnect_delay_s)
