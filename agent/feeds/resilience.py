"""Source-independent resilience: typed errors, secret redaction, rate limit, circuit breaker
and retries (:class:`SourceGuard`), shared by the HTTP feeds and the ccxt CEX client.

* :class:`TokenBucket`: a rate limit per source; ``pause_until`` holds it for a Retry-After.
* :class:`SourceGuard`: timeout per attempt, tenacity retries with exponential backoff and
  jitter on ``TemporaryError`` (5xx, 429, timeouts, dropped connections, malformed JSON), waiting
  exactly what Retry-After asked for; other errors (4xx, schema drift) are not retried. A
  Retry-After longer than the policy's cap is not waited out inside a call: the source stays
  paused and later calls fail fast.
* :class:`CircuitBreaker`: open after N consecutive failed attempts, half-open after a cool-down
  (one trial), closed by a success.
* :class:`Redactor` / :class:`RedactingLogger`: API keys never reach a log line, an exception
  message or a ``Reading.error``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from agent.errors import (
    AgentError,
    CircuitOpenError,
    HttpStatusError,
    RateLimitedError,
    ResponseShapeError,
    ServerError,
    TemporaryError,
)

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
        try:
            await self.bucket.acquire()
            self.stats.requests += 1
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
            # Cancelled (even while waiting for a token) or a bug in ``attempt``: proves
            # nothing about the source, but must not leave a half-open trial hanging.
            self.breaker.release_trial()
            raise
        self.breaker.record_success()
        return result
