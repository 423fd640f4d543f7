"""The console's view of the event bus: recent history for the JSON endpoints and a fan-out of
every event to the open ``/api/events`` streams.

A bus subscriber (synchronous, never blocking the publisher): each open stream has a bounded
queue; a stream too slow to keep up loses its oldest events rather than slowing the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from agent.events import (
    ControlAction,
    Event,
    EventBus,
    FeedFresh,
    FeedsChecked,
    FeedStale,
    Halt,
    HeadResumed,
    HeadStalled,
    Refusal,
    SourceFailed,
    StrategyFailed,
    Tick,
    TradeFailed,
    TradeMined,
    TradeReorged,
    TradeReverted,
)

# What the alerts timeline shows: transitions an operator acts on, not every tick.
TIMELINE_KINDS: tuple[type[Event], ...] = (
    FeedStale,
    FeedFresh,
    HeadStalled,
    HeadResumed,
    Halt,
    ControlAction,
    TradeMined,
    TradeReverted,
    TradeReorged,
    TradeFailed,
    StrategyFailed,
    SourceFailed,
)
_JS_SAFE_INT = 2**53 - 1
STREAM_QUEUE_SIZE = 1_000
MAX_FILLED_BUCKETS = 2_000


def event_json(event: Event) -> dict[str, Any]:
    """An event as JSON-safe values: integers past 2**53 (token amounts) become strings."""
    body: dict[str, Any] = {"kind": event.kind}
    for item in dataclasses.fields(event):
        body[item.name] = _jsonable(getattr(event, item.name))
    return body


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, float | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _JS_SAFE_INT else str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class LiveFeed:
    """Recent ticks, refusals, feed ages and timeline events, and the open event streams."""

    def __init__(
        self,
        *,
        max_ticks: int = 3_600,
        max_timeline: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.started_at = clock()
        self.ticks: deque[Tick] = deque(maxlen=max_ticks)
        self.timeline: deque[Event] = deque(maxlen=max_timeline)
        self.refusals: deque[Refusal] = deque(maxlen=max_ticks)
        self.feed_ages_s: dict[str, float] = {}
        self.feeds_checked_at: float | None = None
        # USD price per token symbol at each processed block, for the price chart.
        self.prices: deque[tuple[int, dict[str, float]]] = deque(maxlen=max_ticks)
        self.prices_at_tick: Callable[[int], Mapping[str, float] | None] | None = None
        self._streams: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self, events: EventBus) -> None:
        events.subscribe(self._on_event, name="console")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Tick):
            self.ticks.append(event)
            prices = None if self.prices_at_tick is None else self.prices_at_tick(event.block)
            if prices:
                self.prices.append((event.block, dict(prices)))
        elif isinstance(event, Refusal):
            self.refusals.append(event)
        elif isinstance(event, FeedsChecked):
            self.feed_ages_s = dict(event.ages_s)
            self.feeds_checked_at = event.at
        if isinstance(event, TIMELINE_KINDS):
            self.timeline.append(event)
        if self._streams:
            body = event_json(event)
            for queue in self._streams:
                if queue.full():  # a slow reader loses its oldest events, never blocks us
                    queue.get_nowait()
                queue.put_nowait(body)

    def open_stream(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=STREAM_QUEUE_SIZE)
        self._streams.add(queue)
        return queue

    def close_stream(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._streams.discard(queue)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def refusals_over_time(self, bucket_s: float, since: float | None = None) -> dict[str, Any]:
        """Refusal counts per reason per ``bucket_s`` bucket (bucket start, unix seconds), and
        opportunities found per bucket, from the ticks this process has seen."""
        # Buckets by index (start = index * bucket_s): exact keys whatever the bucket size.
        buckets: dict[int, dict[str, int]] = {}
        found: dict[int, int] = {}
        for tick in self.ticks:
            if since is not None and tick.at < since:
                continue
            index = math.floor(tick.at / bucket_s)
            found[index] = found.get(index, 0) + tick.opportunities
            counts = buckets.setdefault(index, {})
            for reason, count in tick.refusals:
                counts[reason] = counts.get(reason, 0) + count
        totals: dict[str, int] = {}
        for counts in buckets.values():
            for reason, count in counts.items():
                totals[reason] = totals.get(reason, 0) + count
        indices = sorted(buckets)
        if indices and indices[-1] - indices[0] <= MAX_FILLED_BUCKETS:
            # Quiet buckets are zeros, not gaps a chart would draw a line across; and one
            # bucket before the first, so a lone bucket still has a time axis.
            indices = list(range(indices[0] - 1, indices[-1] + 1))
        return {
            "bucket_s": bucket_s,
            "buckets": [
                {
                    "start": index * bucket_s,
                    "opportunities": found.get(index, 0),
                    "refusals": buckets.get(index, {}),
                }
                for index in indices
            ],
            "totals": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
        }
