"""Resilient access to HTTP feeds over one shared ``aiohttp.ClientSession``.

One place handles what every remote source needs:

* a token-bucket rate limit per source (:class:`TokenBucket`),
* a timeout per request,
* tenacity retries with exponential backoff and jitter on 5xx, 429, timeouts, connection
  errors and malformed JSON, waiting exactly what ``Retry-After`` asks for (seconds or an HTTP
  date) on 429/503; other 4xx are not retried,
* a circuit breaker per source (:class:`CircuitBreaker`): open after N consecutive failed
  attempts, half-open after a cool-down, closed again by one success,
* redaction of secrets (:class:`Redactor`): API keys in headers or query strings never reach a
  log line, an exception message or ``Reading.error``,
* staleness (:class:`ReadingBook`): every result is an ``agent.types.Reading``; a failed poll
  returns the last good value with the error text,
* a polling loop (:class:`Poller`) that never lets an exception escape; its owner cancels and
  awaits it.

:class:`HttpSource` lives here; the source-independent pieces live in
``agent.resilience`` (errors, bucket, breaker, retries), ``agent.redaction`` (the
one secret redactor) and ``agent.feeds.readings`` (readings, polling) and are re-exported from
this module.

The session is created by the engine and passed in; nothing here creates one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import aiohttp

from agent.errors import (
    HttpStatusError,
    RateLimitedError,
    ServerError,
)
from agent.feeds.readings import (
    Poller,
    PollStats,
    ReadingBook,
    describe_error,
    read_into,
    require,
    require_float,
    require_int,
)
from agent.redaction import SENSITIVE_NAMES, Redactor
from agent.resilience import (
    CircuitBreaker,
    Clock,
    RedactingLogger,
    SourceGuard,
    SourcePolicy,
    SourceStats,
    TokenBucket,
    parse_retry_after,
)

# This module is the feeds' public entry point: the pieces above are re-exported from here.
__all__ = [
    "SENSITIVE_NAMES",
    "CircuitBreaker",
    "HttpSource",
    "PollStats",
    "Poller",
    "ReadingBook",
    "RedactingLogger",
    "Redactor",
    "SourceGuard",
    "SourcePolicy",
    "SourceStats",
    "TokenBucket",
    "describe_error",
    "parse_retry_after",
    "read_into",
    "require",
    "require_float",
    "require_int",
]

# --------------------------------------------------------------------------------------------
# HTTP source


class HttpSource:
    """A JSON-over-HTTP source: base URL, fixed auth headers/query, and a :class:`SourceGuard`.

    The session is shared by the whole agent and owned by whoever created it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        name: str,
        base_url: str,
        policy: SourcePolicy | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        logger: logging.Logger | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.session = session
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.policy = policy if policy is not None else SourcePolicy()
        self._headers = dict(headers or {})
        self._query = dict(query or {})
        self.redactor = Redactor(secrets)
        # Anything in a credential-named header or query field is a secret, even if the caller
        # forgot to list it.
        for name_, value in [*self._headers.items(), *self._query.items()]:
            if name_.lower() in SENSITIVE_NAMES:
                self.redactor.add(value)
                self.redactor.add(value.removeprefix("Bearer ").strip())
        self.log = logger if logger is not None else logging.getLogger(f"agent.feeds.{name}")
        self.guard = SourceGuard(name, self.policy, self.redactor, logger=self.log, clock=clock)

    @property
    def stats(self) -> SourceStats:
        return self.guard.stats

    async def get_json(
        self,
        path: str,
        params: Mapping[str, str | int | float] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET ``base_url + path`` and return the decoded JSON body, under the source policy."""
        return await self.guard.call(
            lambda: self._get_once(path, params, headers), what=f"GET {path}"
        )

    async def _get_once(
        self,
        path: str,
        params: Mapping[str, str | int | float] | None,
        headers: Mapping[str, str] | None,
    ) -> Any:
        url = f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url
        query = {**self._query, **{k: str(v) for k, v in (params or {}).items()}}
        all_headers = {"Accept": "application/json", **self._headers, **(headers or {})}
        shown = self.redactor.redact_url(f"{url}?{urlencode(query)}" if query else url)
        # what= appears in error texts: path only, never the query (it may carry keys).
        what = f"GET {urlsplit(url).path}"
        self.log.debug("%s: %s", self.name, shown)
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                # Redirects are followed here, not by aiohttp: only within the origin, since
                # our credentials (headers, query) must never reach another host.
                async with self.session.get(
                    url, params=query, headers=all_headers, allow_redirects=False
                ) as response:
                    status = response.status
                    body = await response.read()
                    response_headers = response.headers
                    location = response_headers.get("Location")
                if status not in _REDIRECTS or location is None:
                    break
                target = urljoin(url, location)
                if _origin(target) != _origin(url):
                    self.log.warning(
                        "%s: %s redirected to another origin (%s): not followed",
                        self.name,
                        what,
                        _origin(target),
                    )
                    raise HttpStatusError(
                        f"{self.name}: {what} -> HTTP {status} redirect to another origin "
                        f"{_origin(target)}, not followed (it would carry our credentials)",
                        status,
                    )
                url = target.split("?", 1)[0]
                query = {**self._query, **dict(parse_qsl(urlsplit(target).query))}
            else:
                raise HttpStatusError(f"{self.name}: {what} -> too many redirects", status)
            if status == 429 or (status == 503 and "Retry-After" in response_headers):
                retry_after = parse_retry_after(response_headers.get("Retry-After"))
                if retry_after is None:
                    retry_after = _x_rate_limit_reset(response_headers)
                if status == 429:
                    raise RateLimitedError(
                        f"{self.name}: {what} -> 429 Too Many Requests", retry_after
                    )
                raise ServerError(f"{self.name}: {what} -> 503 Service Unavailable", retry_after)
            if status >= 500:
                raise ServerError(f"{self.name}: {what} -> HTTP {status}")
            if status >= 400:
                raise HttpStatusError(
                    f"{self.name}: {what} -> HTTP {status}: {self._snippet(body)}", status
                )
        except aiohttp.ClientError as exc:
            # aiohttp's own messages can embed the full URL (query and all): never reuse them.
            raise ServerError(f"{self.name}: {what} failed: {type(exc).__name__}") from None
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ServerError(f"{self.name}: {what} returned malformed JSON") from None

    def _snippet(self, body: bytes) -> str:
        return self.redactor.redact(body[:200].decode("utf-8", "replace"))


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


def _origin(url: str) -> str:
    """scheme://host:port, the unit a credential may travel within."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _x_rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """X (and some others) send ``x-rate-limit-reset``: the epoch second the window resets."""
    reset = headers.get("x-rate-limit-reset")
    if reset is None:
        return None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None
