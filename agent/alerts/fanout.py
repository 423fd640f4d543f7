"""Fan an alert out to every enabled channel, each channel's failure isolated.

Two ways to use it, both without fire-and-forget tasks:

* ``await fanout.send(event)``: delivers to all channels concurrently and returns when every
  channel has finished (or timed out). Never raises for a channel's failure.
* ``fanout.post(event)`` + ``fanout.run()``: ``post`` enqueues without waiting (for the tick
  loop, which must not wait on Telegram's 1 msg/s); the owner runs ``run()`` in its TaskGroup,
  and on shutdown calls ``stop()``, after which ``run()`` delivers what is queued and returns.

A failure is logged (channel name and a secret-free reason), counted per channel and kept in the
delivery history that ``status`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from agent.alerts.base import AlertEvent, Notifier, Severity
from agent.errors import AgentError
from agent.resilience import Clock

logger = logging.getLogger(__name__)

Outcome = Literal["sent", "failed"]


@dataclass(frozen=True, slots=True)
class Channel:
    """A notifier plus the least severe event it wants."""

    notifier: Notifier
    min_severity: Severity = Severity.INFO
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One event delivered (or not) to one channel; times are ``time.time()`` seconds."""

    channel: str
    kind: str
    title: str
    severity: Severity
    outcome: Outcome
    event_at: float
    finished_at: float
    error: str | None = None


@dataclass(slots=True)
class ChannelStats:
    sent: int = 0
    failed: int = 0
    filtered: int = 0  # below the channel's min severity
    last_error: str | None = None
    last_sent_at: float | None = None


def _safe_reason(exc: BaseException) -> str:
    """Our own errors promise secret-free messages; anything else is reduced to its class."""
    if isinstance(exc, AgentError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class _Stop:
    """Queue sentinel: everything before it is delivered, then ``run()`` returns."""


class AlertFanout:
    """Delivers events to channels concurrently; also a ``Notifier`` itself (name ``fanout``)."""

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        send_timeout_s: float = 60.0,
        max_queued: int = 1000,
        history_size: int = 200,
        on_delivery: Callable[[DeliveryRecord], None] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._channels = [channel for channel in channels if channel.enabled]
        names = [channel.notifier.name for channel in self._channels]
        if len(set(names)) != len(names):
            raise ValueError(f"alert channel names must be unique, got {names}")
        self._send_timeout_s = send_timeout_s
        self._max_queued = max_queued
        self._on_delivery = on_delivery
        self._clock = clock
        self._queue: asyncio.Queue[AlertEvent | _Stop] = asyncio.Queue()
        self._stopping = False
        self._history: deque[DeliveryRecord] = deque(maxlen=history_size)
        self._stats = {name: ChannelStats() for name in names}
        self.dropped = 0

    @property
    def name(self) -> str:
        return "fanout"

    @property
    def channel_names(self) -> list[str]:
        return [channel.notifier.name for channel in self._channels]

    @property
    def history(self) -> list[DeliveryRecord]:
        """Recent deliveries, oldest first."""
        return list(self._history)

    @property
    def stats(self) -> dict[str, ChannelStats]:
        return dict(self._stats)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def send(self, event: AlertEvent) -> None:
        """Deliver ``event`` to every channel that wants it; returns when all have finished."""
        wanted = []
        for channel in self._channels:
            if event.severity >= channel.min_severity:
                wanted.append(channel)
            else:
                self._stats[channel.notifier.name].filtered += 1
        if not wanted:
            return
        async with asyncio.TaskGroup() as group:
            for channel in wanted:
                group.create_task(self._deliver(channel.notifier, event))

    async def _deliver(self, notifier: Notifier, event: AlertEvent) -> None:
        error: str | None = None
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await notifier.send(event)
        except TimeoutError:
            error = f"timed out after {self._send_timeout_s:g}s"
        except Exception as exc:
            error = _safe_reason(exc)
        stats = self._stats[notifier.name]
        now = self._clock()
        if error is None:
            stats.sent += 1
            stats.last_sent_at = now
        else:
            stats.failed += 1
            stats.last_error = error
            logger.warning(
                "alert channel %s failed to deliver %s: %s", notifier.name, event.kind, error
            )
        record = DeliveryRecord(
            channel=notifier.name,
            kind=event.kind,
            title=event.title(),
            severity=event.severity,
            outcome="sent" if error is None else "failed",
            event_at=event.at,
            finished_at=now,
            error=error,
        )
        self._history.append(record)
        if self._on_delivery is not None:
            try:
                self._on_delivery(record)
            except Exception:
                logger.exception("alert delivery callback failed")

    def post(self, event: AlertEvent) -> bool:
        """Queue ``event`` for ``run()`` without waiting. False (and counted) when dropped."""
        if self._stopping:
            logger.warning("alert %s posted after stop(); dropped", event.kind)
            self.dropped += 1
            return False
        if self._queue.qsize() >= self._max_queued:
            logger.warning("alert queue full (%d); %s dropped", self._max_queued, event.kind)
            self.dropped += 1
            return False
        self._queue.put_nowait(event)
        return True

    def stop(self) -> None:
        """Ask ``run()`` to deliver what is queued and return. Idempotent."""
        if not self._stopping:
            self._stopping = True
            self._queue.put_nowait(_Stop())

    async def run(self) -> None:
        """The delivery worker for ``post``: run it in the owner's TaskGroup."""
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Stop):
                    return
                await self.send(item)
        except asyncio.CancelledError:
            # Cancelled instead of stop(): say what is lost rather than dropping it silently.
            lost = self._queue.qsize() - (1 if self._stopping else 0)
            if lost:
                logger.warning("alert worker cancelled with %d event(s) undelivered", lost)
            raise

    async def aclose(self) -> None:
        """Close every channel; one failing to close does not stop the others."""
        for channel in self._channels:
            try:
                await channel.notifier.aclose()
            except Exception as exc:
                logger.warning(
                    "alert channel %s failed to close: %s", channel.notifier.name, _safe_reason(exc)
                )

    def status_lines(self, recent: int = 5) -> list[str]:
        """Human lines for ``status``: per-channel counters, then the latest deliveries."""
        lines = []
        for name, stats in self._stats.items():
            line = f"{name}: sent {stats.sent}, failed {stats.failed}, filtered {stats.filtered}"
            if stats.last_error:
                line += f" (last error: {stats.last_error})"
            lines.append(line)
        if self.dropped:
            lines.append(f"dropped (queue full or stopped): {self.dropped}")
        for record in list(self._history)[-recent:]:
            when = time.strftime("%H:%M:%S", time.gmtime(record.finished_at))
            lines.append(f"{when} {record.channel} {record.outcome}: {record.title}")
        return lines
