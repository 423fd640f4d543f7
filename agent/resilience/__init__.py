"""The one outbound-HTTP resilience layer: typed errors, rate limit, Retry-After, circuit breaker
and retries (:class:`SourceGuard`), shared by the HTTP feeds, the ccxt CEX client and the alert
channels (Telegram, Discord); the JSON-RPC client reads Retry-After with it too.

* :class:`TokenBucket`: a rate limit per source (or per chat); ``pause_until`` / ``pause_for``
  hold it for a Retry-After.
* :func:`parse_retry_after`: a ``Retry-After`` header in seconds; :class:`RetryPolicy`: the
  tenacity retries of a client that drives its own requests (the alert channels).
* :class:`SourceGuard`: timeout per attempt, tenacity retries with exponential backoff and
  jitter on ``TemporaryError`` (5xx, 429, timeouts, dropped connections, malformed JSON), waiting
  exactly what Retry-After asked for; other errors (4xx, schema drift) are not retried. A
  Retry-After longer than the policy's cap is not waited out inside a call: the source stays
  paused and later calls fail fast.
* :class:`CircuitBreaker`: open after N consecutive failed attempts, half-open after a cool-down
  (one trial), closed by a success.
* :class:`RedactingLogger`: third-party log lines pass through the one
  :class:`agent.redaction.Redactor`, so API keys never reach a log line.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
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
from agent.redaction import Redactor

T = TypeVar("T")
K = TypeVar("K")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# --------------------------------------------------------------------------------------------
# errors


# --------------------------------------------------------------------------------------------
# secrets


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
    """Token bucket: ``burst`` tokens, refilled at ``rate_per_s``; :meth:`acquire` waits for one
    (FIFO through a lock, so a burst of waiters cannot overdraw it).

    :meth:`pause_until` / :meth:`pause_for` block the bucket for a server's Retry-After. ``clock``
    and ``sleep`` are injected so tests can drive time.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        clock: Clock = time.monotonic,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause_until(self, until_monotonic: float) -> None:
        """No token is handed out before ``until_monotonic`` (clock seconds)."""
        self._paused_until = max(self._paused_until, until_monotonic)

    def pause_for(self, seconds: float) -> None:
        """No token is handed out for the next ``seconds`` (a server's 429 Retry-After)."""
        self.pause_until(self._clock() + seconds)

    def paused_for(self) -> float:
        """Seconds left of a pause, 0 when not paused."""
        return max(0.0, self._paused_until - self._clock())

    def _refill(self) -> None:
        now = self._clock()
        elapsed_s = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate)
        self._updated = now

    async def acquire(self) -> None:
        """Take one token, sleeping until one is available."""
        async with self._lock:
            while True:
                pause = self.paused_for()
                if pause > 0:
                    await self._sleep(pause)
                    continue
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self._rate)


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


def retry_wait(base_backoff_s: float, max_backoff_s: float) -> Callable[[RetryCallState], float]:
    """A tenacity ``wait``: the server's ``retry_after`` on 429, else exponential backoff."""

    def wait(retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
            return max(0.0, exc.retry_after_s)
        attempt = max(1, retry_state.attempt_number)
        return float(min(max_backoff_s, base_backoff_s * 2 ** (attempt - 1)))

    return wait


def retry_unless_long_wait(max_retry_after_s: float) -> Callable[[RetryCallState], bool]:
    """A tenacity ``retry``: temporary errors are retried, but not a 429 whose Retry-After is
    longer than ``max_retry_after_s`` (a flood wait of minutes would stall everything behind)."""

    def should_retry(retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimitedError):
            return exc.retry_after_s is None or exc.retry_after_s <= max_retry_after_s
        return isinstance(exc, TemporaryError)

    return should_retry


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one request for a client that sends its own (the alert channels): temporary
    errors with exponential backoff, a 429 after its Retry-After unless that is longer than
    ``max_retry_after_s`` (a flood wait of minutes would stall everything queued behind)."""

    max_attempts: int = 4
    base_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0

    def retrying(self, sleep: Sleep = asyncio.sleep) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_unless_long_wait(self.max_retry_after_s),
            stop=stop_after_attempt(self.max_attempts),
            wait=retry_wait(self.base_backoff_s, self.max_backoff_s),
            sleep=sleep,
            reraise=True,
        )


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
