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

The session is created by the engine and passed in; nothing here creates one.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from agent.errors import AgentError, FatalError, RateLimitedError, TemporaryError
from agent.types import Reading

T = TypeVar("T")
K = TypeVar("K")

Clock = Callable[[], float]

# Header and query-parameter names whose values are credentials, compared case-insensitively.
SENSITIVE_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-cg-pro-api-key",
        "x-cg-demo-api-key",
        "x_cg_pro_api_key",
        "x_cg_demo_api_key",
        "x-mbx-apikey",
        "api-key",
        "api_key",
        "apikey",
        "key",
        "secret",
        "token",
        "access_token",
        "signature",
        "cookie",
        "set-cookie",
    }
)
REDACTED = "***"
# ``name=value`` of a credential-named query parameter inside free text (a URL in a message).
_SENSITIVE_QUERY_RE = re.compile(
    r"(?i)\b(api[_-]?key|apikey|access_token|token|secret|signature|key|"
    r"x_cg_pro_api_key|x_cg_demo_api_key)=([^&\s\"']+)"
)


# --------------------------------------------------------------------------------------------
# errors


class HttpStatusError(FatalError):
    """A 4xx other than 429: the request itself is wrong (or unauthorised); retrying won't help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerError(TemporaryError):
    """5xx, a timeout, a dropped connection or a body that is not JSON: worth a retry.

    ``retry_after_s`` is set when a 503 carried ``Retry-After``.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitOpenError(TemporaryError):
    """The source failed repeatedly; calls fail fast until the cool-down has passed."""


class ResponseShapeError(TemporaryError):
    """The response parsed but lacks a field or has the wrong type (schema drift)."""


# --------------------------------------------------------------------------------------------
# secrets


class Redactor:
    """Replaces known secret values, and values of credential-named fields, with ``***``.

    Secrets are registered once (API keys, bearer tokens); every text a feed logs or puts into
    an exception or a ``Reading.error`` passes through :meth:`redact`.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Register a secret value; empty or very short values are ignored (they'd mangle text)."""
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def merge(self, other: Redactor) -> None:
        """Register every secret ``other`` knows."""
        self._secrets.update(other._secrets)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret, and every credential-named ``name=value``
        query parameter, replaced (longest secrets first, so overlaps vanish)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SENSITIVE_QUERY_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)

    def redact_url(self, url: str) -> str:
        """A URL with credential-named query values and any registered secret replaced."""
        parts = urlsplit(url)
        if parts.query:
            pairs = [
                (name, REDACTED if name.lower() in SENSITIVE_NAMES else value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
            ]
            parts = parts._replace(query=urlencode(pairs, safe="*,:/"))
        if parts.password or parts.username:
            parts = parts._replace(netloc=parts.hostname or "")
        return self.redact(urlunsplit(parts))

    def redact_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A copy of ``headers`` safe to log."""
        return {
            name: REDACTED if name.lower() in SENSITIVE_NAMES else self.redact(value)
            for name, value in headers.items()
        }

    def format_exception(self, exc: BaseException) -> str:
        """A full traceback of ``exc`` with secrets removed, for unexpected errors."""
        return self.redact("".join(traceback.format_exception(exc)))


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for third-party code (ccxt logs request URLs and headers at DEBUG): every
    message is formatted, then redacted, before it reaches a handler."""

    def __init__(self, logger: logging.Logger, redactor: Redactor) -> None:
        super().__init__(logger, {})
        self.redactor = redactor

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(part) for part in (msg, *args))
        kwargs.pop("exc_info", None)  # a raw traceback could carry unredacted text
        self.logger.log(level, self.redactor.redact(text), **kwargs)


# --------------------------------------------------------------------------------------------
# policy, rate limit, breaker


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """How one source is called. Times in seconds, rates in requests per second."""

    rate_per_s: float = 5.0
    burst: int = 5
    timeout_s: float = 10.0
    max_attempts: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    backoff_jitter_s: float = 0.25
    # A Retry-After longer than this is not waited for inside one call: the call fails and the
    # source stays paused until then, so later polls fail fast instead of hanging.
    max_retry_after_s: float = 60.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    max_age_s: float = 60.0


