"""CLI commands that run the agent: ``run``, ``dry-run``, ``demo``, ``status``, ``report``.

``status`` and ``report`` read the journal of the latest run unless ``--run ID`` or ``--all``
says otherwise: paper, fork and devnet runs sharing one journal are never mixed by default."""

from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The agent's agent.toml.")]
EnvOption = Annotated[
    Path | None, typer.Option(help="The .env file (default: .env beside the config).")
]
RunOption = Annotated[
    int | None,
    typer.Option("--run", min=1, help="The run to show (default: the latest; ids in `--all`)."),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every run of the journal together.")]

if TYPE_CHECKING:
    from agent.app.report import JournalSummary
    from agent.store.journal import RunRecord


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
    if (mode or cfg.execution.mode) == "demo":
        raise ConfigError(
            'execution.mode: "demo" is what `defi-agent demo` runs (a devnet with simulated '
            "traders, no keystore); for `run` choose live, paper or fork"
        )
    configure_logging(cfg.logging, redactor_for(cfg))
    run_report = asyncio.run(run_agent(cfg, mode=mode))
    typer.echo(f"stopped after {len(run_report.ticks)} blocks, {len(run_report.fills)} trades")


def dry_run(
    ctx: typer.Context,
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    fork_url: Annotated[
        str | None,
        typer.Option(
            envvar="DEFI_AGENT_FORK_URL",
            show_envvar=True,
            help=(
                "Chain to fork: an RPC of Ethereum, Base, Arbitrum, ... or a devnet (default: a "
                "fresh devnet started for the run). Prefer the DEFI_AGENT_FORK_URL variable: a "
                "URL with an API key on the command line is visible to every user of the machine."
            ),
        ),
    ] = None,
    block: Annotated[
        int | None, typer.Option("--block", min=0, help="Fork at this block (default: latest).")
    ] = None,
    blocks: Annotated[int, typer.Option(min=1, max=10_000, help="Blocks to run.")] = 20,
    out: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
) -> None:
    """Rehearse on an Anvil fork: fund the wallet there, run N blocks, print a report."""
    from agent.app.logs import configure_logging, redactor_for
    from agent.app.rehearsal import rehearse
    from agent.app.report import print_report
    from agent.config.models import AgentConfig, LoggingConfig
    from agent.redaction import redact_url

    source = ctx.get_parameter_source("fork_url")
    on_argv = source is not None and source.name == "COMMANDLINE"
    if on_argv and fork_url is not None and redact_url(fork_url) != fork_url:
        typer.echo(
            "warning: --fork-url on the command line shows its API key to every user "
            "(ps, /proc); set DEFI_AGENT_FORK_URL instead",
            err=True,
        )
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
            fork_block=block,
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
    settings = {k: v for k, v in raw.items() if k in keep}
    market = raw.get("market", {})
    # which tokens to trade on a public chain (a devnet rehearsal trades the devnet's)
    settings["market"] = {k: market[k] for k in ("tokens", "token_addresses") if k in market}
    return settings


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
    report = asyncio.run(
        rehearse(blocks=blocks, out_dir=out, console=console, live=True, dashboard=True)
    )
    print_report(console, report, "demo: trades")


def _read_journal(
    config: Path, env_file: Path | None, run_id: int | None, all_runs: bool
) -> tuple[Any, JournalSummary]:
    """The config and what its journal holds for the selected run (see ``read_journal``)."""
    from agent.app.report import read_journal
    from agent.config.models import AgentConfig
    from agent.store.db import init_db, session_factory
    from agent.store.journal import Journal

    cfg = AgentConfig.load(config, env_file=env_file)

    async def read() -> JournalSummary:
        engine = await init_db(cfg.store.url)
        try:
            return await read_journal(Journal(session_factory(engine)), run_id, all_runs)
        finally:
            await engine.dispose()

    return cfg, asyncio.run(read())


def _console() -> Console:
    """The terminal's console; wide when printing to a file or a pipe (rows stay one line)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _run_line(run: RunRecord) -> str:
    return (
        f"{run.id} · {run.mode} on {run.chain_name} (chain id {run.chain_id}) · started "
        f"{_when(run.started_at)} · config {run.config_hash[:12]}"
    )


def _liveness(runs: list[RunRecord], now: datetime) -> str:
    """Whether an agent is running on this journal: every run with a fresh heartbeat, else
    how the latest run ended."""
    running = [r for r in runs if r.is_running(now)]
    if running:
        return "; ".join(
            f"running (run {r.id}, heartbeat {_age((now - r.heartbeat_at).total_seconds())} ago)"
            for r in reversed(running)
        )
    if not runs:
        return "no run recorded"
    run = runs[-1]
    if run.stopped_at is not None:
        return (
            f"not running (run {run.id} {run.stop_reason or 'stopped'} at {_when(run.stopped_at)})"
        )
    silent = _age((now - run.heartbeat_at).total_seconds())
    return f"not running (run {run.id}: no heartbeat for {silent}; killed or crashed)"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in counts.items()) or "none"


def status(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    run: RunOption = None,
    all_runs: AllOption = False,
) -> None:
    """Is an agent running, what it runs, its last block, why it refused trades, paused or
    halted, trades by status, unsettled transactions, equity (from the journal)."""
    from agent.app.report import RECENT_BLOCKS, signed_usd
    from agent.risk.gate import ControlFiles

    cfg, summary = _read_journal(config, env_file, run, all_runs)
    now = datetime.now(UTC)
    shown = summary.run
    controls = ControlFiles.beside(cfg.risk.kill_switch_file)
    halt = controls.read_halt()
    table = Table("", "", title=f"defi-agent status · {summary.scope}")
    table.add_row("agent", _liveness(summary.runs, now))
    table.add_row("run", "-" if shown is None else _run_line(shown))
    if shown is not None:
        last = "-"
        if shown.last_block is not None and shown.last_block_at is not None:
            age = _age((now - shown.last_block_at).total_seconds())
            last = f"{shown.last_block} ({age} ago)"
        table.add_row("last block", last)
    if summary.recent_since_block is not None:
        table.add_row(f"refusals, last {RECENT_BLOCKS} blocks", _counts(summary.refusals_recent))
    table.add_row("refusals" + ("" if shown is None else ", whole run"), _counts(summary.refusals))
    table.add_row("paused", str(controls.read_pause() or "no"))
    table.add_row("halted", "no" if halt is None else f"{halt.reason}: {halt.detail}")
    table.add_row("intents", _counts(summary.intents) if summary.intents else "-")
    table.add_row("transactions not final", str(summary.transactions_not_final))
    table.add_row(
        "fills",
        f"{len(summary.fills)} · predicted {signed_usd(summary.predicted_profit_usd)} · "
        f"realised {signed_usd(summary.realised_profit_usd)}"
        + _finality_note(summary.pending_confirmation, len(summary.voided)),
    )
    equity = summary.equity[-1].equity_usd if summary.equity else None
    table.add_row("equity", "-" if equity is None else f"${equity:,.2f}")
    _console().print(table)


def _finality_note(pending: int, voided: int) -> str:
    """`` · 2 pending confirmation · 1 reorged out (not counted)``, or nothing."""
    note = f" · {pending} pending confirmation" if pending else ""
    return note + (f" · {voided} reorged out (not counted)" if voided else "")


def report(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    out: Annotated[
        Path, typer.Option(help="Folder for report.html, report.json and equity.png.")
    ] = Path("reports/latest"),
    run: RunOption = None,
    all_runs: AllOption = False,
    mc_seed: Annotated[
        int, typer.Option(help="Seed of the Monte Carlo (same seed, same result).")
    ] = 0,
    mc_horizon: Annotated[
        int | None,
        typer.Option(min=1, help="Trades per Monte Carlo path (default: as many as journaled)."),
    ] = None,
) -> None:
    """PnL from the journal: predicted vs realised USD per fill (the realised figure is the
    one its alert showed), totals, VaR/CVaR and a Monte Carlo of the trades, an equity chart
    and a self-contained report.html; the latest run unless told otherwise."""
    from agent.app.journal_views import known_tokens
    from agent.app.report import (
        fill_json,
        gas_parts_wei,
        journal_risk,
        native_amount,
        plot_equity,
        risk_lines,
        run_json,
        signed_usd,
    )
    from agent.app.report_html import render_journal_html
    from agent.types import FILL_FINALITY_LABELS

    cfg, summary = _read_journal(config, env_file, run, all_runs)
    console = _console()
    if summary.run is not None:
        console.print(f"run {_run_line(summary.run)}")
    table = Table(
        "run",
        "block",
        "intent",
        "tx",
        "predicted",
        "realised",
        "gas L2",
        "gas L1",
        "status",
        title=f"fills · {summary.scope}",
    )
    for fill in [*summary.fills, *summary.voided]:
        gas_l2_wei, gas_l1_wei = gas_parts_wei(fill)
        table.add_row(
            str(summary.fill_runs.get(fill.intent_id) or "-"),
            "-" if fill.block_number is None else str(fill.block_number),
            fill.intent_id[:40],
            (fill.tx_hash or "paper")[:14],
            "-" if fill.predicted_profit_usd is None else signed_usd(fill.predicted_profit_usd),
            "-" if fill.profit_usd is None else signed_usd(fill.profit_usd),
            native_amount(gas_l2_wei),
            native_amount(gas_l1_wei),
            FILL_FINALITY_LABELS.get(fill.finality, fill.finality),
        )
    console.print(table)
    console.print(
        f"predicted {signed_usd(summary.predicted_profit_usd)} · realised "
        f"{signed_usd(summary.realised_profit_usd)}"
        + _finality_note(summary.pending_confirmation, len(summary.voided))
    )
    risk = journal_risk(summary, seed=mc_seed, horizon_trades=mc_horizon)
    for line in risk_lines(risk):
        console.print(line, highlight=False)
    out.mkdir(parents=True, exist_ok=True)
    lines = summary.equity_lines()
    if lines:
        chart = plot_equity(lines, out / "equity.png", summary.trade_blocks())
        console.print(f"equity chart: {chart}")
    page = out / "report.html"
    symbols, _ = known_tokens(cfg)
    page.write_text(render_journal_html(summary, risk, symbols), encoding="utf-8")
    console.print(f"report: {page}")
    shown = summary.run
    body = {
        "scope": summary.scope,
        "run": None if shown is None else run_json(shown),
        "runs": [r.id for r in summary.runs] if shown is None else [shown.id],
        "mode": cfg.execution.mode if shown is None else shown.mode,
        "chain": cfg.chain.name if shown is None else shown.chain_name,
        "intents": summary.intents,
        "transactions_not_final": summary.transactions_not_final,
        "fills": len(summary.fills),
        "trades": [fill_json(f, summary.fill_runs.get(f.intent_id)) for f in summary.fills],
        # fills a reorg took out of the chain: in no total
        "reorged_out": [fill_json(f, summary.fill_runs.get(f.intent_id)) for f in summary.voided],
        "predicted_profit_usd": summary.predicted_profit_usd,
        "realised_profit_usd": summary.realised_profit_usd,
        "refusals": summary.refusals,
        "equity_usd": summary.equity[-1].equity_usd if summary.equity else None,
        "risk": risk.to_dict(),
    }
    (out / "report.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
