"""What an operator can do to the running agent from a chat (the engine implements
``ControlSurface``), and where every control action is written down (``ControlJournal``)."""

from __future__ import annotations

from typing import Protocol


class ControlSurface(Protocol):
    """Operator controls. Texts are plain (channels escape them); they must hold no secrets."""

    async def pause(self, reason: str) -> None:
        """Stop opening new trades until ``resume``; in-flight trades finish."""
        ...

    async def resume(self) -> None:
        """Lift a pause or a risk halt."""
        ...

    async def kill(self) -> None:
        """Emergency stop: halt trading and shut the agent down gracefully."""
        ...

    async def status_text(self) -> str: ...

    async def balance_text(self) -> str: ...

    async def pnl_text(self) -> str: ...

    async def order_text(self, argument: str, who: str) -> str:
        """The reply to ``/order <argument>``: place, list or cancel conditional orders."""
        ...


class ControlJournal(Protocol):
    """Where control actions are journaled (``agent.store.journal.Journal`` is one): who
    (``source``, ``actor``), what (``action``, ``argument``) and whether it was obeyed."""

    async def record_control_action(
        self,
        *,
        source: str,
        actor: str,
        action: str,
        accepted: bool,
        argument: str = "",
        detail: str = "",
    ) -> None: ...
