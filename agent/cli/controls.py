"""Operator controls from the shell: `pause` and `resume`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.errors import AgentError


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

    controls = ControlFiles.beside(
        AgentConfig.load(config, env_file=env_file).risk.kill_switch_file
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        controls.write_pause(f"{reason} (defi-agent pause, {stamp})")
    except OSError as exc:
        raise AgentError(f"cannot write {controls.kill_switch_file}: {exc.strerror}") from exc
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

    controls = ControlFiles.beside(
        AgentConfig.load(config, env_file=env_file).risk.kill_switch_file
    )
    halt = controls.read_halt()
    try:
        was_paused, was_halted = controls.clear()
    except OSError as exc:
        raise AgentError(f"cannot remove the risk control files: {exc.strerror}") from exc
    if halt is not None and was_halted:
        typer.echo(f"drawdown halt cleared (was: {halt.reason}: {halt.detail})")
    if was_paused:
        typer.echo(f"kill switch removed: {controls.kill_switch_file}")
    if not (was_paused or was_halted):
        typer.echo("nothing to resume: trading was neither paused nor halted")
    else:
        typer.echo("resumed: trading restarts at the agent's next tick")
