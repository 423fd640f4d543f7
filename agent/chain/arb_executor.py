"""Calldata for ``contracts/ArbExecutor.sol``: hops, ``execute``/``executeWithFlashLoan``, errors.

Encoding is plain ``eth_abi`` with precomputed selectors, so building a transaction on the hot
path needs no web3 contract object. A route is a cycle that starts and ends in the start token;
the contract reverts unless its balance of that token grows by at least ``min_profit``.

Amounts are ``int`` in the start token's smallest units; ``deadline`` is a unix timestamp in
seconds; ``fee_pips`` is in hundredths of a basis point (3000 = 0.3 %), for V2 pairs too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from agent.chain.abi import selector
from agent.errors import ConfigError
from agent.types import RouteHop

DEFAULT_ARTIFACT_PATH = Path(__file__).resolve().parents[2] / "abis" / "ArbExecutor.json"

HOP_ABI_TYPE = "(uint8,address,address,address,uint24,address)"
_EXECUTE_ARG_TYPES = (f"{HOP_ABI_TYPE}[]", "address", "uint256", "uint256", "uint256")
_EXECUTE_SIGNATURE = f"execute({','.join(_EXECUTE_ARG_TYPES)})"
_FLASH_SIGNATURE = f"executeWithFlashLoan({','.join(_EXECUTE_ARG_TYPES)})"
EXECUTE_SELECTOR = selector(_EXECUTE_SIGNATURE)
EXECUTE_WITH_FLASH_LOAN_SELECTOR = selector(_FLASH_SIGNATURE)
_CONSTRUCTOR_ARG_TYPES = ("address", "address", "address[]", "bytes32[]")
WITHDRAW_TOKEN_SELECTOR = selector("withdrawToken(address,uint256)")
WITHDRAW_ETH_SELECTOR = selector("withdrawEth(uint256)")
_ZERO_ADDRESS = "0x" + "00" * 20

# Custom errors of the contract: selector -> (name, argument names, argument types).
_ERRORS: dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    selector(f"{name}({','.join(types)})"): (name, names, types)
    for name, names, types in (
        ("NotOwner", (), ()),
        ("NotExecutor", (), ()),
        ("DeadlineExpired", ("deadline", "timestamp"), ("uint256", "uint256")),
        ("InvalidHop", ("index",), ("uint256",)),
        ("BrokenRoute", ("index",), ("uint256",)),
        ("UnknownV2Factory", ("factory",), ("address",)),
        ("UnauthorizedCallback", ("caller",), ("address",)),
        ("CallbackOverpayment", ("owed", "max_payment"), ("uint256", "uint256")),
        (
            "InsufficientProfit",
            ("balance_before", "balance_after", "min_profit"),
            ("uint256", "uint256", "uint256"),
        ),
        ("TransferFailed", ("token", "to", "amount"), ("address", "address", "uint256")),
        ("EthTransferFailed", ("to", "amount"), ("address", "uint256")),
        ("LengthMismatch", (), ()),
        ("AmountTooLarge", ("amount",), ("uint256",)),
    )
}


class HopKind(IntEnum):
    """``Hop.kind`` in the contract."""

    V2 = 0
    V3 = 1


@dataclass(frozen=True, slots=True)
class Hop:
    """One swap of an ArbExecutor route.

    ``pool`` must be the address ``factory`` derives (CREATE2) for the token pair (and, for V3,
    the fee); the contract checks it. ``factory`` is the V2 factory of the pair, or the V3
    factory the executor was deployed with. ``fee_pips``: 3000 = 0.3 %.
    """

    kind: HopKind
    pool: str
    token_in: str
    token_out: str
    fee_pips: int
    factory: str

    def as_abi_tuple(self) -> tuple[int, str, str, str, int, str]:
        """The value eth_abi encodes for the contract's ``Hop`` struct."""
        return (
            int(self.kind),
            self.pool,
            self.token_in,
            self.token_out,
            self.fee_pips,
            self.factory,
        )


@dataclass(frozen=True, slots=True)
class ArbExecutorArtifact:
    """The compiled contract from abis/ArbExecutor.json (hex strings are 0x-prefixed)."""

    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


