"""The chain replicas: Ethereum and Base as an agent finds them through the registry alone.

Canonical contracts carry code at the registry's addresses, the real deployers' nonces create
exactly those addresses, the V3 factory creates pools at the addresses Uniswap's canonical
POOL_INIT_CODE_HASH predicts (so its constructor ran in place), QuoterV2 answers what our local
math says, and the tokens misbehave as the real ones do: USDT's approvals, USDC's packed
blacklist bit, PAXG's transfer fee, stETH's rebases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.abi import UNISWAP_V2_PAIR_INIT_CODE_HASH, UNISWAP_V3_POOL_INIT_CODE_HASH
from agent.chain.registry import (
    addresses_for,
)
from agent.devnet import Devnet
from agent.devnet.deploy import _artifact, _creation_code, create_address
from agent.devnet.jsonrpc import JsonRpc, JsonRpcError
from agent.devnet.node import DEV_ACCOUNTS, PROJECT_ROOT
from agent.devnet.replica import (
    PROFILES,
    REPLICA_V2_PAIR_INIT_CODE_HASH,
    TOKEN_ISSUER,
    replica_profile,
)
from agent.dex.v2 import fetch_v2_pool
from agent.dex.v3 import fetch_v3_pool
from tests.conftest import reverted

pytestmark = pytest.mark.chain

HOLDER = DEV_ACCOUNTS[2][0]
OTHER = DEV_ACCOUNTS[5][0]
ROUTER = addresses_for("ethereum").uniswap_v2_router02
PAXG = "0x45804880De22913dAFE09f4980848ECE6EcbAf78"
STETH = "0xae7ab96520DE3A18E5e111B5EaAb095312D7fE84"


def call_data(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def eth_call(rpc: JsonRpc, to: str, data: str, sender: str | None = None) -> bytes:
    tx = {"to": to, "data": data, **({"from": sender} if sender else {})}
    return bytes.fromhex(str(await rpc.call("eth_call", [tx, "latest"]))[2:])


async def send(
    rpc: JsonRpc, sender: str, to: str, data: str, gas: int = 1_000_000
) -> dict[str, Any]:
    """A mined transaction from ``sender`` (dev account or impersonated); its receipt."""
    await rpc.call("anvil_impersonateAccount", [sender])
    tx_hash = await rpc.call(
        "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(gas)}]
    )
    receipt: dict[str, Any] | None = None
    while receipt is None:
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    return receipt


async def balance(rpc: JsonRpc, token: str, owner: str) -> int:
    out = await eth_call(rpc, token, call_data("balanceOf(address)", ["address"], [owner]))
    return int.from_bytes(out[:32], "big")


@pytest.fixture
async def eth(ethereum_replica: Devnet) -> AsyncIterator[JsonRpc]:
    """The Ethereum replica's JSON-RPC, reverted after the test."""
    assert ethereum_replica.rpc is not None
    async with reverted(ethereum_replica):
        yield ethereum_replica.rpc


def test_the_real_deployers_at_their_nonces_create_the_registry_addresses() -> None:
    checked = 0
    for chain in PROFILES:
        for placement in replica_profile(chain).contracts:
            if placement.deployer is not None and placement.nonce is not None:
                assert create_address(placement.deployer, placement.nonce) == placement.address
                checked += 1
    # Every Ethereum contract comes from its real deployer; on Arbitrum the V3 stack, the V2
    # factory and Multicall3; on Base the V2 factory and Multicall3 (the rest is copied).
    assert all(p.deployer for p in replica_profile("ethereum").contracts)
    assert checked == 11 + 7 + 2


