"""V3 router calldata follows the router the registry names: SwapRouter (deadline inside the
params) or SwapRouter02 (``multicall(deadline, [...])`` around structs without a deadline).
The registry knows each chain's router kind, tokens and each DEX's init-code hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector as selector

from agent.chain.abi import SUSHISWAP_V2_PAIR_INIT_CODE_HASH, UNISWAP_V2_PAIR_INIT_CODE_HASH
from agent.chain.registry import (
    addresses_for,
    load_deployment,
)
from agent.execution.chain import encode_router_swap
from agent.execution.common import DexContracts
from agent.types import Intent, RouteHop

WETH = "0x4200000000000000000000000000000000000006"
USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
DAI = "0x50c5725949A6F0c72E6C4a641F24049A917DB0Cb"
ME = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
DEADLINE = 1_900_000_000


def v3_intent(*hops: tuple[str, str, int]) -> Intent:
    route = tuple(RouteHop("0x" + "11" * 20, "uniswap_v3", "v3", a, b, fee) for a, b, fee in hops)
    return Intent(
        id="i",
        strategy="dca",
        kind="swap",
        route=route,
        token_in=route[0].token_in,
        token_out=route[-1].token_out,
        amount_in=4_000 * 10**6,
        min_amount_out=0,
        predicted_amount_out=10**18,
        predicted_profit=0,
        predicted_profit_usd=0.0,
        deadline=DEADLINE,
    )


def test_swap_router02_single_hop_is_a_deadline_multicall_around_exact_input_single() -> None:
    data = encode_router_swap(
        v3_intent((USDC, WETH, 500)), ME, 123, DEADLINE, router_kind="swap_router02"
    )
    assert data[:4] == selector("multicall(uint256,bytes[])")
    deadline, (inner,) = decode(["uint256", "bytes[]"], data[4:])
    assert deadline == DEADLINE
    assert inner[:4] == selector(
        "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))"
    )
    ((token_in, token_out, fee, recipient, amount_in, minimum, limit),) = decode(
        ["(address,address,uint24,address,uint256,uint256,uint160)"], inner[4:]
    )
    assert (token_in.lower(), token_out.lower(), fee) == (USDC.lower(), WETH.lower(), 500)
    assert (recipient.lower(), amount_in, minimum, limit) == (ME.lower(), 4_000 * 10**6, 123, 0)


def test_swap_router02_multi_hop_uses_exact_input_without_deadline() -> None:
    data = encode_router_swap(
        v3_intent((USDC, WETH, 500), (WETH, DAI, 3000)), ME, 9, DEADLINE, "swap_router02"
    )
    deadline, (inner,) = decode(["uint256", "bytes[]"], data[4:])
    assert deadline == DEADLINE
    assert inner[:4] == selector("exactInput((bytes,address,uint256,uint256))")
    ((path, recipient, amount_in, minimum),) = decode(
        ["(bytes,address,uint256,uint256)"], inner[4:]
    )
    assert path == (
        bytes.fromhex(USDC[2:])
        + (500).to_bytes(3, "big")
        + bytes.fromhex(WETH[2:])
        + (3000).to_bytes(3, "big")
        + bytes.fromhex(DAI[2:])
    )
    assert (recipient.lower(), amount_in, minimum) == (ME.lower(), 4_000 * 10**6, 9)


def test_swap_router_keeps_the_deadline_in_the_struct() -> None:
    data = encode_router_swap(v3_intent((USDC, WETH, 500)), ME, 5, DEADLINE)
    assert data[:4] == selector(
        "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
    )
    ((*_, deadline, _amount, minimum, _limit),) = decode(
        ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], data[4:]
    )
    assert (deadline, minimum) == (DEADLINE, 5)


@pytest.mark.parametrize(
    ("chain", "kind"),
    [("ethereum", "swap_router"), ("arbitrum", "swap_router"), ("base", "swap_router02")],
)
def test_registry_names_each_chains_v3_router_kind(chain: str, kind: str) -> None:
    v3 = addresses_for(chain).v3_dexes()["uniswap_v3"]
    assert v3.router_kind == kind
    assert v3.router == (v3.swap_router if kind == "swap_router" else v3.swap_router02)


def test_dex_contracts_route_v3_swaps_to_the_router_they_encode_for() -> None:
    both = DexContracts.from_addresses(
        {"uniswap_v3.swap_router": "0xR1", "uniswap_v3.swap_router02": "0xR2"}
    )
    assert (both.routers["uniswap_v3"], both.router_kinds["uniswap_v3"]) == ("0xR1", "swap_router")
    only_02 = DexContracts.from_addresses({"uniswap_v3.swap_router02": "0xR2"})
    assert (only_02.routers["uniswap_v3"], only_02.router_kinds["uniswap_v3"]) == (
        "0xR2",
        "swap_router02",
    )


def test_registry_knows_major_tokens_and_bridged_usdc() -> None:
    for chain in ("ethereum", "arbitrum", "optimism", "polygon"):
        assert {"WETH", "USDC", "USDT", "DAI", "WBTC"} <= set(addresses_for(chain).tokens)
    for chain in ("arbitrum", "optimism", "polygon"):
        bridged = addresses_for(chain).tokens["USDC.e"]
        assert bridged.decimals == 6 and bridged.address != addresses_for(chain).usdc
    assert addresses_for("base").tokens["USDbC"].decimals == 6
    assert (
        addresses_for("ethereum").token("0xdac17f958d2ee523a2206206994597c13d831ec7")
        == (addresses_for("ethereum").tokens["USDT"])
    )


def test_each_v2_dex_carries_its_pair_init_code_hash(tmp_path: Path) -> None:
    dexes = addresses_for("ethereum").v2_dexes()
    assert dexes["uniswap_v2"].pair_init_code_hash == UNISWAP_V2_PAIR_INIT_CODE_HASH
    assert dexes["sushiswap"].pair_init_code_hash == SUSHISWAP_V2_PAIR_INIT_CODE_HASH
    # A deployment file may name a fork's hash; without one, Uniswap's is assumed.
    fork_hash = "ab" * 32
    path = tmp_path / "chain.json"
    path.write_text(
        json.dumps(
            {
                "chain_id": 31337,
                "addresses": {
                    "uniswap_v2.factory": "0x" + "01" * 20,
                    "sushiswap.factory": "0x" + "02" * 20,
                },
                "tokens": {
                    "WETH": {"address": "0x" + "03" * 20, "decimals": 18},
                    "USDC": {"address": "0x" + "04" * 20, "decimals": 6},
                },
                "init_code_hashes": {"sushiswap": "0x" + fork_hash},
            }
        )
    )
    local = load_deployment(path).v2_dexes()
    assert local["sushiswap"].pair_init_code_hash == bytes.fromhex(fork_hash)
    assert local["uniswap_v2"].pair_init_code_hash == UNISWAP_V2_PAIR_INIT_CODE_HASH
