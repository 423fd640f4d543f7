"""Feed freshness as transitions: ``FeedStale`` when a source's newest good reading gets too
old, ``FeedFresh`` when it has a good one again, and ``FeedsChecked`` (ages, for the gauges)
on every check.

A source is stale when none of its readings has a good value younger than its ``max_age_s``.
One failed fetch followed by a good one is not an outage: the watch goes by the age of the
last good value, so a retry never alerts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from agent.events import EventBus, FeedFresh, FeedsChecked, FeedStale
from agent.types import Reading

log = logging.getLogger(__name__)

ReadingSource = Callable[[], Iterable[Reading[Any]]]


class FeedWatch:
    """Publishes feed freshness transitions; ``required`` sources (default: all) degrade
    /health when stale. ``clock`` is ``time.time`` seconds (readings are stamped with it)."""

    def __init__(
        self,
        events: EventBus,
        readings: ReadingSource,
        *,
        required: Collection[str] | None = None,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.events = events
        self._readings = readings
        self._required = None if required is None else frozenset(required)
        self.check_every_s = check_every_s
        self._clock = clock
        self._stale_since: dict[str, float] = {}  # source -> fetched_at of its last good value

    @property
    def stale_sources(self) -> list[str]:
        return sorted(self._stale_since)

    def check(self) -> None:
        """Compare every source's freshness with the previous check; publish what changed."""
        now = self._clock()
        newest: dict[str, Reading[Any]] = {}
        errors: dict[str, str] = {}
        fresh: dict[str, bool] = {}
        for reading in self._readings():
            source = reading.source
            good = reading.value is not None and reading.age_s(now) <= reading.max_age_s
            fresh[source] = fresh.get(source, False) or good
            if reading.error:
                errors[source] = reading.error
            # the newest good value of the source (or, while it has none, any attempt)
            best = newest.get(source)
            if best is None or (
                reading.value is not None
                and (best.value is None or reading.fetched_at > best.fetched_at)
            ):
                newest[source] = reading
        ages = {s: max(0.0, now - r.fetched_at) for s, r in newest.items()}
        self.events.publish(FeedsChecked(ages_s=tuple(sorted(ages.items()))))
        for source, is_fresh in sorted(fresh.items()):
            since = newest[source].fetched_at
            if not is_fresh and source not in self._stale_since:
                self._stale_since[source] = since
                required = self._required is None or source in self._required
                log.warning(
                    "feed %s is stale (last good value %.0fs old)%s",
                    source,
                    ages[source],
                    f": {errors[source]}" if source in errors else "",
                )
                self.events.publish(
                    FeedStale(
                        source=source,
                        stale_for_s=ages[source],
                        error=errors.get(source),
                        required=required,
                    )
                )
            elif is_fresh and source in self._stale_since:
                down_for = now - self._stale_since.pop(source)
                log.warning("feed %s is fresh again after %.0fs", source, down_for)
                self.events.publish(FeedFresh(source=source, stale_for_s=down_for))

    async def run(self) -> None:
        """Check every ``check_every_s``; the owner cancels it."""
        while True:
            await asyncio.sleep(self.check_every_s)
            self.check()
