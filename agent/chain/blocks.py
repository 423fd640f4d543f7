"""Watching the block source: new heads, the newest only, and a head that stops advancing.

``newest(source)`` reads a head source continuously and hands its consumer the newest head
each time it asks, never a backlog: on a chain faster than the consumer (250 ms blocks, a slow
tick) the heads that came while it was busy are skipped, not queued.

``HeadMonitor.watch(source)`` wraps the block iterator the engine consumes (websocket newHeads
or polling): every new head is published as ``HeadSeen``. Its ``run()`` task (the engine's
background) publishes ``HeadStalled`` once when no new head came for ``stall_after_s`` (a few
block times), whatever the cause (a dead RPC, a stuck websocket, a halted chain), and
``HeadResumed`` with the next head. The watch starts when the source is first iterated, so a
source that is never used (tests that hand blocks to the engine themselves) never "stalls".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from agent.events import EventBus, HeadResumed, HeadSeen, HeadStalled

log = logging.getLogger(__name__)


def stall_threshold_s(block_time_s: float, poll_interval_s: float, blocks: float = 3.0) -> float:
    """How long without a new head counts as stalled: ``blocks`` block times (or poll
    intervals, when polling is slower than the chain), in seconds."""
    return blocks * max(block_time_s, poll_interval_s)


async def newest(source: AsyncIterator[int]) -> AsyncIterator[int]:
    """``source``'s heads, newest first: each step yields the latest head ``source`` gave since
    the previous step (waiting for one when there is none), so a consumer slower than the
    chain skips heads instead of working through a queue of old ones.

    ``source`` is read by a task this generator owns (started on the first step, cancelled and
    awaited when the generator is closed); what ``source`` raises is raised here, after the
    head it gave last; its end ends this generator.
    """
    latest: int | None = None
    arrived = asyncio.Event()
    ended: BaseException | None = None

    async def read() -> None:
        nonlocal latest, ended
        try:
            async for number in source:
                latest = number
                arrived.set()
        except Exception as exc:  # handed to the consumer, never lost in the task
            ended = exc
        else:
            ended = StopAsyncIteration()
        arrived.set()

    reader = asyncio.create_task(read(), name="newest head")
    try:
        while True:
            arrived.clear()
            if latest is not None:
                number, latest = latest, None
                yield number
            elif isinstance(ended, StopAsyncIteration):
                return
            elif ended is not None:
                raise ended
            else:
                await arrived.wait()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class HeadMonitor:
    """Publishes ``HeadSeen`` / ``HeadStalled`` / ``HeadResumed`` for one block source."""

    def __init__(
        self,
        events: EventBus,
        *,
        stall_after_s: float | None,
        check_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``stall_after_s`` None: heads are published, a quiet head is never a stall (a
        devnet mining on demand)."""
        self.events = events
        self.stall_after_s = stall_after_s
        self.check_every_s = check_every_s or min(1.0, (stall_after_s or 4.0) / 4)
        self._clock = clock
        self.last_head: int | None = None
        self._progress_at: float | None = None  # None until the source is first iterated
        self._stalled_at: float | None = None
        self._last_error: str | None = None

    @property
    def stalled(self) -> bool:
        return self._stalled_at is not None

    def head_age_s(self) -> float | None:
        """Seconds since the latest new head (or since the watch started), None before that."""
        return None if self._progress_at is None else self._clock() - self._progress_at

    async def watch(self, source: AsyncIterator[int]) -> AsyncIterator[int]:
        """``source``'s heads, each new one published; the stall watch starts here."""
        if self._progress_at is None:
            self._progress_at = self._clock()
        async for number in source:
            self.saw(number)
            yield number

    def saw(self, number: int) -> None:
        """A head from the source; only a higher one counts as progress."""
        if self.last_head is not None and number <= self.last_head:
            return
        now = self._clock()
        self.last_head = number
        self._last_error = None
        if self._stalled_at is not None:
            assert self._progress_at is not None
            stalled_for = now - self._progress_at
            self._stalled_at = None
            log.warning("block source resumed at block %d after %.0fs", number, stalled_for)
            self.events.publish(HeadResumed(number=number, stalled_for_s=stalled_for))
        self._progress_at = now
        self.events.publish(HeadSeen(number=number))

    def source_failed(self, exc: BaseException) -> None:
        """The source's latest failure (only its class travels: messages may name endpoints)."""
        self._last_error = type(exc).__name__

    def check(self) -> None:
        """Publish ``HeadStalled`` if the head has not advanced for ``stall_after_s`` (once)."""
        if self.stall_after_s is None or self._progress_at is None or self._stalled_at is not None:
            return
        now = self._clock()
        silent_s = now - self._progress_at
        if silent_s < self.stall_after_s:
            return
        self._stalled_at = now
        log.warning(
            "block source stalled: no new head for %.0fs (last %s)%s",
            silent_s,
            self.last_head if self.last_head is not None else "none",
            f"; latest error {self._last_error}" if self._last_error else "",
        )
        self.events.publish(
            HeadStalled(
                last_head=self.last_head, stalled_for_s=silent_s, error_class=self._last_error
            )
        )

    async def run(self) -> None:
        """Check for a stall every ``check_every_s``; the owner cancels it."""
        while True:
            await asyncio.sleep(self.check_every_s)
            self.check()
