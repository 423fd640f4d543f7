"""The ``defi-agent`` command line.

Exit codes: 0 ok, 2 bad usage or bad configuration (typer usage errors, ``ConfigError``,
``WalletError``, ``InstanceLocked``: another agent runs on the same journal or wallet), 1 any
other runtime failure (``AgentError``). Errors the agent raises on purpose are printed as one
clear message on stderr, never as a traceback.

The app and its sub-command groups (``keys``, ``devnet``, ``executor``, ``config``) are built
here, and every command is registered here explicitly; the command modules (``setup``,
``controls``, ``runtime``, ``journal``, ``wallet``) define plain functions and import nothing
from this package, so there is no import cycle.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from agent.backtest import command as backtest_command
from agent.cli import (
    controls,
    data,
    executor,
    journal,
    orders,
    preflight,
    runtime,
    setup,
    wallet,
)
from agent.cli.common import EXIT_BAD_USAGE_OR_CONFIG, EXIT_OK, EXIT_RUNTIME_FAILURE
from agent.errors import AgentError, ConfigError, InstanceLocked, WalletError
from agent.research import command as research_command

app = typer.Typer(
    name="defi-agent",
    help="An asyncio trading agent for on-chain DeFi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(
    no_args_is_help=True, help="Create, import and inspect the encrypted signing keystore."
)
devnet_app = typer.Typer(
    no_args_is_help=True, help="Start and stop the local Anvil devnet with Uniswap deployed."
)
executor_app = typer.Typer(
    no_args_is_help=True, help="Deploy and inspect the on-chain ArbExecutor contract."
)
config_app = typer.Typer(no_args_is_help=True, help="Validate and inspect agent.toml.")
order_app = typer.Typer(
    no_args_is_help=True, help="Conditional orders on pool prices (limit, stops, OCO)."
)
app.add_typer(keys_app, name="keys")
app.add_typer(devnet_app, name="devnet")
app.add_typer(executor_app, name="executor")
app.add_typer(config_app, name="config")
app.add_typer(order_app, name="order")


def package_version() -> str:
    """The installed distribution's version, or ``0+unknown`` when running from a bare tree."""
    try:
        return version("defi-agent")
    except PackageNotFoundError:
        return "0+unknown"


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"defi-agent {package_version()}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """An asyncio trading agent for on-chain DeFi."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the process exit code (the console script passes it to sys.exit)."""
    try:
        app(args=argv, prog_name="defi-agent")
    except SystemExit as exc:
        # click's standalone mode always ends with SystemExit; normalise its code to an int.
        code = exc.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return EXIT_RUNTIME_FAILURE
    except (ConfigError, WalletError, InstanceLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_USAGE_OR_CONFIG
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


# Explicit registration: command modules define plain functions and never import this package.
app.command("init")(setup.init)
app.command("preflight")(preflight.preflight)
app.command("run")(runtime.run)
app.command("dry-run")(runtime.dry_run)
app.command("demo")(runtime.demo)
app.command("status")(runtime.status)
app.command("report")(runtime.report)
app.command("trades")(journal.trades)
app.command("rejections")(journal.rejections)
app.command("balance")(journal.balance)
app.command("pause")(controls.pause_trading)
app.command("resume")(controls.resume_trading)
app.command("backtest")(backtest_command.backtest)
app.command("download-data")(data.download_data)
app.command("hyperopt")(research_command.hyperopt)
config_app.command("check")(setup.config_check)
devnet_app.command("up")(setup.devnet_up)
devnet_app.command("down")(setup.devnet_down)
devnet_app.command("fund")(setup.devnet_fund)
keys_app.command("new")(wallet.keys_new)
keys_app.command("import")(wallet.keys_import)
keys_app.command("address")(wallet.keys_address)
keys_app.command("verify")(wallet.keys_verify)
executor_app.command("deploy")(wallet.executor_deploy)
executor_app.command("withdraw")(wallet.executor_withdraw)
order_app.command("add")(orders.order_add)
order_app.command("list")(orders.order_list)
order_app.command("cancel")(orders.order_cancel)
executor_app.command("info")(executor.executor_info)
executor_app.command("fund")(executor.executor_fund)
