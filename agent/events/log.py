"""The operator's log as a bus subscriber: what an INFO log shows of a running agent.

At INFO: a per-block summary at most every ``summary_every_s`` (with the blocks it covers),
every change of the refusal reasons (among blocks that found opportunities), every trade sent
and filled, every control action, halts and daily summaries. Trade failures are logged where
they happen (the engine), at WARNING.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from agent.events.bus import EventBus, Throttle
from agent.events.types import (
    ControlAction,
    DayClosed,
    Event,
    Halt,
    Tick,
    TradeMined,
    TradeSent,
)

_log = logging.getLogger("agent.events")


def _reasons(counts: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{reason} x{n}" for reason, n in sorted(counts.items())) or "none"


class EventLog:
    """Writes events to the ``agent.events`` logger (or ``logger``)."""

    def __init__(
        self,
        *,
        summary_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.log = logger or _log
        self._summary = Throttle(summary_every_s, clock)
        self._blocks = 0
        self._skipped = 0
        self._opportunities = 0
        self._started = 0
        self._refused: Counter[str] = Counter()
        self._last_reasons: frozenset[str] | None = None

    def subscribe(self, events: EventBus) -> None:
        events.subscribe(
            self.on_event,
            Tick,
            TradeSent,
            TradeMined,
            ControlAction,
            Halt,
            DayClosed,
            name="log",
        )

    def on_event(self, event: Event) -> None:
        if isinstance(event, Tick):
            self._on_tick(event)
        elif isinstance(event, TradeSent):
            self.log.info(
                "trade %s sent: %s %s, tx %s, predicted %+.2f USD",
                event.trade_id,
                event.strategy,
                event.route,
                event.tx_hash,
                event.predicted_profit_usd,
            )
        elif isinstance(event, TradeMined):
            self.log.info(
                "trade %s filled: %s %s in block %s, realised %+.2f USD vs predicted %+.2f USD",
                event.trade_id,
                event.strategy,
                event.route,
                event.block_number if event.block_number is not None else "-",
                event.realised_profit_usd,
                event.predicted_profit_usd,
            )
        elif isinstance(event, ControlAction):
            detail = f" ({event.detail})" if event.detail else ""
            self.log.info("control: %s by %s%s", event.action, event.who, detail)
        elif isinstance(event, Halt):
            self.log.warning("trading halted: %s %s", event.reason, event.detail)
        elif isinstance(event, DayClosed):
            self.log.info(
                "day %s closed: %d trade(s), PnL %+.2f USD, equity %.2f USD",
                event.day.isoformat(),
                event.trades,
                event.pnl_usd,
                event.equity_usd,
            )

    def _on_tick(self, tick: Tick) -> None:
        refusals = dict(tick.refusals)
        self._blocks += 1
        self._skipped += tick.heads_skipped
        self._opportunities += tick.opportunities
        self._started += tick.started
        self._refused.update(refusals)
        if tick.opportunities:
            reasons = frozenset(refusals)
            if reasons != self._last_reasons:
                self.log.info(
                    "block %d: refusal reasons now %s (were %s)",
                    tick.block,
                    _reasons(refusals),
                    ", ".join(sorted(self._last_reasons or ())) or "none",
                )
                self._last_reasons = reasons
        if self._summary.ready():
            self.log.info(
                "block %d: %d block(s) since the last summary (%d head(s) skipped for newer ones), "
                "%d opportunities, %d trade(s) started, refused: %s; equity %.2f USD",
                tick.block,
                self._blocks,
                self._skipped,
                self._opportunities,
                self._started,
                _reasons(self._refused),
                tick.equity_usd,
            )
            self._blocks = self._skipped = self._opportunities = self._started = 0
            self._refused.clear()