class TokenBucket:
    """Token bucket: ``burst`` tokens, refilled at ``rate_per_s``; :meth:`acquire` waits for one.

    :meth:`pause_until` blocks the bucket until a monotonic time (a server's Retry-After).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause_until(self, until_monotonic: float) -> None:
        """No token is handed out before ``until_monotonic`` (clock seconds)."""
        self._paused_until = max(self._paused_until, until_monotonic)

    def paused_for(self) -> float:
        """Seconds left of a pause, 0 when not paused."""
        return max(0.0, self._paused_until - self._clock())

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self) -> None:
        """Take one token, sleeping until one is available (FIFO through a lock)."""
        async with self._lock:
            while True:
                pause = self.paused_for()
                if pause > 0:
                    await asyncio.sleep(pause)
                    continue
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self._rate)


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failed attempts -> half-open after
    ``cooldown_s`` (one trial call) -> closed on success, open again on failure."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Clock = time.monotonic):
        self._threshold = max(1, failure_threshold)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if self._clock() - self._opened_at >= self._cooldown_s:
            return self.HALF_OPEN
        return self.OPEN

    def allow(self) -> bool:
        """True when a call may go out now; in half-open only one trial at a time."""
        state = self.state
        if state == self.CLOSED:
            return True
        if state == self.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def retry_in_s(self) -> float:
        """Seconds until the breaker lets a trial call through (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def record_success(self) -> None:
        self._consecutive_failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def release_trial(self) -> None:
        """End a half-open trial that proved nothing either way (cancelled, or a 4xx)."""
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._consecutive_failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._consecutive_failures >= self._threshold:
            if self._opened_at is None or was_trial:
                self.times_opened += 1
            self._opened_at = self._clock()


@dataclass(slots=True)
class SourceStats:
    """Counters per source, for metrics and benchmarks."""

    requests: int = 0  # attempts that went out on the wire
    calls: int = 0  # logical calls (each may take several attempts)
    failures: int = 0  # logical calls that failed after retries
    retries: int = 0
    rate_limited: int = 0
    breaker_rejections: int = 0
    last_error: str | None = None


def parse_retry_after(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns ``None`` when absent or unparseable, and never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        now = time.time() if now_epoch is None else now_epoch
        seconds = when.timestamp() - now
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _retry_after_of(exc: BaseException | None) -> float | None:
    value = getattr(exc, "retry_after_s", None)
    return float(value) if isinstance(value, int | float) else None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TemporaryError) and not isinstance(
        exc, CircuitOpenError | ResponseShapeError
    )


class SourceGuard:
    """Rate limit + breaker + retries for one source, independent of the transport.

    ``call(attempt)`` runs ``attempt`` (one request) under the policy. ``attempt`` must raise
    the typed errors of this module / ``agent.errors`` with messages free of secrets:
    ``TemporaryError`` subclasses are retried, everything else is not.
    """

    def __init__(
        self,
        name: str,
        policy: SourcePolicy,
        redactor: Redactor | None = None,
        *,
        logger: logging.Logger | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self.redactor = redactor if redactor is not None else Redactor()
        self.log = logger if logger is not None else logging.getLogger(f"agent.feeds.{name}")
        self.bucket = TokenBucket(policy.rate_per_s, policy.burst, clock)
        self.breaker = CircuitBreaker(policy.breaker_failures, policy.breaker_cooldown_s, clock)
        self.stats = SourceStats()
        self._clock = clock
        self._backoff = wait_exponential_jitter(
            multiplier=policy.backoff_initial_s,
            max=policy.backoff_max_s,
            jitter=policy.backoff_jitter_s,
        )

    def _wait(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = _retry_after_of(exc)
        if retry_after is not None:
            return retry_after
        return self._backoff(retry_state)

    def _stop(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self.policy.max_attempts:
            return True
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = _retry_after_of(exc)
        return retry_after is not None and retry_after > self.policy.max_retry_after_s

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        sleep_s = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self.log.warning(
            "%s: attempt %d failed (%s), retrying in %.2fs",
            self.name,
            retry_state.attempt_number,
            self.redactor.redact(str(exc)),
            sleep_s,
        )

    async def call(self, attempt: Callable[[], Awaitable[T]], what: str = "request") -> T:
        """Run one logical request with rate limit, timeout, retries and the breaker.

        Raises ``CircuitOpenError`` without touching the network while the breaker is open,
        ``RateLimitedError`` when paused by a long Retry-After, otherwise the last error.
        """
        self.stats.calls += 1
        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt_ctx in retrying:
                with attempt_ctx:
                    result = await self._one_attempt(attempt, what)
        except AgentError as exc:
            self.stats.failures += 1
            self.stats.last_error = self.redactor.redact(str(exc))
            raise
        return result

    async def _one_attempt(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        if not self.breaker.allow():
            self.stats.breaker_rejections += 1
            raise CircuitOpenError(
                f"{self.name}: circuit open after repeated failures, "
                f"next trial in {self.breaker.retry_in_s():.1f}s"
            )
        paused = self.bucket.paused_for()
        if paused > self.policy.max_retry_after_s:
            # Still inside a long Retry-After: fail fast (and, via retry_after_s, don't retry).
            raise RateLimitedError(f"{self.name}: rate limited for another {paused:.0f}s", paused)
        await self.bucket.acquire()
        self.stats.requests += 1
        try:
            try:
                async with asyncio.timeout(self.policy.timeout_s):
                    result = await attempt()
            except TimeoutError:
                raise ServerError(
                    f"{self.name}: {what} timed out after {self.policy.timeout_s:g}s"
                ) from None
        except RateLimitedError as exc:
            self.stats.rate_limited += 1
            if exc.retry_after_s is not None:
                self.bucket.pause_until(self._clock() + exc.retry_after_s)
            self.breaker.record_failure()
            raise
        except TemporaryError:
            self.breaker.record_failure()
            raise
        except HttpStatusError:
            # The source is up and answered; the request was wrong. Not an outage.
            self.breaker.record_success()
            raise
        except BaseException:
            # Cancelled (or a bug in ``attempt``): proves nothing about the source.
            self.breaker.release_trial()
            raise
        self.breaker.record_success()
        return result


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
            async with self.session.get(url, params=query, headers=all_headers) as response:
                status = response.status
                body = await response.read()
                if status == 429 or (status == 503 and "Retry-After" in response.headers):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if retry_after is None:
                        retry_after = _x_rate_limit_reset(response.headers)
                    if status == 429:
                        raise RateLimitedError(
                            f"{self.name}: {what} -> 429 Too Many Requests", retry_after
                        )
                    raise ServerError(
                        f"{self.name}: {what} -> 503 Service Unavailable", retry_after
                    )
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


def _x_rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """X (and some others) send ``x-rate-limit-reset``: the epoch second the window resets."""
    reset = headers.get("x-rate-limit-reset")
    if reset is None:
        return None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# readings


class ReadingBook(Generic[K, T]):
    """The latest :class:`Reading` per key for one source; keeps the last good value on failure."""

    def __init__(self, source: str, max_age_s: float) -> None:
        self.source = source
        self.max_age_s = max_age_s
        self._readings: dict[K, Reading[T]] = {}

    def ok(self, key: K, value: T, fetched_at: float | None = None) -> Reading[T]:
        """Record a good value fetched at ``fetched_at`` (epoch seconds, default now)."""
        reading = Reading(
            source=self.source,
            value=value,
            fetched_at=time.time() if fetched_at is None else fetched_at,
            max_age_s=self.max_age_s,
        )
        self._readings[key] = reading
        return reading

    def fail(self, key: K, error: str) -> Reading[T]:
        """Record a failed fetch: the last good value (if any) is kept, marked with ``error``."""
        last = self._readings.get(key)
        if last is not None and last.value is not None:
            reading = Reading(
                source=self.source,
                value=last.value,
                fetched_at=last.fetched_at,
                max_age_s=self.max_age_s,
                error=error,
            )
        else:
            reading = Reading(
                source=self.source,
                value=None,
                fetched_at=time.time(),
                max_age_s=self.max_age_s,
                error=error,
            )
        self._readings[key] = reading
        return reading

    def get(self, key: K) -> Reading[T] | None:
        return self._readings.get(key)

    def snapshot(self) -> dict[K, Reading[T]]:
        """A copy of all current readings."""
        return dict(self._readings)


def describe_error(exc: BaseException, redactor: Redactor) -> str:
    """``"ErrorType: message"`` with secrets removed: what goes into ``Reading.error``."""
    return redactor.redact(f"{type(exc).__name__}: {exc}")


async def read_into(
    book: ReadingBook[K, T],
    key: K,
    fetch: Callable[[], Awaitable[T]],
    redactor: Redactor,
    log: logging.Logger,
) -> Reading[T]:
    """Run ``fetch`` and record its value, or its (redacted) error with the last good value.

    Never raises except ``CancelledError``: a bug in a parser is logged with its traceback
    and the reading goes stale, like any outage.
    """
    try:
        value = await fetch()
    except AgentError as exc:
        error = describe_error(exc, redactor)
        log.warning("%s[%s]: stale: %s", book.source, key, error)
        return book.fail(key, error)
    except Exception as exc:
        log.error("%s[%s]: unexpected error\n%s", book.source, key, redactor.format_exception(exc))
        return book.fail(key, describe_error(exc, redactor))
    return book.ok(key, value)


def require(payload: Any, *path: str | int) -> Any:
    """``payload[path[0]][path[1]]...``, or :class:`ResponseShapeError` naming the missing field."""
    node = payload
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(p) for p in path)
            raise ResponseShapeError(f"response lacks field {where}") from None
    return node


def require_int(payload: Any, *path: str | int) -> int:
    """An integer field that may arrive as a decimal string (token amounts) or a JSON int."""
    value = require(payload, *path)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ResponseShapeError(f"field {'.'.join(map(str, path))} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ResponseShapeError(f"field {'.'.join(map(str, path))} is not an integer") from None


def require_float(payload: Any, *path: str | int) -> float:
    """A numeric field (JSON number or numeric string) as float: prices and scores only."""
    value = require(payload, *path)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ResponseShapeError(f"field {'.'.join(map(str, path))} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ResponseShapeError(f"field {'.'.join(map(str, path))} is not a number") from None
    if math.isnan(number) or math.isinf(number):
        raise ResponseShapeError(f"field {'.'.join(map(str, path))} is not finite")
    return number


# --------------------------------------------------------------------------------------------
# polling


@dataclass(slots=True)
class PollStats:
    """What a :class:`Poller` did: cycles run, cycles that raised, the last (redacted) error."""

    cycles: int = 0
    failures: int = 0
    last_error: str | None = None
    last_duration_s: float = 0.0
    durations_s: list[float] = field(default_factory=list)


class Poller:
    """Calls ``poll()`` every ``interval_s`` seconds forever; an exception never ends the loop.

    Either run :meth:`run` inside the owner's ``TaskGroup`` (cancel it to stop), or use
    :meth:`start` / :meth:`aclose`, which keep the task and cancel *and await* it.
    """

    def __init__(
        self,
        name: str,
        poll: Callable[[], Awaitable[object]],
        interval_s: float,
        *,
        redactor: Redactor | None = None,
        logger: logging.Logger | None = None,
        keep_durations: int = 0,
    ) -> None:
        self.name = name
        self._poll = poll
        self.interval_s = interval_s
        self.redactor = redactor if redactor is not None else Redactor()
        self.log = logger if logger is not None else logging.getLogger(f"agent.feeds.{name}")
        self.stats = PollStats()
        self._keep_durations = keep_durations
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> bool:
        """One cycle; True when ``poll()`` returned normally. Only cancellation propagates."""
        started = time.monotonic()
        self.stats.cycles += 1
        try:
            await self._poll()
        except Exception as exc:
            self.stats.failures += 1
            self.stats.last_error = self.redactor.redact(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, AgentError):
                self.log.warning("%s: poll failed: %s", self.name, self.stats.last_error)
            else:
                self.log.error(
                    "%s: poll crashed\n%s", self.name, self.redactor.format_exception(exc)
                )
            return False
        finally:
            duration = time.monotonic() - started
            self.stats.last_duration_s = duration
            if self._keep_durations:
                self.stats.durations_s.append(duration)
                del self.stats.durations_s[: -self._keep_durations]
        return True

    async def run(self) -> None:
        """Poll forever at a fixed cadence (start-to-start), until cancelled."""
        while True:
            started = time.monotonic()
            await self.run_once()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`run` as a task this poller owns; stop it with :meth:`aclose`."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"poll:{self.name}")
        return self._task

    async def aclose(self) -> None:
        """Cancel the task started by :meth:`start` and wait until it has finished."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Our own cancellation; re-raise only if *we* are being cancelled too.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
