"""CLI commands that run the agent: ``run``, ``dry-run``, ``demo``, ``status``, ``report``."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The agent's agent.toml.")]
EnvOption = Annotated[
    Path | None, typer.Option(help="The .env file (default: .env beside the config).")
]


def run(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    mode: Annotated[
        str | None,
        typer.Option(help="live | paper | fork (default: execution.mode from the config)."),
    ] = None,
) -> None:
    """Run the agent until SIGTERM/SIGINT; in-flight trades finish or stay journaled."""
    from agent.app.logs import configure_logging, redactor_for
    from agent.app.runner import run_agent
    from agent.config.models import AgentConfig
    from agent.errors import ConfigError

    if mode is not None and mode not in ("live", "paper", "fork"):
        raise ConfigError(f"--mode: must be live, paper or fork (got {mode!r})")
    cfg = AgentConfig.load(config, env_file=env_file)
    configure_logging(cfg.logging, redactor_for(cfg))
    run_report = asyncio.run(run_agent(cfg, mode=mode))
    typer.echo(f"stopped after {len(run_report.ticks)} blocks, {len(run_report.fills)} trades")


def dry_run(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    fork_url: Annotated[
        str | None,
        typer.Option(help="Chain to fork (default: a fresh devnet started for the run)."),
    ] = None,
    blocks: Annotated[int, typer.Option(min=1, max=10_000, help="Blocks to run.")] = 20,
    out: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
) -> None:
    """Rehearse on an Anvil fork: fund the wallet there, run N blocks, print a report."""
    from agent.app.logs import configure_logging, redactor_for
    from agent.app.rehearsal import rehearse
    from agent.app.report import print_report
    from agent.config.models import AgentConfig, LoggingConfig

    cfg = AgentConfig.load(config, env_file=env_file) if config.is_file() else None
    # The report is the output here: without a config, only problems are logged.
    configure_logging(cfg.logging if cfg else LoggingConfig(level="warning"), redactor_for(cfg))
    raw: dict[str, Any] | None = None
    if cfg is not None:
        raw = tomllib.loads(config.read_text())
    console = Console()
    report = asyncio.run(
        rehearse(
            blocks=blocks,
            base_config=cfg,
            base_raw=_rehearsal_settings(raw),
            fork_url=fork_url,
            simulate_market=fork_url is None,
            out_dir=out,
            console=console,
        )
    )
    print_report(console, report, f"dry-run: {blocks} blocks on a fork")
    typer.echo(json.dumps(report.to_json()))


def _rehearsal_settings(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The operator's strategy, risk and execution settings; chain, store, alerts are local."""
    if raw is None:
        return None
    keep = ("risk", "strategies", "execution", "engine")
    return {k: v for k, v in raw.items() if k in keep}


def demo(
    blocks: Annotated[int, typer.Option(min=1, max=1_000, help="Blocks to run.")] = 45,
    out: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
) -> None:
    """A devnet with Uniswap, simulated traders opening price gaps, the agent trading them
    in fork mode with simulated feeds, and a report (trades, predicted vs realised, equity)."""
    from agent.app.logs import configure_logging
    from agent.app.rehearsal import rehearse
    from agent.app.report import print_report
    from agent.config.models import LoggingConfig

    # The live display is the output: only problems are logged (no config to say otherwise).
    configure_logging(LoggingConfig(level="warning"))
    console = Console()
    console.print(
        f"[bold]defi-agent demo[/]: devnet + simulated market, {blocks} blocks (about "
        f"{blocks} s); Ctrl-C stops early."
    )
    report = asyncio.run(rehearse(blocks=blocks, out_dir=out, console=console, live=True))
    print_report(console, report, "demo: trades")


def _journal_summary(config: Path, env_file: Path | None) -> dict[str, Any]:
    from agent.config.models import AgentConfig
    from agent.risk.gate import ControlFiles
    from agent.store.db import init_db, session_factory
    from agent.store.journal import Journal

    cfg = AgentConfig.load(config, env_file=env_file)

    async def read() -> dict[str, Any]:
        engine = await init_db(cfg.store.url)
        try:
            journal = Journal(session_factory(engine))
            intents = await journal.list_intents()
            fills = await journal.list_fills()
            equity = await journal.equity_history()
            non_final = await journal.list_non_final()
        finally:
            await engine.dispose()
        by_status: dict[str, int] = {}
        for record in intents:
            by_status[str(record.status)] = by_status.get(str(record.status), 0) + 1
        controls = ControlFiles.beside(cfg.risk.kill_switch_file)
        halt = controls.read_halt()
        return {
            "mode": cfg.execution.mode,
            "chain": cfg.chain.name,
            "paused": controls.read_pause(),
            "halted": None if halt is None else f"{halt.reason}: {halt.detail}",
            "intents": by_status,
            "transactions_not_final": len(non_final),
            "fills": len(fills),
            "predicted_profit_usd": sum(f.predicted_profit_usd or 0.0 for f in fills),
            "realised_profit_usd": sum(f.profit_usd or 0.0 for f in fills),
            "equity_usd": equity[-1].equity_usd if equity else None,
            "equity_points": [(e.block_number or i, e.equity_usd) for i, e in enumerate(equity)],
            "fill_rows": fills,
        }

    return asyncio.run(read())


def status(config: ConfigOption = Path("agent.toml"), env_file: EnvOption = None) -> None:
    """Paused or halted, trades by status, unsettled transactions, equity (from the journal)."""
    summary = _journal_summary(config, env_file)
    console = Console()
    table = Table("", "", title="defi-agent status")
    table.add_row("mode / chain", f"{summary['mode']} / {summary['chain']}")
    table.add_row("paused", str(summary["paused"] or "no"))
    table.add_row("halted", str(summary["halted"] or "no"))
    table.add_row("intents", ", ".join(f"{k}={v}" for k, v in summary["intents"].items()) or "-")
    table.add_row("transactions not final", str(summary["transactions_not_final"]))
    table.add_row("fills", str(summary["fills"]))
    equity = summary["equity_usd"]
    table.add_row("equity", "-" if equity is None else f"${equity:,.2f}")
    console.print(table)


def report(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    out: Annotated[Path, typer.Option(help="Folder for report.json and equity.png.")] = Path(
        "reports/latest"
    ),
) -> None:
    """PnL from the journal: predicted vs realised per trade, totals, an equity chart."""
    from agent.app.report import plot_equity

    summary = _journal_summary(config, env_file)
    console = Console()
    table = Table("intent", "tx", "predicted", "realised", title="fills")
    for fill in summary["fill_rows"]:
        table.add_row(
            fill.intent_id[:32],
            (fill.tx_hash or "paper")[:14],
            f"${fill.predicted_profit_usd or 0:,.2f}",
            f"${fill.profit_usd or 0:,.2f}",
        )
    console.print(table)
    console.print(
        f"predicted ${summary['predicted_profit_usd']:,.2f} · realised "
        f"${summary['realised_profit_usd']:,.2f}"
    )
    out.mkdir(parents=True, exist_ok=True)
    if summary["equity_points"]:
        console.print(f"equity chart: {plot_equity(summary['equity_points'], out / 'equity.png')}")
    body = {k: v for k, v in summary.items() if k not in ("fill_rows", "equity_points")}
    (out / "report.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
