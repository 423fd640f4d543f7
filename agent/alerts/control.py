"""What an operator can do to the running agent from a chat: the engine implements this."""

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
