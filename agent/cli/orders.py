"""`order add|list|cancel`: conditional orders in the journal, picked up by the running agent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from agent.cli.common import EXIT_BAD_USAGE_OR_CONFIG, ConfigOption, EnvOption
from agent.errors import OrderRejected

T = TypeVar("T")


def _with_journal(
    config: Path, env_file: Path | None, use: Callable[[Any], Awaitable[T]]
) -> tuple[Any, T]:
    """Run ``use(journal)`` on the config's journal (migrated first); bad orders exit 2."""
    from agent.config.models import AgentConfig
    from agent.store.db import init_db, session_factory
    from agent.store.journal import Journal

    cfg = AgentConfig.load(config, env_file=env_file)

    async def run() -> T:
        engine = await init_db(cfg.store.url)
        try:
            return await use(Journal(session_factory(engine)))
        finally:
            await engine.dispose()

    try:
        return cfg, asyncio.run(run())
    except OrderRejected as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_USAGE_OR_CONFIG) from None


def order_add(
    kind: Annotated[str, typer.Argument(help="limit, stop-loss, take-profit or trailing-stop.")],
    side: Annotated[str, typer.Argument(help="buy or sell.")],
    amount: Annotated[
        str, typer.Argument(help="Whole tokens spent: BASE for a sell, QUOTE for a buy.")
    ],
    pair: Annotated[str, typer.Argument(help="BASE/QUOTE, e.g. WETH/USDC.")],
    price: Annotated[
        str | None, typer.Option(help="Trigger price, QUOTE per BASE (not for trailing-stop).")
    ] = None,
    trail: Annotated[
        str | None,
        typer.Option(help="Trailing distance in QUOTE per BASE (50) or percent (2%)."),
    ] = None,
    oco_with: Annotated[
        int | None, typer.Option(help="Link with this active order: one fill cancels the other.")
    ] = None,
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
) -> None:
    """Place a conditional order; the running agent fires it from its next block on."""
    from agent.app.orders import OrderRequest, describe, place_order

    request = OrderRequest(kind, side, pair, amount, price, trail, oco_with)
    cfg, order = _with_journal(
        config, env_file, lambda journal: place_order(journal, request, "cli")
    )
    typer.echo(f"placed {describe(order)}")
    if not cfg.strategies.orders.enabled:
        typer.echo(
            "warning: [strategies.orders] is not enabled in this config: "
            "no agent fires orders until it is",
            err=True,
        )


def order_list(
    all_orders: Annotated[
        bool, typer.Option("--all", help="Also filled, cancelled and failed orders.")
    ] = False,
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
) -> None:
    """Active orders (pending or triggered), or every order with --all."""
    from agent.app.orders import describe

    _, orders = _with_journal(
        config, env_file, lambda journal: journal.list_orders(active_only=not all_orders)
    )
    if not orders:
        typer.echo("no orders" if all_orders else "no active orders")
    for order in orders:
        typer.echo(describe(order))


def order_cancel(
    order_id: Annotated[int, typer.Argument(help="The order's id (see `order list`).")],
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
) -> None:
    """Cancel a pending order (one whose trade is already in flight cannot be called back)."""
    from agent.app.orders import describe

    _, order = _with_journal(
        config, env_file, lambda journal: journal.cancel_order(order_id, "cancelled from the CLI")
    )
    typer.echo(f"cancelled {describe(order)}")
