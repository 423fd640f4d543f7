"""What every console route reads (``ConsoleContext``) and the dependencies that guard them.

Routers get the context with ``Depends(console_context)`` and require the bearer token with
``dependencies=[Depends(require_token)]``; a router with its own authentication (a signed
webhook, say) simply leaves the token dependency out. The IP allowlist is middleware: it
covers everything the app serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from agent.alerts.control import ControlSurface
from agent.console.auth import ConsoleAuth
from agent.console.live import LiveFeed

if TYPE_CHECKING:  # the app layer builds the console and hands it the parts
    from agent.app.build import AgentParts


@dataclass
class ConsoleContext:
    """The running agent as the console sees it. ``control`` acts as ``who="api"``."""

    parts: AgentParts
    control: ControlSurface
    auth: ConsoleAuth
    live: LiveFeed

    async def journal_control_action(
        self, action: str, *, accepted: bool, argument: str = "", detail: str = ""
    ) -> None:
        """Journal a control action from the API, where the journal records them."""
        record: Any = getattr(self.parts.journal, "record_control_action", None)
        if record is not None:
            await record(
                source="api",
                actor="api",
                action=action,
                accepted=accepted,
                argument=argument,
                detail=detail,
            )


def console_context(request: Request) -> ConsoleContext:
    context: ConsoleContext = request.app.state.console
    return context


def require_token(request: Request) -> None:
    """401 unless ``Authorization: Bearer <token>`` carries the console token."""
    context = console_context(request)
    if not context.auth.bearer_ok(request.headers.get("authorization")):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
