"""The strategy interface: one required method, optional hooks with defaults.

A strategy is pure: ``evaluate`` reads a ``MarketSnapshot`` and a ``PortfolioView`` and returns
opportunities. It never holds a web3 object, a key, a DB session or an HTTP session, and it
never sends anything; the engine decides and acts. State that must survive a restart is
returned by ``state()`` and handed back to ``on_start``; the engine persists it.

The engine never calls one strategy from two threads at once: ``evaluate`` runs in a worker
thread (so a slow strategy cannot stall the loop), and ``on_start``, ``on_fill``,
``on_fill_changed`` and ``state`` are only called while no evaluation of that strategy is
running. Strategies need no locks.

A chain fill already handed to ``on_fill`` can still be undone by a reorg before it is final:
the engine then calls ``on_fill_changed(before, after)`` (``after`` None: the fill is void;
else the reorg moved it and ``after`` has the amounts it realised there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import ConditionalOrder, Fill, NotFilled, Opportunity, OrderUpdate


@dataclass(frozen=True, slots=True)
class FloatRange:
    """A searchable float parameter: ``low..high`` (on a log scale when ``log``), in ``step``s."""

    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True, slots=True)
class IntRange:
    """A searchable integer parameter: ``low..high`` inclusive, in ``step``s."""

    low: int
    high: int
    step: int = 1


@dataclass(frozen=True, slots=True)
class Choice:
    """A searchable parameter taking one of ``options``."""

    options: tuple[str | int | float | bool, ...]


SearchDimension = FloatRange | IntRange | Choice


class StrategyParams(BaseModel):
    """Base of every strategy's parameters (the ``[strategies.<name>]`` table of agent.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True

    @classmethod
    def search_space(cls) -> dict[str, SearchDimension]:
        """The parameters ``defi-agent hyperopt`` may tune, by field name (none by default).

        Declared here, beside the fields, so a new parameter and its sensible range are written
        together; the search library (Optuna) is only known to ``agent.research.hyperopt``.
        """
        return {}


ParamsT = TypeVar("ParamsT", bound=StrategyParams)


@runtime_checkable
class Strategy(Protocol):
    name: str

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        """Opportunities worth trading now, best first or in any order (the engine ranks)."""
        ...

    def on_start(self, state: Mapping[str, Any] | None) -> None: ...

    def on_fill(self, fill: Fill | NotFilled) -> None: ...

    def state(self) -> dict[str, Any]: ...


@runtime_checkable
class TakesOrders(Protocol):
    """A strategy that executes the journal's conditional orders. The engine, which owns the
    journal, hands it the active orders before each evaluation and records its updates after
    (both only while no evaluation of it is running)."""

    def load_orders(self, orders: Sequence[ConditionalOrder]) -> None: ...

    def order_updates(self) -> list[OrderUpdate]: ...


@runtime_checkable
class HearsReorgs(Protocol):
    """A strategy told when a reorg undid or moved a fill it already got in ``on_fill``."""

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None: ...


class BaseStrategy(Generic[ParamsT]):
    """Default hooks; subclasses set ``name`` and ``Params`` and implement ``evaluate``."""

    name: ClassVar[str] = "base"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: ParamsT) -> None:
        self.params = params

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        raise NotImplementedError

    def on_start(self, state: Mapping[str, Any] | None) -> None:
        """Restore persisted state (``None`` on a first start)."""

    def on_fill(self, fill: Fill | NotFilled) -> None:
        """Called after one of this strategy's proposals settled: a ``Fill`` when it traded,
        a ``NotFilled`` when it was refused by the risk gate, skipped because its pair was
        busy, failed or reverted (``intent_id`` is then the opportunity id or the intent id),
        so the strategy can re-arm at once instead of waiting for its proposal to expire."""

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None:
        """A reorg changed ``before``, a fill already given to ``on_fill``: ``after`` None when
        it is void (reorged out, or reverted where it was mined again), else the same trade
        moved to another block with the amounts it realised there. Undo (or correct) what
        ``on_fill`` recorded for it; nothing by default."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state to persist after each tick (empty when stateless)."""
        return {}