async def test_ethereum_replica_has_the_registry_contracts_at_chain_id_1(
    ethereum_replica: Devnet, eth: JsonRpc
) -> None:
    assert int(await eth.call("eth_chainId"), 16) == 1
    reg = addresses_for("ethereum")
    v3 = reg.v3_dexes()["uniswap_v3"]
    canonical = [
        reg.multicall3,
        reg.weth,
        *(d.factory for d in reg.v2_dexes().values()),
        *(d.router02 for d in reg.v2_dexes().values()),
        v3.factory,
        v3.swap_router,
        v3.swap_router02,
        v3.quoter_v2,
        v3.position_manager,
        *(t.address for t in reg.tokens.values()),
    ]
    for address in canonical:
        assert address is not None
        code = await eth.call("eth_getCode", [address, "latest"])
        assert len(code) > 2, f"no code at {address}"
    # The replica's own view of itself names the same addresses the registry does.
    assert ethereum_replica.addresses["uniswap_v3.swap_router02"] == v3.swap_router02
    for symbol, token in reg.tokens.items():
        assert ethereum_replica.tokens[symbol] == token


async def test_v3_factory_creates_pools_under_uniswaps_canonical_pool_hash(eth: JsonRpc) -> None:
    pool_artifact = _artifact(
        PROJECT_ROOT / "anvil/node_modules/@uniswap/v3-core/artifacts/contracts/"
        "UniswapV3Pool.sol/UniswapV3Pool.json"
    )
    assert keccak(_creation_code(pool_artifact)) == UNISWAP_V3_POOL_INIT_CODE_HASH
    reg = addresses_for("ethereum")
    factory = reg.v3_dexes()["uniswap_v3"].factory
    token0, token1 = sorted((reg.tokens["DAI"].address, PAXG), key=lambda a: int(a, 16))
    create = call_data(
        "createPool(address,address,uint24)",
        ["address", "address", "uint24"],
        [token0, token1, 500],
    )
    receipt = await send(eth, HOLDER, factory, create, gas=6_000_000)
    assert int(receipt["status"], 16) == 1  # NoDelegateCall saw the factory at its own address
    salt = keccak(encode(["address", "address", "uint24"], [token0, token1, 500]))
    expected = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + UNISWAP_V3_POOL_INIT_CODE_HASH)
    get_pool = call_data(
        "getPool(address,address,uint24)", ["address", "address", "uint24"], [token0, token1, 500]
    )
    assert (await eth_call(eth, factory, get_pool))[12:32] == expected[12:]
    # Fee tiers as on mainnet, including the 1 bp tier governance added.
    for fee, spacing in ((100, 1), (500, 10), (3000, 60), (10000, 200)):
        tick_spacing = await eth_call(
            eth, factory, call_data("feeAmountTickSpacing(uint24)", ["uint24"], [fee])
        )
        assert int.from_bytes(tick_spacing[:32], "big") == spacing


async def test_each_v2_dex_has_its_own_pair_init_code_hash(
    ethereum_replica: Devnet, eth: JsonRpc
) -> None:
    reg = addresses_for("ethereum")
    weth, usdc = reg.weth, reg.usdc
    t0, t1 = sorted((weth, usdc), key=lambda a: int(a, 16))
    salt = keccak(bytes.fromhex(t0[2:] + t1[2:]))
    for dex, init_code_hash in (
        ("uniswap_v2", UNISWAP_V2_PAIR_INIT_CODE_HASH),
        ("sushiswap", REPLICA_V2_PAIR_INIT_CODE_HASH),
    ):
        factory = reg.v2_dexes()[dex].factory
        pair = await eth_call(
            eth, factory, call_data("getPair(address,address)", ["address", "address"], [t0, t1])
        )
        expected = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + init_code_hash)[12:]
        assert pair[12:32] == expected, dex
    assert REPLICA_V2_PAIR_INIT_CODE_HASH != UNISWAP_V2_PAIR_INIT_CODE_HASH
    # The registry keeps SushiSwap's real hash for real chains; the replica says what it carries.
    assert reg.v2_dexes()["sushiswap"].pair_init_code_hash != UNISWAP_V2_PAIR_INIT_CODE_HASH
    assert ethereum_replica.v2_pair_init_code_hashes == {  # type: ignore[attr-defined]
        "sushiswap": REPLICA_V2_PAIR_INIT_CODE_HASH
    }


