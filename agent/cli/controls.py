"""Operator controls from the shell: `pause` and `resume`. Each is journaled (who, what)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.config.models import AgentConfig

log = logging.getLogger(__name__)


def cli_actor() -> str:
    """Who runs this command, as the journal records it: ``cli root@host pid 42``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"cli {user}@{socket.gethostname()} pid {os.getpid()}"


def journal_control_action(
    cfg: AgentConfig, action: str, argument: str, detail: str, *, halt_lifted: bool = False
) -> None:
    """Journal a control action done from the shell. The control itself (a file) is already in
    force: a journal that cannot be reached is reported on stderr, never undoes it.

    ``halt_lifted``: a drawdown halt was lifted, so drawdown is measured afresh from the next
    start's equity (the journaled peak is cleared), as a running agent does on resume;
    otherwise the restarted agent would restore the old peak and halt again at once."""
    from agent.market.portfolio import PORTFOLIO_STATE_KEY
    from agent.store.db import init_db, session_factory
    from agent.store.journal import Journal

    async def record() -> None:
        engine = await init_db(cfg.store.url)
        try:
            journal = Journal(session_factory(engine))
            await journal.record_control_action(
                source="cli",
                actor=cli_actor(),
                action=action,
                accepted=True,
                argument=argument,
                detail=detail,
            )
            books = await journal.get_strategy_state(PORTFOLIO_STATE_KEY) if halt_lifted else None
            if books is not None:
                await journal.set_strategy_state(
                    PORTFOLIO_STATE_KEY, {**books, "peak_equity_usd": 0.0}
                )
        finally:
            await engine.dispose()

    log.info("control action %s by %s: %s", action, cli_actor(), detail)
    try:
        asyncio.run(record())
    except Exception as exc:
        typer.echo(
            f"warning: {action} is in force but could not be journaled: {type(exc).__name__}",
            err=True,
        )


def pause_trading(
    config: Annotated[Path, typer.Option("--config", "-c", help="The agent's agent.toml.")] = (
        Path("agent.toml")
    ),
    env_file: Annotated[
        Path | None, typer.Option(help="The .env file (default: .env beside the config).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; shown in status and alerts.")] = (
        "paused by operator"
    ),
) -> None:
    """Kill switch on: the agent opens no new trades (in-flight ones finish) until `resume`."""
    from datetime import UTC, datetime

    from agent.config.models import AgentConfig
    from agent.risk.gate import ControlFiles

    cfg = AgentConfig.load(config, env_file=env_file)
    controls = ControlFiles.beside(cfg.risk.kill_switch_file)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        controls.write_pause(f"{reason} (defi-agent pause, {stamp})")
    except OSError as exc:
        raise AgentError(f"cannot write {controls.kill_switch_file}: {exc.strerror}") from exc
    journal_control_action(cfg, "pause", reason, f"{controls.kill_switch_file} written")
    typer.echo(f"paused: {controls.kill_switch_file} written; `defi-agent resume` lifts it")


def resume_trading(
    config: Annotated[Path, typer.Option("--config", "-c", help="The agent's agent.toml.")] = (
        Path("agent.toml")
    ),
    env_file: Annotated[
        Path | None, typer.Option(help="The .env file (default: .env beside the config).")
    ] = None,
) -> None:
    """Lift the kill switch and any drawdown halt; the agent trades again at its next tick."""
    from agent.config.models import AgentConfig
    from agent.risk.gate import ControlFiles

    cfg = AgentConfig.load(config, env_file=env_file)
    controls = ControlFiles.beside(cfg.risk.kill_switch_file)
    halt = controls.read_halt()
    try:
        was_paused, was_halted = controls.clear()
    except OSError as exc:
        raise AgentError(f"cannot remove the risk control files: {exc.strerror}") from exc
    lifted = [name for name, was in (("pause", was_paused), ("halt", was_halted)) if was]
    journal_control_action(
        cfg,
        "resume",
        "",
        "lifted " + (" and ".join(lifted) or "nothing"),
        halt_lifted=was_halted,
    )
    if halt is not None and was_halted:
        typer.echo(f"drawdown halt cleared (was: {halt.reason}: {halt.detail})")
    if was_paused:
        typer.echo(f"kill switch removed: {controls.kill_switch_file}")
    if not (was_paused or was_halted):
        typer.echo("nothing to resume: trading was neither paused nor halted")
    else:
        typer.echo("resumed: trading restarts at the agent's next tick")
