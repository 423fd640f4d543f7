"""Pieces shared by the HTTP alert channels: a token bucket, retry waits and secret redaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from tenacity import RetryCallState

from agent.errors import RateLimitedError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """Allows ``rate_per_s`` acquisitions per second on average, bursts up to ``capacity``.

    ``acquire()`` waits (with the injected ``sleep``) until a token is available; waiters are
    served one at a time so a burst cannot overdraw the bucket.
    """

    def __init__(
        self,
        rate_per_s: float,
        capacity: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("rate_per_s must be > 0 and capacity >= 1")
        self._rate_per_s = rate_per_s
        self._capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._sleep = sleep
        self._updated_at = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed_s = max(0.0, now - self._updated_at)
        self._tokens = min(self._capacity, self._tokens + elapsed_s * self._rate_per_s)
        self._updated_at = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                await self._sleep((1 - self._tokens) / self._rate_per_s)
                self._refill()
            self._tokens -= 1

    def pause_for(self, seconds: float) -> None:
        """Empty the bucket so the next token appears after ``seconds`` (a server's 429)."""
        self._refill()
        self._tokens = min(self._tokens, 1 - seconds * self._rate_per_s)


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


class Redactor:
    """Replaces every occurrence of the given secrets in a text with ``<redacted>``.

    Used on anything derived from a request (exception texts, response descriptions) before it
    is logged or raised, because aiohttp puts the full URL, secret path and all, in its errors.
    """

    MASK = "<redacted>"

    def __init__(self, secrets: Iterable[str]) -> None:
        from urllib.parse import quote

        variants: set[str] = set()
        for secret in secrets:
            if secret:
                variants.update({secret, quote(secret, safe=""), quote(secret)})
        # Longest first so a secret containing another is masked whole.
        self._secrets = sorted(variants, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.MASK)
        return text
