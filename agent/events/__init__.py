"""Typed events (what happened) and the in-process bus that carries them.

Sources publish: the block source (``HeadSeen``, ``HeadStalled``, ``HeadResumed``,
``HeadRefused``, ``HeadTrusted``), the market view (``PriceOutlier``,
``PriceOutlierCleared``, ``PoolsDrifted``), the feed watch (``FeedStale``, ``FeedFresh``,
``FeedsChecked``), the executor (``TradeSent``), the signing policy (``SigningRefusal``) and
the engine (``Tick``, ``Refusal``, ``StrategyFailed``, ``SourceFailed``, ``TradeMined``,
``TradeReverted``, ``TradeFailed``, ``TradeReorged``, ``Halt``, ``DayClosed``); the control
surface publishes ``ControlAction``. Alerts, metrics, /health and the log subscribe
(``agent.app.build`` wires them).
"""

from agent.events.bus import EventBus, Throttle
from agent.events.types import (
    HEAD_SOURCE,
    ControlAction,
    DayClosed,
    Event,
    FeedFresh,
    FeedsChecked,
    FeedStale,
    Halt,
    HeadRefused,
    HeadResumed,
    HeadSeen,
    HeadStalled,
    HeadTrusted,
    PoolsDrifted,
    PriceOutlier,
    PriceOutlierCleared,
    Refusal,
    SigningRefusal,
    SourceFailed,
    StrategyFailed,
    Tick,
    TokenRefused,
    TradeFailed,
    TradeMined,
    TradeReorged,
    TradeReverted,
    TradeSent,
)

__all__ = [
    "HEAD_SOURCE",
    "ControlAction",
    "DayClosed",
    "Event",
    "EventBus",
    "FeedFresh",
    "FeedStale",
    "FeedsChecked",
    "Halt",
    "HeadRefused",
    "HeadResumed",
    "HeadSeen",
    "HeadStalled",
    "HeadTrusted",
    "PoolsDrifted",
    "PriceOutlier",
    "PriceOutlierCleared",
    "Refusal",
    "SigningRefusal",
    "SourceFailed",
    "StrategyFailed",
    "Throttle",
    "Tick",
    "TokenRefused",
    "TradeFailed",
    "TradeMined",
    "TradeReorged",
    "TradeReverted",
    "TradeSent",
]
