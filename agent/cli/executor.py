"""``defi-agent executor info|fund``: inspect the ArbExecutor and give it capital.

The executor is ``execution.arb_executor`` (or ``--address``). ``fund`` transfers tokens from
the keystore wallet, signed and journaled like every transaction the agent sends.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_utils import to_checksum_address
from rich.console import Console
from rich.table import Table

from agent.cli.common import ConfigOption, EnvOption
from agent.errors import ConfigError

AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="The ArbExecutor (default: execution.arb_executor)."),
]


def _executor_address(cfg: Any, address: str | None) -> str:
    from eth_utils import is_hex_address

    chosen = address or (str(cfg.execution.arb_executor or "") or None)
    if chosen is None:
        raise ConfigError(
            "execution.arb_executor: not set (deploy one with `defi-agent executor deploy`, "
            "or pass --address)"
        )
    if not is_hex_address(chosen):
        raise ConfigError(f"--address: not an address: {chosen!r}")
    return str(to_checksum_address(chosen))


def executor_info(
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    address: AddressOption = None,
) -> None:
    """The executor's code, owner, accepted V2 factories (init-code hashes) and balances."""
    from agent.config.models import AgentConfig
    from agent.execution.deploy import describe_arb_executor

    cfg = AgentConfig.load(config, env_file=env_file)
    executor = _executor_address(cfg, address)
    rows, balances = asyncio.run(describe_arb_executor(cfg, executor))
    console = Console()
    table = Table("", "", title=f"ArbExecutor {executor}")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    held = Table("token", "amount", title="balances")
    for symbol, amount in balances:
        held.add_row(symbol, amount)
    console.print(held)


def executor_fund(
    token: Annotated[str, typer.Argument(help="Token symbol (market.tokens) or 0x address.")],
    amount: Annotated[str, typer.Argument(help="Whole tokens, e.g. 1.5 or 2500.")],
    config: ConfigOption = Path("agent.toml"),
    env_file: EnvOption = None,
    address: AddressOption = None,
) -> None:
    """Transfer AMOUNT of TOKEN from the wallet to the ArbExecutor (its trading capital)."""
    from agent.app.build import unlock_signer
    from agent.config.models import AgentConfig

    cfg = AgentConfig.load(config, env_file=env_file)
    executor = _executor_address(cfg, address)
    try:
        whole = Decimal(amount)
    except InvalidOperation:
        raise ConfigError(f"AMOUNT: not a number: {amount!r}") from None
    if whole <= 0:
        raise ConfigError(f"AMOUNT: must be positive (got {amount})")
    signer = unlock_signer(cfg)
    tx_hash, units, symbol = asyncio.run(_fund(cfg, signer, executor, token, whole))
    typer.echo(f"sent {whole} {symbol} ({units} units) to {executor} in {tx_hash}")


async def _fund(
    cfg: Any, signer: Any, executor: str, token_ref: str, whole: Decimal
) -> tuple[str, int, str]:
    import aiohttp

    from agent.app.preflight import verify_chain
    from agent.execution.deploy import fund_arb_executor

    async with aiohttp.ClientSession() as session:
        await verify_chain(cfg, session)
    return await fund_arb_executor(cfg, signer, executor, token_ref, whole)
