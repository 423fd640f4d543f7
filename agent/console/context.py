"""What every console route reads (``ConsoleContext``) and the dependencies that guard them.

Routers get the context with ``Depends(console_context)`` and require the bearer token with
``dependencies=[Depends(require_token)]``; a router with its own authentication (a signed
webhook, say) simply leaves the token dependency out. The IP allowlist is middleware: it
covers everything the app serves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fastapi import HTTPException, Request
from web3 import AsyncWeb3

from agent.alerts.control import ControlSurface
from agent.config.models import AgentConfig
from agent.console.auth import ConsoleAuth
from agent.console.live import LiveFeed
from agent.console.webhook_auth import SignalSink, WebhookReceiver
from agent.dex.pools import PoolRegistry
from agent.engine.loop import Engine
from agent.market.portfolio import Portfolio
from agent.metrics.server import HealthState
from agent.risk.gate import RiskGate
from agent.store.journal import Journal
from agent.types import Token

log = logging.getLogger(__name__)


class AgentView(Protocol):
    """What the console reads of the running agent (``agent.app.build.AgentParts`` is one):
    the app layer builds the console and hands it the parts, the console never imports it."""

    @property
    def cfg(self) -> AgentConfig: ...
    @property
    def mode(self) -> str: ...
    @property
    def w3(self) -> AsyncWeb3[Any]: ...
    @property
    def registry(self) -> PoolRegistry: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def portfolio(self) -> Portfolio: ...
    @property
    def risk(self) -> RiskGate: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def tokens(self) -> Mapping[str, Token]: ...
    @property
    def account(self) -> str | None: ...
    @property
    def arb_executor(self) -> str | None: ...
    @property
    def health(self) -> HealthState: ...
    @property
    def run_id(self) -> int | None: ...


@runtime_checkable
class HolderBalances(Protocol):
    """A balance source that tells holders apart (the chain modes' ``BalanceReader``)."""

    async def by_holder(self, block: int) -> dict[str, dict[str, int]]: ...


@dataclass
class ConsoleContext:
    """The running agent as the console sees it. ``control`` acts as ``who="api"``."""

    parts: AgentView
    control: ControlSurface
    auth: ConsoleAuth
    live: LiveFeed
    # The [webhooks.*] endpoints and where their signals go (the signal strategy's queue);
    # None when no webhook is configured or the strategy is not running.
    webhooks: WebhookReceiver | None = None
    signals: SignalSink | None = None

    async def journal_control_action(
        self,
        request: Request,
        action: str,
        *,
        accepted: bool,
        argument: str = "",
        detail: str = "",
    ) -> None:
        """Journal a control action from the API, by the client's address. A journal that
        cannot take it does not undo the action (it is logged and published anyway)."""
        actor = request.client.host if request.client is not None else "unknown"
        try:
            await self.parts.journal.record_control_action(
                source="api",
                actor=actor,
                action=action,
                accepted=accepted,
                argument=argument,
                detail=detail,
            )
        except Exception as exc:
            log.error("cannot journal the console's %s: %s", action, type(exc).__name__)


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
