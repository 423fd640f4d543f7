"""The running agent's control surface, shared by Telegram commands and (later) the HTTP API."""

from __future__ import annotations

import logging
from typing import Any

from agent.app.build import AgentParts
from agent.events import ControlAction

log = logging.getLogger(__name__)


class AgentControl:
    """The running agent's ``ControlSurface`` (Telegram /pause /resume /kill /status ...).

    Pause and kill go through the risk gate's persisted controls, exactly like
    ``defi-agent pause``; kill also asks the run loop to stop (``stop`` event). Every action is
    published as a ``ControlAction`` by ``who`` (the surface it came through).
    """

    def __init__(self, parts: AgentParts, stop: Any | None = None, who: str = "telegram") -> None:
        self.parts = parts
        self.stop = stop
        self.who = who

    def _acted(self, action: str, detail: str = "") -> None:
        self.parts.events.publish(ControlAction(who=self.who, action=action, detail=detail))

    async def pause(self, reason: str) -> None:
        self.parts.risk.pause(reason)
        self._acted("pause", reason)

    async def resume(self) -> None:
        self.parts.risk.resume()
        self._acted("resume")

    async def kill(self) -> None:
        self.parts.risk.kill(f"killed from {self.who}")
        self._acted("kill")
        if self.stop is not None:
            self.stop.set()

    async def status_text(self) -> str:
        risk = self.parts.risk
        snapshot = self.parts.engine.last_snapshot
        state = "halted" if risk.halt else "paused" if risk.paused else "trading"
        block = snapshot.block if snapshot else "-"
        report = self.parts.engine.report
        health = self.parts.health.report()
        lag = f"lag {health.head_lag_blocks} blocks"
        if health.head_lag_s is not None:
            lag += f" ({health.head_lag_s:.1f}s)"
        return (
            f"mode {self.parts.mode}, {state}; block {block}, {lag}, "
            f"{report.heads_skipped} heads skipped; "
            f"trades {len(report.fills)} filled, {len(report.failures)} failed"
        )

    async def balance_text(self) -> str:
        view = self.parts.portfolio.view()
        lines = [f"equity ${view.equity_usd:,.2f} (drawdown {view.drawdown_pct:.2f}%)"]
        for address, amount in sorted(view.balances.items()):
            token = self.parts.tokens.get(address)
            if token is not None and amount:
                lines.append(f"{token.symbol}: {amount / 10**token.decimals:,.6f}")
        return "\n".join(lines)

    async def pnl_text(self) -> str:
        fills = self.parts.engine.report.fills
        predicted = sum(f.predicted_profit_usd or 0.0 for f in fills)
        realised = sum(f.profit_usd or 0.0 for f in fills)
        today = self.parts.portfolio.view().realized_pnl_today_usd
        return (
            f"{len(fills)} fills: predicted ${predicted:,.2f}, realised ${realised:,.2f}; "
            f"today ${today:,.2f}"
        )

    async def order_text(self, argument: str, who: str) -> str:
        """Conditional orders go to the journal; the engine hands them to the ``orders``
        strategy at its next tick."""
        from agent.app.orders import order_command

        reply = await order_command(self.parts.journal, argument, who)
        if reply.startswith(("placed ", "cancelled ")):
            self._acted("order", reply)
        return reply
