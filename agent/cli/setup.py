"""First-run commands: `init`, `config check`, `devnet up|down`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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


def devnet_fund(
    address: Annotated[str, typer.Argument(help="The wallet to fund (0x...).")],
    name: Annotated[str, typer.Option(help="The devnet's name given to `devnet up`.")] = "devnet",
    rpc_url: Annotated[
        str | None,
        typer.Option(help="A local chain's RPC (a replica); default: the devnet's deployment."),
    ] = None,
    usd: Annotated[float, typer.Option(min=1, help="USD of each token.")] = 100_000.0,
) -> None:
    """Give ADDRESS gas and test tokens on a local chain (a devnet or a replica; never a
    public chain: the funding methods are Anvil cheat codes)."""
    import asyncio

    from eth_utils import is_hex_address, to_checksum_address

    from agent.errors import ConfigError

    if not is_hex_address(address):
        raise ConfigError(f"ADDRESS: not an address: {address!r}")
    for line in asyncio.run(_fund_on_local_chain(to_checksum_address(address), name, rpc_url, usd)):
        typer.echo(line)


async def _fund_on_local_chain(
    address: str, name: str, rpc_url: str | None, usd: float
) -> list[str]:
    from agent.app.rehearsal import _market_tokens, fund_wallet, upstream_chain
    from agent.chain.registry import DEVNET_CHAIN, default_deployment_path, load_deployment
    from agent.devnet.jsonrpc import JsonRpc
    from agent.errors import ConfigError

    if rpc_url is None:
        path = default_deployment_path(name)
        if not path.is_file():
            raise ConfigError(f"no devnet '{name}' ({path}); start one with `defi-agent devnet up`")
        rpc_url = load_deployment(path).rpc_url
    assert rpc_url is not None
    chain, _ = await upstream_chain(rpc_url)
    async with JsonRpc(rpc_url) as rpc:
        if chain == DEVNET_CHAIN:
            symbols = [s for s in load_deployment(default_deployment_path(name)).tokens]
            tokens = [s for s in symbols if not s.startswith("ALT")]
        else:
            tokens = _market_tokens(None, chain)
        funded = await fund_wallet(rpc, rpc_url, chain, tokens, {}, address, wallet_usd=usd)
    return funded.lines


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
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the RPC endpoints (reachable, chain id).")
    ] = False,
) -> None:
    """Validate a config file and print the effective settings with every secret hidden.

    Also what `run` would refuse: an RPC endpoint unreachable or on another chain, a missing
    password file, a keystore that is not wallet.address, execution.mode "demo"; and settings
    that contradict each other (reported as notes, with what the agent does about them)."""
    from agent.config.models import AgentConfig

    loaded = AgentConfig.load(config, env_file=env_file)
    typer.echo(loaded.redacted_dump("json" if as_json else "toml"), nl=False)
    problems = _run_would_refuse(loaded, offline=offline)
    from agent.app.build import settings_notes

    for note in settings_notes(loaded):
        typer.echo(f"note: {note}", err=True)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(EXIT_BAD_USAGE_OR_CONFIG)
    typer.echo(f"{config}: OK", err=True)


def _run_would_refuse(cfg: Any, *, offline: bool) -> list[str]:
    import asyncio

    from agent.app.preflight import check_wallet_address, endpoint_chain_id
    from agent.errors import AgentError, WalletError
    from agent.redaction import redact_endpoint

    problems: list[str] = []
    mode = cfg.execution.mode
    if mode == "demo":
        problems.append('execution.mode: "demo" is only for `defi-agent demo`; `run` refuses it')
    password_file = cfg.wallet.password_file
    if mode != "paper" and password_file is not None and not password_file.is_file():
        problems.append(f"wallet.password_file: {password_file} does not exist")
    try:
        asyncio.run(check_wallet_address(cfg))
    except WalletError as exc:
        problems.append(str(exc))
    if offline:
        return problems

    async def chain_ids() -> list[int | BaseException]:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(
                *(endpoint_chain_id(str(u), session, 5.0) for u in cfg.chain.rpc_urls),
                return_exceptions=True,
            )

    for url, answer in zip(cfg.chain.rpc_urls, asyncio.run(chain_ids()), strict=True):
        where = redact_endpoint(str(url))
        if isinstance(answer, AgentError):
            problems.append(f"chain.rpc_urls: {where} is unreachable ({type(answer).__name__})")
        elif isinstance(answer, BaseException):
            raise answer
        elif answer != cfg.chain.chain_id:
            problems.append(
                f"chain.rpc_urls: {where} serves chain id {answer}, not chain.chain_id "
                f"{cfg.chain.chain_id}"
            )
    return problems