async def assert_quoter_v2_matches_local_math(replica: Devnet) -> None:
    """QuoterV2's quoteExactInputSingle equals ``V3Pool.quote_exact_input`` on every V3 pool,
    both directions, 1 and 250 whole tokens in."""
    quoter = addresses_for(replica.name).v3_dexes()["uniswap_v3"].quoter_v2
    assert quoter is not None and replica.rpc is not None
    decimals = {t.address: t.decimals for t in replica.tokens.values()}
    w3 = AsyncWeb3(AsyncHTTPProvider(replica.rpc_url))
    try:
        checked = 0
        for pool_info in replica.pools:
            if pool_info.kind != "v3":
                continue
            pool = await fetch_v3_pool(w3, pool_info.address)
            for token_in, token_out in (
                (pool_info.token0, pool_info.token1),
                (pool_info.token1, pool_info.token0),
            ):
                for whole in (1, 250):
                    amount_in = whole * 10 ** decimals[token_in]
                    data = call_data(
                        "quoteExactInputSingle((address,address,uint256,uint24,uint160))",
                        ["(address,address,uint256,uint24,uint160)"],
                        [(token_in, token_out, amount_in, pool_info.fee_pips, 0)],
                    )
                    answer = await eth_call(replica.rpc, quoter, data)
                    amount_out = decode(["uint256", "uint160", "uint32", "uint256"], answer)[0]
                    assert pool.quote_exact_input(token_in, amount_in) == amount_out
                    checked += 1
        assert checked >= 4 * 6
    finally:
        await w3.provider.disconnect()


async def test_quoter_v2_answers_what_local_math_says_on_ethereum(ethereum_replica: Devnet) -> None:
    await assert_quoter_v2_matches_local_math(ethereum_replica)


async def test_quoter_v2_answers_what_local_math_says_on_base(base_replica: Devnet) -> None:
    await assert_quoter_v2_matches_local_math(base_replica)


async def test_base_replica_has_swap_router02_and_no_swap_router(base_replica: Devnet) -> None:
    assert base_replica.rpc is not None
    assert int(await base_replica.call("eth_chainId"), 16) == 8453
    v3 = addresses_for("base").v3_dexes()["uniswap_v3"]
    assert v3.swap_router is None and v3.router_kind == "swap_router02"
    assert v3.swap_router02 == "0x2626664c2603336E57B271c5C0b26F421741e481"
    for address in (v3.factory, v3.swap_router02, v3.quoter_v2, v3.position_manager):
        assert address is not None
        assert len(await base_replica.call("eth_getCode", [address, "latest"])) > 2
    # SwapRouter02 was built with Base's own factories and WETH.
    for signature, expected in (
        ("factory()", v3.factory),
        ("factoryV2()", addresses_for("base").uniswap_v2_factory),
        ("WETH9()", addresses_for("base").weth),
    ):
        out = await eth_call(base_replica.rpc, v3.swap_router02, call_data(signature, [], []))
        assert "0x" + out[12:32].hex() == str(expected).lower()


async def test_usdt_approvals_must_go_through_zero_and_return_nothing(eth: JsonRpc) -> None:
    usdt = addresses_for("ethereum").tokens["USDT"].address
    approve = "approve(address,uint256)"
    first = await send(eth, HOLDER, usdt, call_data(approve, ["address", "uint256"], [ROUTER, 5]))
    assert int(first["status"], 16) == 1
    again = await send(eth, HOLDER, usdt, call_data(approve, ["address", "uint256"], [ROUTER, 7]))
    assert int(again["status"], 16) == 0  # non-zero to non-zero
    for amount in (0, 7):
        receipt = await send(
            eth, HOLDER, usdt, call_data(approve, ["address", "uint256"], [ROUTER, amount])
        )
        assert int(receipt["status"], 16) == 1
    transfer = call_data("transfer(address,uint256)", ["address", "uint256"], [OTHER, 1])
    assert await eth_call(eth, usdt, transfer, sender=HOLDER) == b""  # no bool returned
    allowance = await eth_call(
        eth, usdt, call_data("allowance(address,address)", ["address"] * 2, [HOLDER, ROUTER])
    )
    assert int.from_bytes(allowance, "big") == 7


