"""`defi-agent run`: the live runner (live, paper or fork mode on a configured chain).

It never imports ``agent.devnet``: a production run loads no Anvil launcher and no simulated market.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from rich.console import Console

from agent.app.build import open_agent
from agent.app.control import AgentControl
from agent.config.models import AgentConfig
from agent.engine.loop import RunReport
from agent.wallet.keystore import check_keystore_mode

log = logging.getLogger(__name__)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def remove_signal_handlers() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)


async def run_agent(
    cfg: AgentConfig, *, mode: str | None = None, console: Console | None = None
) -> RunReport:
    """``defi-agent run``: until SIGTERM/SIGINT, then finish or journal in-flight work; exit 0."""
    if (mode or cfg.execution.mode) in ("live", "fork"):
        # Refused before connecting to anything: a keystore others can read is a leaked key.
        check_keystore_mode(cfg.wallet.keystore)
    console = console or Console()
    stop = asyncio.Event()
    install_signal_handlers(stop)
    try:
        async with open_agent(
            cfg, mode=mode, console=console, control_factory=lambda p: AgentControl(p, stop)
        ) as parts:
            from agent.alerts.base import AgentStarted, AgentStopped

            parts.alerts.post(
                AgentStarted(
                    mode=parts.mode,
                    chain_id=cfg.chain.chain_id,
                    strategies=tuple(s.name for s in parts.engine.strategies),
                    wallet_address=parts.account,
                )
            )
            run = await parts.engine.run(parts.blocks(), stop=stop)
            reason = "signal" if stop.is_set() else "block source ended"
            await parts.alerts.send(AgentStopped(reason=reason))
            if parts.run_id is not None:  # `status` says why it stopped
                await parts.journal.finish_run(parts.run_id, f"stopped: {reason}")
            return run
    finally:
        remove_signal_handlers()
