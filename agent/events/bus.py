"""The in-process event bus: sources publish facts, subscribers (alerts, metrics, /health, the
log) react. One bus per agent, built in ``agent.app.build`` and passed by constructor; never a
module-level singleton.

``publish`` is synchronous and never raises into the publisher: each subscriber runs in turn,
and one that raises is logged (throttled), counted and skipped, the others still run. An event
published from inside a subscriber is delivered after the current one (in order, no
recursion), so subscribers may publish derived events (a day closed, say).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.events.types import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


class Throttle:
    """Says yes at most once per ``interval_s`` (monotonic clock) and counts the noes: for log
    lines that would otherwise repeat on every retry."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def ready(self) -> bool:
        """True (and the suppressed count restarts) when the interval has passed."""
        now = self._clock()
        if self._last is None or now - self._last >= self.interval_s:
            self._last = now
            return True
        self.suppressed += 1
        return False

    def reset(self) -> None:
        """Forget the last time: the next ``ready`` says yes (a new episode starts)."""
        self._last = None
        self.suppressed = 0


@dataclass
class _Subscriber:
    name: str
    kinds: tuple[type[Event], ...]
    handler: Callable[[Any], None]
    failures: int = 0
    throttle: Throttle | None = None


class EventBus:
    """Synchronous fan-out of events to subscribers, each isolated from the others."""

    def __init__(self, *, failure_log_interval_s: float = 60.0) -> None:
        self._subscribers: list[_Subscriber] = []
        self._pending: deque[Event] = deque()
        self._delivering = False
        self._failure_log_interval_s = failure_log_interval_s
        self.published = 0

    def subscribe(
        self, handler: Callable[[E], None], *kinds: type[E], name: str | None = None
    ) -> None:
        """Call ``handler`` with every published event that is an instance of one of ``kinds``
        (every event when none is given). ``name`` labels its failures in the log."""
        label = name or getattr(handler, "__qualname__", None) or repr(handler)
        self._subscribers.append(
            _Subscriber(label, tuple(kinds), handler, 0, Throttle(self._failure_log_interval_s))
        )

    @property
    def failures(self) -> dict[str, int]:
        """Subscriber failures so far, per subscriber name."""
        return {s.name: s.failures for s in self._subscribers if s.failures}

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every interested subscriber. Never raises."""
        self._pending.append(event)
        self.published += 1
        if self._delivering:
            return  # published by a subscriber: the outer loop delivers it next
        self._delivering = True
        try:
            while self._pending:
                self._deliver(self._pending.popleft())
        finally:
            self._delivering = False

    def _deliver(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.kinds and not isinstance(event, subscriber.kinds):
                continue
            try:
                subscriber.handler(event)
            except Exception:
                subscriber.failures += 1
                if subscriber.throttle is None or subscriber.throttle.ready():
                    log.exception(
                        "event subscriber %s failed on %s (%d failure(s) so far)",
                        subscriber.name,
                        event.kind,
                        subscriber.failures,
                    )
