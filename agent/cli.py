"""The ``defi-agent`` command line.

Exit codes: 0 ok, 2 bad usage or bad configuration (typer usage errors, ``ConfigError``,
``WalletError``), 1 any other runtime failure (``AgentError``). Errors the agent raises on purpose
are printed as one clear message on stderr, never as a traceback.

Sub-command groups (``keys``, ``devnet``, ``executor``, ``config``) are created here; the modules
that own a feature add their commands to the matching group with ``@<group>_app.command()``.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from agent.errors import AgentError, ConfigError, WalletError

EXIT_OK = 0
EXIT_RUNTIME_FAILURE = 1
EXIT_BAD_USAGE_OR_CONFIG = 2

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
app.add_typer(keys_app, name="keys")
app.add_typer(devnet_app, name="devnet")
app.add_typer(executor_app, name="executor")
app.add_typer(config_app, name="config")


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
    except (ConfigError, WalletError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_USAGE_OR_CONFIG
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


@devnet_app.command("up")
def devnet_up(
    name: Annotated[str, typer.Option(help="Deployment name (anvil/deployments/NAME.json).")] = (
        "devnet"
    ),
    extra_tokens: Annotated[
        int, typer.Option(min=0, max=40, help="Extra alt tokens, for hundreds of pools.")
    ] = 0,
) -> None:
    """Start Anvil with Uniswap V2/V3 deployed; print the RPC URL and addresses; Ctrl-C stops."""
    import asyncio

    from agent.devnet.serve import serve_devnet

    asyncio.run(serve_devnet(name=name, extra_tokens=extra_tokens))


@devnet_app.command("down")
def devnet_down(
    name: Annotated[str, typer.Option(help="Deployment name given to `devnet up`.")] = "devnet",
) -> None:
    """Stop a devnet started with `defi-agent devnet up`."""
    from agent.devnet.serve import stop_devnet

    if stop_devnet(name):
        typer.echo(f"devnet '{name}' is stopping")
    else:
        typer.echo(f"no running devnet named '{name}'")


@app.command("demo")
def demo() -> None:
    """First run: a devnet with Uniswap, one swap on each DEX, and what happened."""
    import asyncio

    from agent.devnet.serve import demo_swaps

    asyncio.run(demo_swaps())


# Feature modules register their sub-commands on the groups above when imported.
from agent import cli_wallet as _cli_wallet  # noqa: E402,F401
