"""The address registry: every chain complete and checksummed; the devnet read from its file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eth_utils import is_checksum_address

from agent.chain.registry import (
    KNOWN_CHAIN_IDS,
    MULTICALL3_ADDRESS,
    ChainAddresses,
    addresses_for,
    chain_name_for_id,
    known_chains,
    load_deployment,
)
from agent.errors import ConfigError

PUBLIC_CHAINS = {"ethereum": 1, "arbitrum": 42161, "base": 8453, "optimism": 10, "polygon": 137}
ADDRESS_FIELDS = [
    f.name
    for f in dataclasses.fields(ChainAddresses)
    if f.name
    not in {"chain", "chain_id", "tokens", "rpc_url", "pools", "extra", "v2_pair_init_code_hashes"}
]
# Contracts every public chain we support must have (no None allowed).
REQUIRED_EVERYWHERE = {
    "wrapped_native",
    "weth",
    "usdc",
    "multicall3",
    "uniswap_v2_factory",
    "uniswap_v2_router02",
    "uniswap_v3_factory",
    "uniswap_v3_quoter_v2",
    "uniswap_v3_swap_router02",
    "sushiswap_v2_factory",
    "oneinch_router",  # the signing policy's allowlist for 1inch swaps
    "sushiswap_v2_router02",
}


@pytest.mark.parametrize(("chain", "chain_id"), sorted(PUBLIC_CHAINS.items()))
def test_public_chain_has_every_contract_checksummed(chain: str, chain_id: int) -> None:
    addrs = addresses_for(chain)
    assert addrs.chain == chain
    assert addrs.chain_id == chain_id
    for name in ADDRESS_FIELDS:
        value = getattr(addrs, name)
        if name in REQUIRED_EVERYWHERE:
            assert value is not None, f"{chain}.{name} missing"
        if value is not None:
            assert is_checksum_address(value), f"{chain}.{name} = {value} is not EIP-55"
    for symbol, token in addrs.tokens.items():
        assert token.symbol == symbol
        assert is_checksum_address(token.address), f"{chain} token {symbol}"
    assert addrs.multicall3 == MULTICALL3_ADDRESS


def test_registry_keys_are_the_same_on_every_chain() -> None:
    # An explicit None, never a missing key: a frozen dataclass guarantees the field set.
    field_sets = {chain: set(vars_of(addresses_for(chain))) for chain in PUBLIC_CHAINS}
    assert len({frozenset(s) for s in field_sets.values()}) == 1


def vars_of(addrs: ChainAddresses) -> dict[str, object]:
    return {f.name: getattr(addrs, f.name) for f in dataclasses.fields(addrs)}


def test_known_mainnet_addresses() -> None:
    eth = addresses_for("ethereum")
    assert eth.weth == "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    assert eth.usdc == "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    assert eth.uniswap_v2_router02 == "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D"
    assert eth.uniswap_v3_quoter_v2 == "0x61fFE014bA17989E743c5F6cB21bF9697530B21e"
    assert eth.oneinch_router == "0x111111125421cA6dc452d289314280a0f8842A65"  # v6, CREATE3
    base = addresses_for("base")
    assert base.uniswap_v3_factory == "0x33128a8fC17869897dcE68Ed026d694621f6FDfD"
    assert base.uniswap_v3_swap_router is None  # Base only has SwapRouter02
    assert base.uniswap_v3_swap_router02 == "0x2626664c2603336E57B271c5C0b26F421741e481"


def test_polygon_wraps_pol_not_eth() -> None:
    polygon = addresses_for("polygon")
    assert polygon.wrapped_native != polygon.weth
    wpol = polygon.token(polygon.wrapped_native)
    assert wpol is not None and wpol.symbol == "WPOL"
    usdc = polygon.token("usdc")
    assert usdc is not None and usdc.decimals == 6


def test_each_chain_lists_its_dexes_by_config_names() -> None:
    for chain in PUBLIC_CHAINS:
        assert addresses_for(chain).dex_names() == ["uniswap_v2", "sushiswap", "uniswap_v3"]


def test_chain_ids_round_trip() -> None:
    assert dict(KNOWN_CHAIN_IDS) == PUBLIC_CHAINS
    for chain, chain_id in PUBLIC_CHAINS.items():
        assert chain_name_for_id(chain_id) == chain
    assert chain_name_for_id(31337) is None
    assert set(known_chains()) == {*PUBLIC_CHAINS, "devnet"}


def test_unknown_chain_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown chain 'fantom'"):
        addresses_for("fantom")


def _deployment(tmp_path: Path) -> Path:
    """A deployment file shaped like the one the devnet writes (lower-case addresses on purpose)."""
    weth = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    usdc = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
    document = {
        "name": "devnet",
        "chain_id": 31337,
        "rpc_url": "http://127.0.0.1:8545",
        "addresses": {
            "WETH": weth,
            "USDC": usdc,
            "uniswap_v2.factory": "0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
            "uniswap_v2.router": "0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9",
            "sushiswap.factory": "0xdc64a140aa3e981100a9beca4e685f962f0cf6c9",
            "sushiswap.router": "0x5fc8d32690cc91d4c39d9d3abcbd16989f875707",
            "uniswap_v3.factory": "0x0165878a594ca255338adfa4d48449f69242eb8f",
            "uniswap_v3.swap_router": "0xa513e6e4b8f2a923d98304ec87f64353c4d5c853",
            "uniswap_v3.quoter_v2": "0x2279b7a0a67db372996a5fab50d91eaa73d2ebe6",
            "uniswap_v3.position_manager": "0x8a791620dd6260079bf849dc5567adc3f2fdc318",
            "multicall3": MULTICALL3_ADDRESS,
            "arb_executor": "0x610178da211fef7d417bc0e6fed39f05609ad788",
            "oneinch.router": "0x9a9f2ccfde556a7e9ff0848998aa4a0cfd8863ae",
        },
        "tokens": {
            "WETH": {"address": weth, "decimals": 18},
            "USDC": {"address": usdc, "decimals": 6},
        },
        "pools": [
            {
                "dex": "uniswap_v3",
                "kind": "v3",
                "address": "0xb7f8bc63bbcad18155201308c8f3540b07f84f5e",
                "token0": weth,
                "token1": usdc,
                "fee_pips": 500,
                "tick_spacing": 10,
            }
        ],
    }
    path = tmp_path / "devnet.json"
    path.write_text(json.dumps(document))
    return path


def test_devnet_loads_from_deployment_file(tmp_path: Path) -> None:
    addrs = addresses_for("devnet", deployment_path=_deployment(tmp_path))
    assert addrs.chain == "devnet"
    assert addrs.chain_id == 31337
    assert addrs.rpc_url == "http://127.0.0.1:8545"
    assert addrs.weth == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert addrs.uniswap_v3_swap_router == "0xa513E6E4b8f2a923D98304ec87F64353C4D5C853"
    assert addrs.uniswap_v3_swap_router02 is None
    assert addrs.extra["arb_executor"] == "0x610178dA211FEF7D417bC0e6FeD39F05609AD788"
    assert addrs.oneinch_router == "0x9A9f2CCfdE556A7E9Ff0848998Aa4a0CFD8863AE"
    assert addrs.tokens["USDC"].decimals == 6
    assert addrs.dex_names() == ["uniswap_v2", "sushiswap", "uniswap_v3"]
    (pool,) = addrs.pools
    assert pool.kind == "v3" and pool.fee_pips == 500 and pool.tick_spacing == 10
    for name in ADDRESS_FIELDS:
        value = getattr(addrs, name)
        assert value is None or is_checksum_address(value)


def test_missing_deployment_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="defi-agent devnet up"):
        addresses_for("devnet", deployment_path=tmp_path / "nope.json")


def test_malformed_deployment_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "chain_id": "x",
                "addresses": {"uniswap_v2.factory": "0x1234"},
                "tokens": {"USDC": {"address": "0xE7f1725E7734CE288F8367e1Bb143E90bb3F0513"}},
                "pools": [{"kind": "v4"}],
            }
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    message = str(caught.value)
    for expected in (
        "chain_id",
        "addresses.uniswap_v2.factory",
        "tokens.USDC.decimals",
        "pools[0].kind",
        "tokens.WETH",
    ):
        assert expected in message


def test_bad_checksum_in_deployment_is_rejected(tmp_path: Path) -> None:
    path = _deployment(tmp_path)
    document = json.loads(path.read_text())
    # Valid checksum is 0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0; flip the case of one letter.
    document["addresses"]["uniswap_v2.factory"] = "0x9FE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"addresses\.uniswap_v2\.factory: bad EIP-55 checksum"):
        load_deployment(path)
