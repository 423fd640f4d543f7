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
from pathlib import Path
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


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write agent.toml and .env.example.")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write an annotated agent.toml (set up for the local devnet) and .env.example."""
    from agent.chain.registry import default_deployment_path
    from agent.config import render_config_template, render_env_example

    directory = directory.expanduser()
    config_path = directory / "agent.toml"
    env_example_path = directory / ".env.example"
    existing = [p for p in (config_path, env_example_path) if p.exists()]
    if existing and not force:
        names = " and ".join(str(p) for p in existing)
        verb = "exists" if len(existing) == 1 else "exist"
        typer.echo(f"error: {names} already {verb}; use --force to overwrite", err=True)
        raise typer.Exit(EXIT_BAD_USAGE_OR_CONFIG)
    directory.mkdir(parents=True, exist_ok=True)
    # The devnet writes its deployment under the repository; point at it relative to the config
    # when the config lives inside the repository, absolutely otherwise.
    deployment = default_deployment_path()
    try:
        deployment_ref = str(deployment.relative_to(directory.resolve()))
    except ValueError:
        deployment_ref = str(deployment)
    config_path.write_text(render_config_template(deployment_ref), encoding="utf-8")
    env_example_path.write_text(render_env_example(), encoding="utf-8")
    typer.echo(f"wrote {config_path} and {env_example_path}")
    typer.echo("next: start the devnet with `defi-agent devnet up` (it keeps running), then")
    typer.echo(f"      `defi-agent config check --config {config_path}` in another shell;")
    typer.echo("      copy .env.example to .env for API keys and the keystore password.")


@config_app.command("check")
def config_check(
    config: Annotated[Path, typer.Option("--config", "-c", help="The agent.toml to check.")] = (
        Path("agent.toml")
    ),
    env_file: Annotated[
        Path | None, typer.Option(help="The .env file (default: .env beside the config).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Validate a config file and print the effective settings with every secret hidden."""
    from agent.config import AgentConfig

    loaded = AgentConfig.load(config, env_file=env_file)
    typer.echo(loaded.redacted_dump("json" if as_json else "toml"), nl=False)
    typer.echo(f"{config}: OK", err=True)


@app.command("pause")
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

    from agent.config import AgentConfig
    from agent.risk import ControlFiles

    controls = ControlFiles.beside(
        AgentConfig.load(config, env_file=env_file).risk.kill_switch_file
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        controls.write_pause(f"{reason} (defi-agent pause, {stamp})")
    except OSError as exc:
        raise AgentError(f"cannot write {controls.kill_switch_file}: {exc.strerror}") from exc
    typer.echo(f"paused: {controls.kill_switch_file} written; `defi-agent resume` lifts it")


@app.command("resume")
def resume_trading(
    config: Annotated[Path, typer.Option("--config", "-c", help="The agent's agent.toml.")] = (
        Path("agent.toml")
    ),
    env_file: Annotated[
        Path | None, typer.Option(help="The .env file (default: .env beside the config).")
    ] = None,
) -> None:
    """Lift the kill switch and any drawdown halt; the agent trades again at its next tick."""
    from agent.config import AgentConfig
    from agent.risk import ControlFiles

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


# Feature modules register their sub-commands on the groups above when imported.
from agent import cli_runtime as _cli_runtime  # noqa: E402,F401
from agent import cli_wallet as _cli_wallet  # noqa: E402,F401
from agent.backtest.command import backtest as _backtest  # noqa: E402

app.command("backtest")(_backtest)