def load_arb_executor_artifact(path: Path = DEFAULT_ARTIFACT_PATH) -> ArbExecutorArtifact:
    """Read the ABI and bytecode built by scripts/compile_contracts.py."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return ArbExecutorArtifact(
            abi=document["abi"],
            bytecode=bytes.fromhex(document["bytecode"].removeprefix("0x")),
            deployed_bytecode=bytes.fromhex(document["deployedBytecode"].removeprefix("0x")),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"cannot load the ArbExecutor artifact {path}; run scripts/compile_contracts.py"
        ) from exc


def hops_from_route(
    route: Sequence[RouteHop], factory_by_dex: Mapping[str, str]
) -> tuple[Hop, ...]:
    """ArbExecutor hops for a route; ``factory_by_dex`` maps a RouteHop.dex to its factory."""
    hops = []
    for route_hop in route:
        if route_hop.kind not in ("v2", "v3"):
            raise ValueError(f"unknown hop kind {route_hop.kind!r} (expected 'v2' or 'v3')")
        if route_hop.dex not in factory_by_dex:
            raise ValueError(f"no factory known for dex {route_hop.dex!r}")
        hops.append(
            Hop(
                kind=HopKind.V2 if route_hop.kind == "v2" else HopKind.V3,
                pool=route_hop.pool,
                token_in=route_hop.token_in,
                token_out=route_hop.token_out,
                fee_pips=route_hop.fee_pips,
                factory=factory_by_dex[route_hop.dex],
            )
        )
    return tuple(hops)


def _encode_args(
    hops: Sequence[Hop], start_token: str, amount_in: int, min_profit: int, deadline: int
) -> bytes:
    encoded: bytes = encode(
        _EXECUTE_ARG_TYPES,
        [[hop.as_abi_tuple() for hop in hops], start_token, amount_in, min_profit, deadline],
    )
    return encoded


def encode_execute(
    hops: Sequence[Hop], start_token: str, amount_in: int, min_profit: int, deadline: int
) -> bytes:
    """Calldata of ``execute``: spend ``amount_in`` of ``start_token`` held by the contract.

    ``amount_in`` and ``min_profit`` are in ``start_token``'s smallest units; ``deadline`` is a
    unix timestamp (s). The route must start and end in ``start_token``.
    """
    return EXECUTE_SELECTOR + _encode_args(hops, start_token, amount_in, min_profit, deadline)


def encode_execute_with_flash_loan(
    hops: Sequence[Hop], start_token: str, amount_in: int, min_profit: int, deadline: int
) -> bytes:
    """Calldata of ``executeWithFlashLoan``: the first hop (V2) is a flash swap.

    The contract receives the first hop's output up front and pays the pair ``amount_in`` of
    ``start_token`` (smallest units) after the other hops ran; no capital needed.
    """
    return EXECUTE_WITH_FLASH_LOAN_SELECTOR + _encode_args(
        hops, start_token, amount_in, min_profit, deadline
    )


def encode_deployment(
    artifact: ArbExecutorArtifact,
    v3_factory: str,
    v2_init_code_hashes: Mapping[str, bytes],
    owner: str | None = None,
) -> bytes:
    """Creation code plus constructor arguments. The deploying account becomes the executor
    (the key that trades); ``owner`` (where withdrawals go, may be a cold address) defaults to
    the deployer too.

    ``v2_init_code_hashes`` maps each accepted V2 factory to its pair init-code hash (32 bytes).
    """
    factories = list(v2_init_code_hashes)
    hashes = [v2_init_code_hashes[factory] for factory in factories]
    if any(len(h) != 32 for h in hashes):
        raise ValueError("every V2 init-code hash must be 32 bytes")
    arguments: bytes = encode(
        _CONSTRUCTOR_ARG_TYPES, [owner or _ZERO_ADDRESS, v3_factory, factories, hashes]
    )
    return artifact.bytecode + arguments


def encode_withdraw_token(token: str, amount: int) -> bytes:
    """Calldata of ``withdrawToken``: ``amount`` (smallest units) of ``token`` to the owner."""
    return WITHDRAW_TOKEN_SELECTOR + encode(["address", "uint256"], [token, amount])


def encode_withdraw_eth(amount_wei: int) -> bytes:
    """Calldata of ``withdrawEth``: ``amount_wei`` of ETH to the owner."""
    return WITHDRAW_ETH_SELECTOR + encode(["uint256"], [amount_wei])


def decode_arb_executor_error(revert_data: bytes) -> str | None:
    """Readable form of an ArbExecutor custom error, e.g. ``InsufficientProfit(balance_before=
    10, balance_after=9, min_profit=1)``; ``None`` when the data is not one of its errors."""
    spec = _ERRORS.get(revert_data[:4])
    if spec is None:
        return None
    name, names, types = spec
    try:
        values = decode(types, revert_data[4:]) if types else ()
    except DecodingError:  # malformed payload behind a matching selector: not ours after all
        return None
    shown = [
        to_checksum_address(value) if kind == "address" else value
        for kind, value in zip(types, values, strict=True)
    ]
    arguments = ", ".join(f"{n}={v}" for n, v in zip(names, shown, strict=True))
    return f"{name}({arguments})"
