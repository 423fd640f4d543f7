"""First-run commands: `init`, `config check`, `devnet up|down`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import EXIT_BAD_USAGE_OR_CONFIG


def devnet_up(
    name: Annotated[str, typer.Option(help="Deployment name (anvil/deployments/NAME.json).")] = (
        "devnet"
    ),
    extra_tokens: Annotated[
        int, typer.Option(min=0, max=40, help="Extra alt tokens, for hundreds of pools.")
    ] = 0,
    replica: Annotated[
        str | None,
        typer.Option(
            help="Replicate a real chain instead (ethereum, base, arbitrum): its chain id and "
            "contracts at their real addresses; stop it with `devnet down --name CHAIN`."
        ),
    ] = None,
) -> None:
    """Start Anvil with Uniswap V2/V3 deployed; print the RPC URL and addresses; Ctrl-C stops."""
    import asyncio

    from agent.devnet.replica import PROFILES
    from agent.devnet.serve import serve_devnet

    if replica is not None and replica not in PROFILES:
        typer.echo(f"--replica: expected one of {', '.join(PROFILES)}", err=True)
        raise typer.Exit(EXIT_BAD_USAGE_OR_CONFIG)
    asyncio.run(serve_devnet(name=name, extra_tokens=extra_tokens, replica=replica))


def devnet_down(
    name: Annotated[str, typer.Option(help="Deployment name given to `devnet up`.")] = "devnet",
) -> None:
    """Stop a devnet started with `defi-agent devnet up`."""
    from agent.devnet.serve import stop_devnet

    if stop_devnet(name):
        typer.echo(f"devnet '{name}' is stopping")
    else:
        typer.echo(f"no running devnet named '{name}'")


def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write agent.toml and .env.example.")
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing agent.toml.")
    ] = False,
) -> None:
    """Write what is missing: an annotated agent.toml (set up for the local devnet) and
    .env.example. An existing agent.toml is the operator's own and is never overwritten without
    --force; an existing .env.example (a checkout ships one) is kept."""
    from agent.config.models import render_config_template, render_env_example

    directory = directory.expanduser()
    config_path = directory / "agent.toml"
    env_example_path = directory / ".env.example"
    config_text = render_config_template()
    if config_path.exists() and not force and config_path.read_text() != config_text:
        typer.echo(
            f"error: {config_path} already exists and is yours; edit it, or use --force to "
            "replace it with the template",
            err=True,
        )
        raise typer.Exit(EXIT_BAD_USAGE_OR_CONFIG)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if force or not config_path.exists():
        config_path.write_text(config_text, encoding="utf-8")
        written.append(str(config_path))
    if not env_example_path.exists():
        env_example_path.write_text(render_env_example(), encoding="utf-8")
        written.append(str(env_example_path))
    typer.echo(f"wrote {' and '.join(written)}" if written else "nothing to write: all present")
    typer.echo("next: start the devnet with `defi-agent devnet up` (it keeps running), then")
    typer.echo(f"      `defi-agent config check --config {config_path}` in another shell;")
    typer.echo("      copy .env.example to .env for API keys and the keystore password.")


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
    from agent.config.models import AgentConfig

    loaded = AgentConfig.load(config, env_file=env_file)
    typer.echo(loaded.redacted_dump("json" if as_json else "toml"), nl=False)
    typer.echo(f"{config}: OK", err=True)
