"""Alerts as a bus subscriber: the events an operator must hear about become alert cards.

Each alert fires once per transition: a feed (or the chain head) going down alerts once and
its recovery once, however many retries fail in between; a strategy that keeps failing alerts
when it starts failing, and again only after it has evaluated cleanly.

| event                         | alert card        |
| ----------------------------- | ----------------- |
| HeadStalled / FeedStale       | FeedDown          |
| HeadResumed / FeedFresh       | FeedRecovered     |
| TradeSent                     | TradeSent         |
| TradeMined                    | TradeFilled       |
| TradeReverted / TradeFailed   | TradeReverted     |
| TradeReorged                  | TradeReorgedAlert |
| SigningRefusal (not "risk")   | SigningRefused    |
| Halt                          | RiskHalt          |
| StrategyFailed                | StrategyError     |
| SourceFailed                  | SourceFailed      |
| DayClosed                     | DailySummary      |
| HeadRefused                   | HeadRefused       |
| PriceOutlier                  | PriceOutlier      |

A run of refused heads alerts once, until a plausible head (``HeadTrusted``) ends it; a pool
alerts once when it becomes a price outlier, again only after ``PriceOutlierCleared``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from agent import events as ev
from agent.alerts import base as cards
from agent.types import Token


class AlertPoster(Protocol):
    """Where cards go without waiting (``AlertFanout.post``)."""

    def post(self, event: cards.AlertEvent) -> bool: ...


class AlertSubscriber:
    """Maps bus events to alert cards and posts them, once per transition."""

    def __init__(self, alerts: AlertPoster, tokens: Mapping[str, Token]) -> None:
        self.alerts = alerts
        self.tokens = tokens
        self._down: set[str] = set()  # sources alerted down and not yet recovered
        self._failing: dict[str, int] = {}  # strategy -> failures since it last alerted
        self._refusing_heads = False  # a refused head alerted, no plausible head since
        self._outliers: set[str] = set()  # pools alerted as price outliers, not yet cleared

    def subscribe(self, events: ev.EventBus) -> None:
        events.subscribe(self.on_event, name="alerts")

    def on_event(self, event: ev.Event) -> None:
        card = self.card_for(event)
        if card is not None:
            self.alerts.post(card)

    def card_for(self, event: ev.Event) -> cards.AlertEvent | None:
        """The alert ``event`` deserves now, or None (not alert-worthy, or already alerted)."""
        match event:
            case ev.HeadStalled():
                return self._down_card(ev.HEAD_SOURCE, event.stalled_for_s, event.error_class)
            case ev.FeedStale():
                error_class = event.error.split(":", 1)[0] if event.error else None
                return self._down_card(event.source, event.stale_for_s, error_class)
            case ev.HeadResumed():
                return self._recovered_card(ev.HEAD_SOURCE, event.stalled_for_s)
            case ev.FeedFresh():
                return self._recovered_card(event.source, event.stale_for_s)
            case ev.TradeSent():
                token = self.tokens.get(event.token_in) or Token(event.token_in, "?", 18)
                return cards.TradeSent(
                    trade_id=event.trade_id,
                    strategy=event.strategy,
                    route=event.route,
                    tx_hash=event.tx_hash,
                    token_in=token,
                    amount_in_wei=event.amount_in_wei,
                    predicted_profit_usd=event.predicted_profit_usd,
                    at=event.at,
                )
            case ev.TradeMined():
                return cards.TradeFilled(
                    trade_id=event.trade_id,
                    strategy=event.strategy,
                    route=event.route,
                    tx_hash=event.tx_hash or "",
                    block_number=event.block_number or 0,
                    predicted_profit_usd=event.predicted_profit_usd,
                    realised_profit_usd=event.realised_profit_usd,
                    gas_cost_usd=event.gas_cost_usd,
                    at=event.at,
                )
            case ev.TradeReverted():
                return cards.TradeReverted(
                    trade_id=event.trade_id,
                    strategy=event.strategy,
                    route=event.route,
                    reason=event.reason,
                    tx_hash=event.tx_hash,
                    gas_cost_usd=event.gas_cost_usd,
                    at=event.at,
                )
            case ev.TradeReorged():
                return cards.TradeReorgedAlert(
                    trade_id=event.trade_id,
                    strategy=event.strategy,
                    outcome=event.outcome,
                    tx_hash=event.tx_hash,
                    old_block=event.old_block,
                    new_block=event.new_block,
                    realised_profit_usd_before=event.realised_profit_usd_before,
                    realised_profit_usd_after=event.realised_profit_usd_after,
                    detail=event.detail,
                    at=event.at,
                )
            case ev.TokenRefused():
                known = self.tokens.get(event.token)
                return cards.TokenCooledDown(
                    token=known.symbol if known else event.token,
                    reason=event.reason,
                    cooldown_s=event.cooldown_s,
                    at=event.at,
                )
            case ev.TradeFailed():
                return cards.TradeReverted(
                    trade_id=event.trade_id,
                    strategy=event.strategy,
                    route=event.route,
                    reason=event.reason,
                    at=event.at,
                )
            case ev.SigningRefusal():
                # the gate's refusals (pause, halt) are alerted where they are raised; the
                # policy's are a transaction someone tried to make us sign
                if event.rule == "risk":
                    return None
                return cards.SigningRefusedAlert(
                    purpose=event.purpose,
                    rule=event.rule,
                    reason=event.reason,
                    trade_id=event.trade_id,
                    target=event.target,
                    at=event.at,
                )
            case ev.Halt():
                return cards.RiskHalt(reason=event.reason, detail=event.detail, at=event.at)
            case ev.StrategyFailed():
                return self._strategy_card(event)
            case ev.SourceFailed():  # the engine publishes it once per outage
                return cards.SourceFailed(
                    source=event.source,
                    error_class=event.error_class,
                    restart_in_s=event.restart_in_s,
                    at=event.at,
                )
            case ev.Tick():
                # a strategy that evaluated cleanly on this block may alert again next time
                for strategy in list(self._failing):
                    if strategy not in event.failed_strategies:
                        del self._failing[strategy]
                return None
            case ev.HeadRefused():
                if self._refusing_heads:
                    return None
                self._refusing_heads = True
                return cards.HeadRefused(
                    number=event.number,
                    reason=event.reason,
                    last_good=event.last_good,
                    detail=event.detail,
                    at=event.at,
                )
            case ev.HeadTrusted():
                self._refusing_heads = False
                return None
            case ev.PriceOutlier():
                if event.pool in self._outliers:
                    return None
                self._outliers.add(event.pool)
                return cards.PriceOutlier(
                    symbol=event.symbol,
                    pool=event.pool,
                    dex=event.dex,
                    pool_price_usd=event.pool_price_usd,
                    price_usd=event.price_usd,
                    deviation=event.deviation,
                    at=event.at,
                )
            case ev.PriceOutlierCleared():
                self._outliers.discard(event.pool)
                return None
            case ev.DayClosed():
                return cards.DailySummary(
                    day=event.day,
                    pnl_usd=event.pnl_usd,
                    trades=event.trades,
                    equity_usd=event.equity_usd,
                    drawdown_ratio=event.drawdown_ratio,
                    at=event.at,
                )
        return None

    def _down_card(
        self, source: str, stale_for_s: float, error_class: str | None
    ) -> cards.FeedDown | None:
        if source in self._down:
            return None
        self._down.add(source)
        return cards.FeedDown(source=source, stale_for_s=stale_for_s, error_class=error_class)

    def _recovered_card(self, source: str, down_for_s: float) -> cards.FeedRecovered | None:
        if source not in self._down:
            return None
        self._down.discard(source)
        return cards.FeedRecovered(source=source, down_for_s=down_for_s)

    def _strategy_card(self, event: ev.StrategyFailed) -> cards.StrategyError | None:
        seen = self._failing.get(event.strategy)
        self._failing[event.strategy] = (seen or 0) + 1
        if seen is not None:
            return None  # still failing: alerted when it started
        return cards.StrategyError(strategy=event.strategy, error_class=event.error_class)
