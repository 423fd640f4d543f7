"""``defi-agent preflight``: check a config against its chain before trading it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agent.cli.common import EXIT_OK, EXIT_RUNTIME_FAILURE, ConfigOption, EnvOption


def preflight(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """RPC endpoints on chain.chain_id, contract code, the pools (DEX, pair, fee, liquidity),
    wallet and executor balances, allowances, the keystore's address, alert channels.

    Exit 0 when nothing that matters failed, 2 for a wrong chain or a bad config, 1 otherwise.
    """
    from agent.app.logs import configure_logging, redactor_for
    from agent.app.preflight import preflight as run_preflight
    from agent.app.preflight import report_lines
    from agent.config.models import AgentConfig, LoggingConfig

    cfg = AgentConfig.load(config, env_file=env_file)
    # The report is the output: only problems are logged.
    configure_logging(LoggingConfig(level="warning"), redactor_for(cfg))
    report = asyncio.run(run_preflight(cfg))
    if as_json:
        typer.echo(json.dumps(report_lines(report)))
    else:
        console = Console()
        checks = Table(
            "check", "", "detail", title=f"preflight: {report.chain} ({report.chain_id})"
        )
        for check in report.checks:
            verdict = "ok" if check.ok else ("FAIL" if check.fatal else "warn")
            checks.add_row(check.name, verdict, check.detail)
        console.print(checks)
        if report.pools:
            pools = Table("DEX", "pair", "fee", "liquidity USD", title="pools")
            for pool in report.pools:
                usd = "-" if pool.liquidity_usd is None else f"{pool.liquidity_usd:,.0f}"
                pools.add_row(pool.dex, pool.pair, str(pool.fee_pips), usd)
            console.print(pools)
        if report.skipped:
            console.print("skipped: " + "; ".join(report.skipped))
        if report.balances:
            held = Table("holder", "token", "amount", title="balances")
            for row in report.balances:
                held.add_row(*row)
            console.print(held)
    if report.failed:
        for check in report.failed:
            typer.echo(f"preflight failed: {check.name}: {check.detail}", err=True)
        raise typer.Exit(EXIT_RUNTIME_FAILURE)
    raise typer.Exit(EXIT_OK)
