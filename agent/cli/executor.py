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
from eth_abi import decode, encode
from eth_utils import to_checksum_address
from rich.console import Console
from rich.table import Table

from agent.chain.abi import selector
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

    cfg = AgentConfig.load(config, env_file=env_file)
    executor = _executor_address(cfg, address)
    rows, balances = asyncio.run(_info(cfg, executor))
    console = Console()
    table = Table("", "", title=f"ArbExecutor {executor}")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    held = Table("token", "amount", title="balances")
    for symbol, amount in balances:
        held.add_row(symbol, amount)
    console.print(held)


async def _info(cfg: Any, executor: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    from agent.chain.multicall import Multicall
    from agent.chain.rpc import RpcClient
    from agent.chain.tokens import resolve_tokens

    async with RpcClient([str(u) for u in cfg.chain.rpc_urls]) as rpc:
        code = await rpc.call_raw("eth_getCode", [executor, "latest"])
        if not (isinstance(code, str) and len(code) > 2):
            raise ConfigError(f"no contract at {executor} on {cfg.chain.name}")

        async def call(data: bytes) -> bytes:
            answer = await rpc.call_raw(
                "eth_call", [{"to": executor, "data": "0x" + data.hex()}, "latest"]
            )
            return bytes.fromhex(str(answer)[2:])

        (owner,) = decode(["address"], await call(selector("owner()")))
        (trader,) = decode(["address"], await call(selector("executor()")))
        (v3_factory,) = decode(["address"], await call(selector("v3Factory()")))
        rows = [
            ("code", f"{(len(code) - 2) // 2} bytes"),
            ("owner (withdrawals)", to_checksum_address(owner)),
            ("executor (trades)", to_checksum_address(trader)),
            ("V3 factory", to_checksum_address(v3_factory)),
        ]
        for dex in cfg.chain_addresses().v2_dexes().values():
            query = selector("v2InitCodeHash(address)") + encode(["address"], [dex.factory])
            (registered,) = decode(["bytes32"], await call(query))
            if not any(registered):
                state = "not accepted"
            elif registered == dex.pair_init_code_hash:
                state = "accepted (the registry's pair hash)"
            else:
                state = f"accepted (hash 0x{registered.hex()[:12]}...)"
            rows.append((f"{dex.name} pairs", state))
        multicall = Multicall(rpc)
        tokens = await resolve_tokens(
            cfg.market.tokens, cfg.chain_addresses(), cfg.market.token_addresses, multicall
        )
        wei = int(await rpc.call_raw("eth_getBalance", [executor, "latest"]), 16)
        balances = [("ETH", f"{wei / 10**18:,.6f}")]
        for token in tokens.values():
            query = selector("balanceOf(address)") + encode(["address"], [executor])
            answer = await rpc.call_raw(
                "eth_call", [{"to": token.address, "data": "0x" + query.hex()}, "latest"]
            )
            balances.append((token.symbol, f"{int(str(answer), 16) / 10**token.decimals:,.6f}"))
    return rows, balances


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
    from agent.chain.multicall import Multicall
    from agent.chain.nonce import NonceManager
    from agent.chain.rpc import RpcClient
    from agent.chain.tokens import resolve_tokens
    from agent.chain.tx import TransactionSender, TxRequest
    from agent.errors import FatalError
    from agent.execution import settings_from_config
    from agent.execution.tx_journal import JournaledTxs
    from agent.store import Journal, init_db, session_factory

    async with aiohttp.ClientSession() as session:
        await verify_chain(cfg, session)
        rpc = RpcClient([str(u) for u in cfg.chain.rpc_urls], session=session)
        tokens = await resolve_tokens(
            [token_ref], cfg.chain_addresses(), cfg.market.token_addresses, Multicall(rpc)
        )
        (token,) = tokens.values()
        units = int(whole * Decimal(10) ** token.decimals)
        if Decimal(units) != whole * Decimal(10) ** token.decimals:
            raise ConfigError(f"AMOUNT: {token.symbol} has {token.decimals} decimals")
        engine = await init_db(cfg.store.url)
        try:
            w3 = rpc.web3()
            _, fee_policy = settings_from_config(cfg.execution)
            sender = TransactionSender(
                read_w3=w3,
                submit_w3=w3,
                signer=signer,
                nonces=NonceManager(w3, signer.address),
                journal=JournaledTxs(Journal(session_factory(engine))),
                chain_id=cfg.chain.chain_id,
                fee_policy=fee_policy,
            )
            data = selector("transfer(address,uint256)") + encode(
                ["address", "uint256"], [executor, units]
            )
            sent = await sender.send(TxRequest(to=token.address, data=data, purpose="fund"))
            receipt, _ = await sender.track(sent, timeout_s=cfg.execution.receipt_timeout_s)
            if receipt.status != 1:
                raise FatalError(f"the transfer reverted in {receipt.tx_hash}")
            return receipt.tx_hash, units, token.symbol
        finally:
            await engine.dispose()
