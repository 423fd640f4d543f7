"""The day's trades and PnL, closed at the first tick of the next UTC day (``DayClosed``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from agent.events.bus import EventBus
from agent.events.types import DayClosed, Event, Tick, TradeMined, TradeReorged


def _utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, tz=UTC).date()


class DailyLedger:
    """Counts the day's fills and realised PnL (USD) from events; the first tick or fill of a
    new UTC day publishes ``DayClosed`` for the day before (once per day, on the same bus)."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.day: date | None = None
        self.trades = 0
        self.pnl_usd = 0.0
        self._equity_usd = 0.0
        self._drawdown_ratio = 0.0

    def subscribe(self) -> None:
        self.events.subscribe(self._on_event, Tick, TradeMined, TradeReorged, name="daily summary")

    def _on_event(self, event: Event) -> None:
        today = _utc_day(event.at)
        if self.day is None:
            self.day = today
        elif today != self.day:
            self.events.publish(
                DayClosed(
                    day=self.day,
                    pnl_usd=self.pnl_usd,
                    trades=self.trades,
                    equity_usd=self._equity_usd,
                    drawdown_ratio=self._drawdown_ratio,
                    at=event.at,
                )
            )
            self.day, self.trades, self.pnl_usd = today, 0, 0.0
        if isinstance(event, Tick):
            self._equity_usd = event.equity_usd
            self._drawdown_ratio = event.drawdown_ratio
        elif isinstance(event, TradeMined):
            self.trades += 1
            self.pnl_usd += event.realised_profit_usd
        elif isinstance(event, TradeReorged):
            # a correction of a fill counted today: moved (new figure) or void (gone)
            self.pnl_usd += event.realised_profit_usd_after - event.realised_profit_usd_before
            if event.outcome in ("reorged_out", "reverted"):
                self.trades = max(0, self.trades - 1)
