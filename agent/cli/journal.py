"""CLI commands that read the journal (and, for ``balance``, the chain): ``trades``,
``rejections``, ``balance``. Like ``status`` and ``report`` they show the latest run unless
``--run ID`` or ``--all`` says otherwise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from agent.cli.runtime import AllOption, ConfigOption, EnvOption, RunOption

if TYPE_CHECKING:
    from agent.app.journal_views import BalanceSheet
    from agent.config.models import AgentConfig
    from agent.store.journal import Journal

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
T = TypeVar("T")


def _with_journal(
    config: Path, env_file: Path | None, read: Callable[[AgentConfig, Journal], Awaitable[T]]
) -> tuple[AgentConfig, T]:
    from agent.config.models import AgentConfig
    from agent.store.db import init_db, session_factory
    from agent.store.journal import Journal

    cfg = AgentConfig.load(config, env_file=env_file)

    async def run() -> T:
        engine = await init_db(cfg.store.url)
        try:
            return await read(cfg, Journal(session_factory(engine)))
        finally:
            await engine.dispose()

    return cfg, asyncio.run(run())


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.2f} USD"


def trades(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    run: RunOption = None,
    all_runs: AllOption = False,
    strategy: Annotated[
        str | None, typer.Option(help="Only this strategy's trades (e.g. arbitrage, grid).")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Show the last N trades (0: all).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Trades from the journal: predicted vs realised USD (realised priced at the fill's
    block), the difference, and the transaction hash (none for paper fills)."""
    from agent.app.journal_views import list_trades

    _, listing = _with_journal(
        config,
        env_file,
        lambda _cfg, journal: list_trades(journal, run, all_runs, strategy, limit or None),
    )
    if as_json:
        typer.echo(json.dumps(listing.to_dict(), indent=2))
        return
    scope = "all runs" if listing.run is None else f"run {listing.run.id}"
    shown = f"last {len(listing.trades)} of {listing.total}" if limit else f"{listing.total}"
    table = Table(
        "run",
        "block",
        "strategy",
        "kind",
        "predicted",
        "realised",
        "realised - predicted",
        "tx",
        "status",
        title=f"trades · {scope} · {shown}" + (f" · {strategy}" if strategy else ""),
    )
    for t in listing.trades:
        table.add_row(
            "-" if t.run_id is None else str(t.run_id),
            "-" if t.block is None else str(t.block),
            t.strategy,
            t.kind,
            _usd(t.predicted_profit_usd),
            _usd(t.realised_profit_usd),
            _usd(t.slippage_usd),
            t.tx_hash or "paper",
            t.status,
        )
    console = _console()
    console.print(table)
    if not listing.trades:
        console.print("no trades in this scope")


def rejections(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    run: RunOption = None,
    all_runs: AllOption = False,
    since_blocks: Annotated[
        int | None,
        typer.Option(min=1, help="Only refusals of the last N blocks up to the run's last."),
    ] = None,
    examples: Annotated[int, typer.Option(min=0, help="Recent examples per reason.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Why trades were refused: risk-gate refusals by reason with counts, most frequent
    first, and the most recent examples of each."""
    from agent.app.journal_views import summarise_rejections

    _, summary = _with_journal(
        config,
        env_file,
        lambda _cfg, journal: summarise_rejections(journal, run, all_runs, since_blocks, examples),
    )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    scope = "all runs" if summary.run is None else f"run {summary.run.id}"
    since = "" if summary.since_block is None else f" · since block {summary.since_block}"
    table = Table(
        "reason", "count", "recent examples", title=f"refusals · {scope}{since}", show_lines=True
    )
    for reason in summary.reasons:
        lines = [
            f"block {'-' if e.block_number is None else e.block_number} · {e.strategy}"
            + (f" · {e.detail}" if e.detail else "")
            for e in reason.examples
        ]
        table.add_row(reason.reason, str(reason.count), "\n".join(lines) or "-")
    console = _console()
    console.print(table)
    console.print(f"{summary.total} refusals" if summary.reasons else "no refusals in this scope")


def balance(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Balances with USD values: live/fork mode reads the wallet and the ArbExecutor on the
    configured RPC; paper mode shows the paper portfolio from the journal. USD at the prices
    of the journal's latest equity snapshot."""

    async def read(cfg: AgentConfig, journal: Journal) -> BalanceSheet:
        from agent.app.journal_views import known_tokens, latest_unit_prices, paper_balance_sheet

        if cfg.execution.mode == "paper":
            return await paper_balance_sheet(journal, *known_tokens(cfg))
        prices, block = await latest_unit_prices(journal)
        return await _chain_sheet(cfg, prices, block)

    _, sheet = _with_journal(config, env_file, read)
    if as_json:
        typer.echo(json.dumps(sheet.to_dict(), indent=2))
        return
    table = Table("account", "token", "amount", "USD", title=f"balances · {sheet.source}")
    for row in sheet.rows:
        whole = row.whole_tokens
        amount = f"{row.amount} units" if whole is None else f"{whole:,.6f}"
        account = row.holder if row.address is None else f"{row.holder} {row.address}"
        usd = "-" if row.usd is None else f"${row.usd:,.2f}"
        table.add_row(account, row.symbol, amount, usd)
    console = _console()
    console.print(table)
    priced = (
        "no prices journaled yet"
        if sheet.priced_at_block is None
        else f"priced at block {sheet.priced_at_block}"
    )
    console.print(f"total ${sheet.total_usd:,.2f} ({priced})")


async def _chain_sheet(
    cfg: AgentConfig, prices: dict[str, float], block: int | None
) -> BalanceSheet:
    """Wallet and executor balances read through the configured RPC."""
    from agent.app.journal_views import chain_balance_sheet
    from agent.chain.limits import ProviderLimits
    from agent.chain.multicall import Multicall
    from agent.chain.rpc import RpcClient
    from agent.chain.tokens import resolve_tokens
    from agent.wallet.keystore import read_keystore_address

    holders = {"wallet": read_keystore_address(cfg.wallet.keystore)}
    if cfg.execution.arb_executor:
        holders["executor"] = str(cfg.execution.arb_executor)
    limits = ProviderLimits(**cfg.chain.limits.model_dump())
    rpc = RpcClient(
        [str(u) for u in cfg.chain.rpc_urls], timeout_s=cfg.chain.request_timeout_s, limits=limits
    )
    try:
        multicall = Multicall(
            rpc,
            max_calls_per_chunk=cfg.market.multicall_batch_size,
            max_request_bytes=limits.max_request_bytes,
        )
        tokens = await resolve_tokens(
            cfg.market.tokens, cfg.chain_addresses(), cfg.market.token_addresses, multicall
        )
        return await chain_balance_sheet(rpc.web3(), multicall, holders, tokens, prices, block)
    finally:
        await rpc.aclose()