async def test_usdc_balance_shares_its_slot_with_the_blacklist_bit(eth: JsonRpc) -> None:
    usdc = addresses_for("ethereum").usdc
    held = await balance(eth, usdc, HOLDER)
    assert held == 2_000_000 * 10**6
    # FiatToken v2.2 layout: balanceAndBlacklistStates is mapping slot 9.
    slot = keccak(encode(["address", "uint256"], [HOLDER, 9]))
    raw = await eth.call("eth_getStorageAt", [usdc, "0x" + slot.hex(), "latest"])
    assert int(raw, 16) == held
    blacklist = call_data("blacklist(address)", ["address"], [HOLDER])
    assert int((await send(eth, TOKEN_ISSUER, usdc, blacklist))["status"], 16) == 1
    raw = await eth.call("eth_getStorageAt", [usdc, "0x" + slot.hex(), "latest"])
    assert int(raw, 16) == (1 << 255) | held  # the flag sits in the balance's own slot
    assert await balance(eth, usdc, HOLDER) == held
    transfer = call_data("transfer(address,uint256)", ["address", "uint256"], [OTHER, 1])
    with pytest.raises(JsonRpcError, match="Blacklistable: account is blacklisted"):
        await eth_call(eth, usdc, transfer, sender=HOLDER)


