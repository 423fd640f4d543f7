"""Staleness and polling: every feed result is an ``agent.types.Reading``.

* :class:`ReadingBook`: the latest reading per key; a failed fetch keeps the last good value,
  marked with the (redacted) error, and its original fetch time so its age keeps growing.
* :func:`read_into`: run one fetch into a book; never raises except on cancellation.
* :class:`Poller`: calls a feed's ``poll()`` on a cadence; an exception never ends the loop; its
  owner cancels and awaits it.
* :func:`require` and friends: pick fields out of JSON, raising ``ResponseShapeError`` that
  names the missing field.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from agent.errors import AgentError, ResponseShapeError
from agent.redaction import Redactor
from agent.types import Reading

T = TypeVar("T")
K = TypeVar("K")

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
