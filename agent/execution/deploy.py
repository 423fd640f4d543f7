"""Deploying the ArbExecutor for a configured agent, and sweeping it to its owner: the V2
factories it may call are those whose pair init-code hash reproduces their pair addresses on
chain (never assumed); every transaction goes through a journaling sender under the signing
policy."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal

from eth_abi import decode, encode
from eth_utils.address import to_checksum_address

from agent.chain.abi import (
    UNISWAP_V2_PAIR_INIT_CODE_HASH,
    erc20_balance,
    selector,
    verify_v2_init_code_hash,
)
from agent.chain.arb_executor import encode_withdraw_eth, encode_withdraw_token
from agent.chain.multicall import Multicall
from agent.chain.nonce import NonceManager
from agent.chain.rpc import RpcClient
from agent.chain.tokens import resolve_tokens
from agent.chain.tx import TransactionSender, TxMandate, TxRequest
from agent.config.models import AgentConfig
from agent.errors import ConfigError, FatalError, WalletError
from agent.execution.chain import deploy_arb_executor, settings_from_config
from agent.execution.common import DexContracts
from agent.execution.policy import NATIVE, SigningPolicy
from agent.execution.tx_journal import JournaledTxs
from agent.store import Journal, init_db, session_factory
from agent.wallet.keystore import Signer

log = logging.getLogger(__name__)


async def withdraw_from_arb_executor(
    agent_config: AgentConfig, signer: Signer, token_refs: Sequence[str]
) -> tuple[str, list[tuple[str, int]]]:

    addresses = agent_config.chain_addresses()
    executor = to_checksum_address(str(agent_config.execution.arb_executor))
    tokens = []
    for ref in token_refs or [t.address for t in addresses.tokens.values()]:
        known = addresses.token(ref)
        if known is None:
            raise ConfigError(f"--token {ref!r} is not a token known on {agent_config.chain.name}")
        tokens.append(known)
    async with opened_sender(agent_config, signer) as sender:
        w3 = sender.read_w3
        sender.guard = SigningPolicy(
            w3,
            signer.address,
            DexContracts({}, {}, arb_executor=executor),
            watched_tokens=[t.address for t in tokens],
        )
        owner_word = await w3.eth.call({"to": executor, "data": selector("owner()")})
        owner = to_checksum_address(bytes(owner_word)[12:32])
        swept: list[tuple[str, int]] = []
        sweeps = [
            (t.symbol, t.address, await erc20_balance(w3, t.address, executor)) for t in tokens
        ]
        sweeps.append(("ETH", NATIVE, int(await w3.eth.get_balance(executor))))
        for name, address, amount in sweeps:
            if amount == 0:
                continue
            data = (
                encode_withdraw_eth(amount)
                if address == NATIVE
                else encode_withdraw_token(address, amount)
            )
            mandate = TxMandate("withdraw", token=address, amount=amount)
            sent = await sender.send(
                TxRequest(to=executor, data=data, purpose="withdraw", mandate=mandate)
            )
            receipt, _ = await sender.track(sent, timeout_s=180.0)
            if receipt.status != 1:
                raise WalletError(f"withdrawal of {name} reverted in {receipt.tx_hash}")
            swept.append((name, amount))
        return owner, swept


async def deploy_arb_executor_from_config(
    agent_config: AgentConfig, signer: Signer, extra_hashes: Mapping[str, bytes], owner: str | None
) -> str:

    addresses = agent_config.chain_addresses()
    if addresses.uniswap_v3_factory is None:
        raise ConfigError(f"no Uniswap V3 factory known on {agent_config.chain.name}")
    async with opened_sender(agent_config, signer) as sender:
        w3 = sender.read_w3
        sender.guard = SigningPolicy(w3, signer.address, DexContracts({}, {}))
        v2_hashes: dict[str, bytes] = {}
        for name, dex in addresses.v2_dexes().items():
            # the operator's, then the registry's for this DEX (Sushi's own), then Uniswap's
            known = (
                extra_hashes.get(name),
                dex.pair_init_code_hash,
                UNISWAP_V2_PAIR_INIT_CODE_HASH,
            )
            candidates = [h for h in dict.fromkeys(known) if h]
            verified = await verify_v2_init_code_hash(w3, dex.factory, candidates)
            if verified is None:
                log.warning(
                    "%s factory %s: no verified pair init-code hash; not enabled (pass "
                    "--v2-init-code-hash %s=0x...)",
                    name,
                    dex.factory,
                    name,
                )
                continue
            v2_hashes[dex.factory] = verified
        return await deploy_arb_executor(
            sender, addresses.uniswap_v3_factory, v2_hashes, owner=owner
        )


async def describe_arb_executor(
    agent_config: AgentConfig, executor: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """What ``executor info`` shows: ``(name, value)`` rows for the code, owner, executor, V3
    factory and the V2 factories it accepts, and ``(symbol, amount)`` for its balances."""
    async with RpcClient([str(u) for u in agent_config.chain.rpc_urls]) as rpc:
        code = await rpc.call_raw("eth_getCode", [executor, "latest"])
        if not (isinstance(code, str) and len(code) > 2):
            raise ConfigError(f"no contract at {executor} on {agent_config.chain.name}")

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
        for dex in agent_config.chain_addresses().v2_dexes().values():
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
            agent_config.market.tokens,
            agent_config.chain_addresses(),
            agent_config.market.token_addresses,
            multicall,
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


async def fund_arb_executor(
    agent_config: AgentConfig, signer: Signer, executor: str, token_ref: str, whole: Decimal
) -> tuple[str, int, str]:
    """Transfer ``whole`` tokens of ``token_ref`` from ``signer`` to ``executor``, journaled;
    ``(tx hash, smallest units, symbol)``."""
    async with RpcClient([str(u) for u in agent_config.chain.rpc_urls]) as rpc:
        tokens = await resolve_tokens(
            [token_ref],
            agent_config.chain_addresses(),
            agent_config.market.token_addresses,
            Multicall(rpc),
        )
    (token,) = tokens.values()
    units = int(whole * Decimal(10) ** token.decimals)
    if Decimal(units) != whole * Decimal(10) ** token.decimals:
        raise ConfigError(f"AMOUNT: {token.symbol} has {token.decimals} decimals")
    # Sent through the read RPC, as `executor fund` always has (not chain.submit_rpc_url).
    async with opened_sender(agent_config, signer, use_submit_rpc=False) as sender:
        data = selector("transfer(address,uint256)") + encode(
            ["address", "uint256"], [executor, units]
        )
        sent = await sender.send(TxRequest(to=token.address, data=data, purpose="fund"))
        receipt, _ = await sender.track(sent, timeout_s=agent_config.execution.receipt_timeout_s)
        if receipt.status != 1:
            raise FatalError(f"the transfer reverted in {receipt.tx_hash}")
        return receipt.tx_hash, units, token.symbol


@asynccontextmanager
async def opened_sender(
    agent_config: AgentConfig, signer: Signer, *, use_submit_rpc: bool = True
) -> AsyncIterator[TransactionSender]:
    """A journaling ``TransactionSender`` for ``signer`` on the configured chain; it broadcasts
    through ``chain.submit_rpc_url`` when set, unless ``use_submit_rpc`` is false."""

    read_client = RpcClient(agent_config.chain.rpc_urls)
    submit_url = agent_config.chain.submit_rpc_url if use_submit_rpc else None
    submit_client = RpcClient([submit_url]) if submit_url else read_client
    engine = await init_db(agent_config.store.url)
    try:
        w3 = read_client.web3()
        chain_id = int(await w3.eth.chain_id)
        if chain_id != agent_config.chain.chain_id:
            raise ConfigError(
                f"chain.chain_id is {agent_config.chain.chain_id} but the RPC serves {chain_id}"
            )
        _, fee_policy = settings_from_config(agent_config.execution)
        yield TransactionSender(
            read_w3=w3,
            submit_w3=submit_client.web3(),
            signer=signer,
            nonces=NonceManager(w3, signer.address),
            journal=JournaledTxs(Journal(session_factory(engine))),
            chain_id=chain_id,
            fee_policy=fee_policy,
            private_submit=submit_url is not None
            and agent_config.chain.submission_mode != "public",
        )
    finally:
        await engine.dispose()
        await read_client.aclose()
        if submit_client is not read_client:
            await submit_client.aclose()