async def test_fee_on_transfer_and_rebasing_tokens_move_balances_like_the_real_ones(
    eth: JsonRpc,
) -> None:
    amount = 10 * 10**18
    before = await balance(eth, PAXG, OTHER)
    transfer = call_data("transfer(address,uint256)", ["address", "uint256"], [OTHER, amount])
    await send(eth, HOLDER, PAXG, transfer)
    assert await balance(eth, PAXG, OTHER) - before == amount * 9998 // 10_000

    held = await balance(eth, STETH, HOLDER)
    total = int.from_bytes(await eth_call(eth, STETH, call_data("totalSupply()", [], [])), "big")
    rebase = call_data("rebase(uint256)", ["uint256"], [total * 101 // 100])
    await send(eth, TOKEN_ISSUER, STETH, rebase)
    assert await balance(eth, STETH, HOLDER) == pytest.approx(held * 1.01, rel=1e-12)


async def test_v2_reserves_are_at_realistic_prices(ethereum_replica: Devnet) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(ethereum_replica.rpc_url))
    try:
        tokens = {t.address: t for t in ethereum_replica.tokens.values()}
        for info in ethereum_replica.pools:
            if info.kind != "v2" or {tokens[info.token0].symbol, tokens[info.token1].symbol} != {
                "WETH",
                "USDT",
            }:
                continue
            pool = await fetch_v2_pool(w3, info.address)
            weth = ethereum_replica.tokens["WETH"].address
            usdt_per_eth = pool.quote_exact_input(weth, 10**15) * 1000 / 10**6
            assert 2_980 < usdt_per_eth < 3_000  # 0.3% fee below 3,000
    finally:
        await w3.provider.disconnect()


async def test_market_tokens_by_symbol_declared_symbol_or_address_are_read_on_chain(
    ethereum_replica: Devnet,
) -> None:
    from dataclasses import replace
    from types import MappingProxyType

    from agent.chain.multicall import Multicall
    from agent.chain.rpc import RpcClient
    from agent.chain.tokens import resolve_tokens
    from agent.errors import ConfigError
    from agent.types import Token

    reg = addresses_for("ethereum")
    client = RpcClient([ethereum_replica.rpc_url])
    multicall = Multicall(client)
    try:
        tokens = await resolve_tokens(
            ["WBTC", "USDC", PAXG.lower(), "steth"], reg, {"stETH": STETH}, multicall
        )
        assert {(t.symbol, t.decimals) for t in tokens.values()} == {
            ("WBTC", 8),
            ("USDC", 6),
            ("PAXG", 18),  # not in the registry: the symbol comes from the chain
            ("stETH", 18),
        }
        assert set(tokens) == {reg.tokens["WBTC"].address, reg.usdc, PAXG, STETH}

        nothing_there = "0x000000000000000000000000000000000000bEEF"
        with pytest.raises(ConfigError, match="no decimals"):
            await resolve_tokens(["WETH", nothing_there], reg, {}, multicall)
        with pytest.raises(ConfigError, match="unknown token 'LINK'"):
            await resolve_tokens(["WETH", "LINK"], reg, {}, multicall)
        # A registry that is wrong about a token is caught by the chain's answer.
        wrong = replace(
            reg, tokens=MappingProxyType({**reg.tokens, "USDC": Token(reg.usdc, "USDC", 18)})
        )
        with pytest.raises(ConfigError, match="6 decimals on chain, the registry says 18"):
            await resolve_tokens(["USDC"], wrong, {}, multicall)
    finally:
        await client.aclose()


async def test_a_second_replica_starts_from_the_saved_state(
    ethereum_replica: Devnet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from agent.devnet.replica import Replica

    state = tmp_path_factory.getbasetemp() / "replica-state" / "ethereum.json"
    async with Replica("ethereum", state_file=state) as again:
        assert again.loaded_from_state
        assert int(await again.call("eth_chainId"), 16) == 1
        assert again.addresses == ethereum_replica.addresses
        v3_factory = addresses_for("ethereum").v3_dexes()["uniswap_v3"].factory
        assert len(await again.call("eth_getCode", [v3_factory, "latest"])) > 2


@pytest.mark.parametrize("chain", ["ethereum", "base"])
async def test_the_simulated_market_trades_on_the_replicas_without_reverts(
    chain: str,
    ethereum_replica: Devnet,
    base_replica: Devnet,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """On a replica of its own (from the session's saved state): reverting ~80 blocks of
    simulated trading on the shared session replica left Anvil with a head whose parent blocks
    it could no longer serve, and every later test's gas oracle went stale."""
    from agent.devnet.market import MarketSimulator
    from agent.devnet.replica import Replica

    state = tmp_path_factory.getbasetemp() / "replica-state" / f"{chain}.json"
    async with Replica(chain, state_file=state) as replica:
        assert replica.rpc is not None and replica.deployment is not None
        simulator = MarketSimulator(replica.rpc, replica.deployment, gap_every=3, whale_every=4)
        sent = 0
        for _ in range(13):  # every pool kind and token, gaps and whale trades included
            sent += await simulator.step()
        await simulator.step()  # checks the last step's receipts
        assert sent >= 30
        assert simulator.reverted == 0


async def test_arbitrum_replica_carries_native_and_bridged_usdc_and_uniswap() -> None:
    from agent.devnet.replica import Replica

    reg = addresses_for("arbitrum")
    async with Replica("arbitrum") as arbitrum:
        assert arbitrum.rpc is not None
        assert int(await arbitrum.call("eth_chainId"), 16) == 42161
        v3 = reg.v3_dexes()["uniswap_v3"]
        for address in (reg.multicall3, reg.weth, v3.factory, v3.swap_router, v3.quoter_v2):
            assert address is not None
            assert len(await arbitrum.call("eth_getCode", [address, "latest"])) > 2
        decimals = call_data("decimals()", [], [])
        for symbol in ("USDC", "USDC.e", "USDT", "WBTC", "ARB"):
            token = reg.tokens[symbol]
            answer = await eth_call(arbitrum.rpc, token.address, decimals)
            assert int.from_bytes(answer, "big") == token.decimals
            assert await balance(arbitrum.rpc, token.address, HOLDER) > 0
        assert reg.tokens["USDC.e"].address != reg.usdc
