"""abis/ is what scripts/compile_contracts.py builds; our Multicall3 has the canonical ABI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_utils.abi import abi_to_signature, function_abi_to_4byte_selector
from eth_utils.crypto import keccak

from agent.chain.arb_executor import (
    EXECUTE_SELECTOR,
    EXECUTE_WITH_FLASH_LOAN_SELECTOR,
    HOP_ABI_TYPE,
    decode_arb_executor_error,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compile_contracts.py"
ABIS = ROOT / "abis"

# Canonical Multicall3 (0xcA11bde05977b3631167028862bE2a173976CA11): signature -> (selector,
# state mutability, output types). Selectors are the published ones, not derived from our code.
CANONICAL_MULTICALL3: dict[str, tuple[str, str, list[str]]] = {
    "aggregate((address,bytes)[])": ("0x252dba42", "payable", ["uint256", "bytes[]"]),
    "aggregate3((address,bool,bytes)[])": ("0x82ad56cb", "payable", ["(bool,bytes)[]"]),
    "aggregate3Value((address,bool,uint256,bytes)[])": (
        "0x174dea71",
        "payable",
        ["(bool,bytes)[]"],
    ),
    "blockAndAggregate((address,bytes)[])": (
        "0xc3077fa9",
        "payable",
        ["uint256", "bytes32", "(bool,bytes)[]"],
    ),
    "tryAggregate(bool,(address,bytes)[])": ("0xbce38bd7", "payable", ["(bool,bytes)[]"]),
    "tryBlockAndAggregate(bool,(address,bytes)[])": (
        "0x399542e9",
        "payable",
        ["uint256", "bytes32", "(bool,bytes)[]"],
    ),
    "getBasefee()": ("0x3e64a696", "view", ["uint256"]),
    "getBlockHash(uint256)": ("0xee82ac5e", "view", ["bytes32"]),
    "getBlockNumber()": ("0x42cbb15c", "view", ["uint256"]),
    "getChainId()": ("0x3408e470", "view", ["uint256"]),
    "getCurrentBlockCoinbase()": ("0xa8b0574e", "view", ["address"]),
    "getCurrentBlockDifficulty()": ("0x72425d9d", "view", ["uint256"]),
    "getCurrentBlockGasLimit()": ("0x86d516e8", "view", ["uint256"]),
    "getCurrentBlockTimestamp()": ("0x0f28c97d", "view", ["uint256"]),
    "getEthBalance(address)": ("0x4d2301cc", "view", ["uint256"]),
    "getLastBlockHash()": ("0x27e86d6e", "view", ["bytes32"]),
}

INTERFACE_NAMES = [
    "ERC20",
    "UniswapV2Pair",
    "UniswapV2Factory",
    "UniswapV2Router02",
    "UniswapV3Pool",
    "UniswapV3Factory",
    "QuoterV2",
    "SwapRouter",
    "WETH9",
]


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ABIS / f"{name}.json").read_text())
    return document


def _canonical_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "compile_contracts.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_abis_match_sources() -> None:
    result = _run_check(ROOT)
    assert result.returncode == 0, result.stderr


def test_fresh_build_reproduces_committed_abis_and_check_flags_an_edited_source(
    tmp_path: Path,
) -> None:
    # Build in a scratch copy of the repo so the real abis/ is never written by a test.
    for folder in ("contracts", "scripts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "abis").mkdir()
    (tmp_path / "anvil").symlink_to(ROOT / "anvil")
    build = subprocess.run(
        [sys.executable, str(tmp_path / "scripts" / "compile_contracts.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    built = sorted(p.name for p in (tmp_path / "abis").glob("*.json"))
    assert built == sorted(p.name for p in ABIS.glob("*.json"))
    for name in built:
        assert (tmp_path / "abis" / name).read_bytes() == (ABIS / name).read_bytes(), name

    source = tmp_path / "contracts" / "TestERC20.sol"
    source.write_text(source.read_text() + "\n// edited\n")
    (tmp_path / "abis" / "Orphan.json").write_text("{}\n")
    before = {p.name: p.read_bytes() for p in (tmp_path / "abis").glob("*.json")}
    check = _run_check(tmp_path)
    assert check.returncode == 1
    assert "abis/TestERC20.json" in check.stderr
    assert "abis/Orphan.json" in check.stderr
    assert "abis/Multicall3.json" not in check.stderr
    # --check never writes.
    assert {p.name: p.read_bytes() for p in (tmp_path / "abis").glob("*.json")} == before


def test_multicall3_abi_is_canonical() -> None:
    functions = [e for e in _load("Multicall3")["abi"] if e["type"] == "function"]
    ours = {
        abi_to_signature(e): (
            "0x" + function_abi_to_4byte_selector(e).hex(),
            e["stateMutability"],
            [_canonical_type(o) for o in e["outputs"]],
        )
        for e in functions
    }
    assert ours == CANONICAL_MULTICALL3
    # The table itself is self-consistent: each published selector is keccak of its signature.
    for signature, (selector, _, _) in CANONICAL_MULTICALL3.items():
        assert "0x" + keccak(text=signature)[:4].hex() == selector, signature


@pytest.mark.parametrize(
    "name", ["ArbExecutor", "BalanceProbe", "DevnetAggregationRouterV6", "Multicall3", "TestERC20"]
)
def test_our_contracts_carry_deployable_bytecode(name: str) -> None:
    document = _load(name)
    assert document["contractName"] == name
    assert document["compiler"].startswith("solc-js 0.8.28+")
    for key in ("bytecode", "deployedBytecode"):
        code = document[key]
        assert code.startswith("0x") and len(code) > 2
        bytes.fromhex(code[2:])


def test_test_erc20_has_mint_and_constructor() -> None:
    abi = _load("TestERC20")["abi"]
    signatures = {abi_to_signature(e) for e in abi if e["type"] == "function"}
    assert {
        "mint(address,uint256)",
        "transfer(address,uint256)",
        "transferFrom(address,address,uint256)",
        "approve(address,uint256)",
        "balanceOf(address)",
        "decimals()",
    } <= signatures
    constructor = next(e for e in abi if e["type"] == "constructor")
    assert [i["type"] for i in constructor["inputs"]] == ["string", "string", "uint8"]


@pytest.mark.parametrize("name", INTERFACE_NAMES)
def test_interface_abis_are_abi_only(name: str) -> None:
    document = _load(name)
    assert set(document) == {"contractName", "abi"}
    assert document["contractName"] == name
    assert any(e["type"] == "function" for e in document["abi"])


def test_interface_abis_hold_the_calls_the_agent_makes() -> None:
    expected = {
        "ERC20": {"balanceOf(address)", "approve(address,uint256)", "decimals()"},
        "UniswapV2Pair": {"getReserves()", "swap(uint256,uint256,address,bytes)", "token0()"},
        "UniswapV2Factory": {"getPair(address,address)", "createPair(address,address)"},
        "UniswapV3Pool": {"slot0()", "liquidity()", "ticks(int24)", "tickBitmap(int16)"},
        "UniswapV3Factory": {"getPool(address,address,uint24)"},
        "QuoterV2": {"quoteExactInputSingle((address,address,uint256,uint24,uint160))"},
        "SwapRouter": {
            "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
        },
        "WETH9": {"deposit()", "withdraw(uint256)"},
    }
    for name, signatures in expected.items():
        abi = _load(name)["abi"]
        have = {abi_to_signature(e) for e in abi if e["type"] == "function"}
        assert signatures <= have, (name, signatures - have)


def test_arb_executor_calldata_helper_matches_the_compiled_abi() -> None:
    abi = _load("ArbExecutor")["abi"]
    functions = {e["name"]: e for e in abi if e["type"] == "function"}
    assert function_abi_to_4byte_selector(functions["execute"]) == EXECUTE_SELECTOR
    flash = functions["executeWithFlashLoan"]
    assert function_abi_to_4byte_selector(flash) == EXECUTE_WITH_FLASH_LOAN_SELECTOR
    assert _canonical_type(functions["execute"]["inputs"][0]) == HOP_ABI_TYPE + "[]"
    # Every custom error the contract can raise is decoded to its name by the helper.
    for error in (e for e in abi if e["type"] == "error"):
        types = [_canonical_type(i) for i in error["inputs"]]
        zeros = ["0x" + "00" * 20 if t == "address" else 0 for t in types]
        revert_data = keccak(text=abi_to_signature(error))[:4] + encode(types, zeros)
        decoded = decode_arb_executor_error(revert_data)
        assert decoded is not None and decoded.startswith(error["name"] + "("), error["name"]
    assert decode_arb_executor_error(bytes.fromhex("08c379a0")) is None  # Error(string)
