"""The contract ABI facts the agent uses, in one place: function selectors and event topics,
calldata encoding, CREATE2 addresses of Uniswap V2 pairs and V3 pools with their init-code
hashes, and the ERC20 reads (``balanceOf``, ``allowance``).

Addresses are 0x-prefixed hex strings; amounts are ``int`` in the token's smallest unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import encode
from eth_utils import to_checksum_address
from eth_utils.crypto import keccak
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from agent.errors import SimulationRevert

# CREATE2 init-code hashes: keccak256 of the pair/pool creation code each factory deploys. The V2
# one is Uniswap V2's (also what the devnet's two V2 stacks use: both deploy the npm
# UniswapV2Factory); forks such as SushiSwap have their own, which the registry names per DEX.
UNISWAP_V2_PAIR_INIT_CODE_HASH = bytes.fromhex(
    "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
)
UNISWAP_V3_POOL_INIT_CODE_HASH = bytes.fromhex(
    "e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"
)
# SushiSwap's pair (its own build of the V2 pair), hardcoded in Sushi's UniswapV2Library.
SUSHISWAP_V2_PAIR_INIT_CODE_HASH = bytes.fromhex(
    "e18a34eb0e04b04f7a0ac29a6e80748dca96319b42c54d679cb821dca90c6303"
)


def selector(signature: str) -> bytes:
    """The 4-byte function selector of ``signature`` ("transfer(address,uint256)")."""
    return keccak(text=signature)[:4]


def event_topic(signature: str) -> str:
    """topic0 of the event ``signature``, as 0x-prefixed hex (what ``eth_getLogs`` returns)."""
    return "0x" + keccak(text=signature).hex()


def calldata(signature: str, types: Sequence[str], args: Sequence[Any]) -> bytes:
    """Selector of ``signature`` followed by the ABI encoding of ``args`` as ``types``."""
    return selector(signature) + encode(list(types), list(args))


def calldata_hex(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    """``calldata`` as the 0x-prefixed hex a JSON-RPC ``data`` field carries."""
    return "0x" + calldata(signature, types, args).hex()


SEL_APPROVE = selector("approve(address,uint256)")
SEL_ALLOWANCE = selector("allowance(address,address)")
SEL_BALANCE_OF = selector("balanceOf(address)")


def sort_tokens(token_a: str, token_b: str) -> tuple[str, str]:
    """The pair's ``(token0, token1)``: the lower address first, as the factories sort them."""
    return (token_a, token_b) if int(token_a, 16) < int(token_b, 16) else (token_b, token_a)


def _create2(deployer: str, salt: bytes, init_code_hash: bytes) -> str:
    digest = keccak(b"\xff" + bytes.fromhex(deployer[2:]) + salt + init_code_hash)
    return to_checksum_address(digest[12:])


def v2_pair_address(
    factory: str,
    token_a: str,
    token_b: str,
    init_code_hash: bytes = UNISWAP_V2_PAIR_INIT_CODE_HASH,
) -> str:
    """The CREATE2 address ``factory`` gives the pair of ``token_a``/``token_b``."""
    token0, token1 = sort_tokens(token_a, token_b)
    salt = keccak(bytes.fromhex(token0[2:]) + bytes.fromhex(token1[2:]))
    return _create2(factory, salt, init_code_hash)


def v3_pool_address(
    factory: str,
    token_a: str,
    token_b: str,
    fee_pips: int,
    init_code_hash: bytes = UNISWAP_V3_POOL_INIT_CODE_HASH,
) -> str:
    """The CREATE2 address ``factory`` gives the ``fee_pips`` pool of ``token_a``/``token_b``."""
    token0, token1 = sort_tokens(token_a, token_b)
    salt = keccak(encode(["address", "address", "uint24"], [token0, token1, fee_pips]))
    return _create2(factory, salt, init_code_hash)


# ---------------------------------------------------------------------------------------------
# Reads


async def eth_call(
    w3: AsyncWeb3[Any], to: str, data: bytes, block: int | str = "latest", sender: str | None = None
) -> bytes:
    """The return data of ``eth_call`` at ``block``; ``SimulationRevert`` when it reverts."""
    params: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
    if sender is not None:
        params["from"] = sender
    block_id = hex(block) if isinstance(block, int) else block
    response = await w3.provider.make_request(RPCEndpoint("eth_call"), [params, block_id])
    error = response.get("error")
    if error is not None:
        raise SimulationRevert(
            str(error.get("message", error)) if isinstance(error, dict) else str(error)
        )
    return bytes.fromhex(str(response["result"]).removeprefix("0x"))


async def erc20_balance(
    w3: AsyncWeb3[Any], token: str, holder: str, block: int | str = "latest"
) -> int:
    """``token.balanceOf(holder)`` at ``block``, smallest units."""
    out = await eth_call(w3, token, SEL_BALANCE_OF + encode(["address"], [holder]), block)
    return int.from_bytes(out[:32], "big")


async def erc20_allowance(w3: AsyncWeb3[Any], token: str, owner: str, spender: str) -> int:
    """``token.allowance(owner, spender)``, smallest units."""
    data = SEL_ALLOWANCE + encode(["address", "address"], [owner, spender])
    return int.from_bytes((await eth_call(w3, token, data))[:32], "big")


async def verify_v2_init_code_hash(
    w3: AsyncWeb3[Any], factory: str, candidates: Sequence[bytes]
) -> bytes | None:
    """The candidate pair init-code hash that reproduces ``factory``'s first pair address, or
    ``None`` (no pair yet, or no candidate matches). Checked on chain, never assumed."""

    async def call(to: str, signature: str, args: bytes = b"") -> bytes:
        data = selector(signature) + args
        return bytes(await w3.eth.call({"to": to_checksum_address(to), "data": data}))

    count = int.from_bytes(await call(factory, "allPairsLength()"), "big")
    if count == 0:
        return None
    pair = to_checksum_address(
        (await call(factory, "allPairs(uint256)", (0).to_bytes(32, "big")))[12:32]
    )
    token0 = to_checksum_address((await call(pair, "token0()"))[12:32])
    token1 = to_checksum_address((await call(pair, "token1()"))[12:32])
    for candidate in candidates:
        if v2_pair_address(factory, token0, token1, candidate) == pair:
            return candidate
    return None
